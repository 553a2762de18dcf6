"""szmass.logs: the rule log and periodic progress lines with rate and ETA."""

import logging
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

import pytest

from szmass import logs
from szmass.logs import Progress, filter_tf_startup, setup_logging

REPO = Path(__file__).resolve().parents[2]
SCRIPTS = REPO / "workflow" / "scripts"
TF_LOGS = logs.TF_LOGS_ENV


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(logs.time, "perf_counter", fake)
    return fake


@pytest.fixture
def logger():
    return logging.getLogger("szmass.test_progress")


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "szmass.test_progress"]


def test_progress_line_has_rate_and_eta(clock, logger, caplog):
    caplog.set_level(logging.INFO, logger="szmass.test_progress")
    progress = Progress(10, "maps", logger, every_s=5.0)
    clock.now += 6.0
    progress.update(6)  # 6 maps in 6 s: 1/s, 4 left: ETA 4 s
    clock.now += 2.0
    progress.update(2)  # only 2 s since the last line: silent
    clock.now += 2.0
    progress.update(2)  # the last one always reports
    assert _messages(caplog) == [
        "maps: 6/10 (1/s, ETA 4 s)",
        "maps: 10/10 (1/s, ETA 0 s)",
    ]


def test_progress_rate(clock, logger, caplog):
    caplog.set_level(logging.INFO, logger="szmass.test_progress")
    progress = Progress(1000, "maps", logger, every_s=1.0)
    clock.now += 2.0
    progress.update(400)  # 200/s, 600 left: ETA 3 s
    (line,) = _messages(caplog)
    assert re.fullmatch(r"maps: 400/1000 \(200/s, ETA 3 s\)", line)


def test_setup_logging_writes_the_rule_log(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # setup_logging installs its own
    path = tmp_path / "rule.log"
    log = setup_logging(str(path))
    try:
        progress = Progress(2, "cluster profiles", logging.getLogger("szmass.simulate"))
        progress.update(2)
        log.info("wrote %s", "x.zarr")
    finally:
        for handler in log.handlers:
            handler.close()
        log.handlers.clear()
    text = path.read_text()
    assert re.search(r"INFO szmass\.simulate: cluster profiles: 2/2 \([0-9.e+]+/s, ETA 0 s\)", text)
    assert "INFO szmass: wrote x.zarr" in text


# --- a failed job's log holds the exception and its traceback -------------------------------


def _env(**env: str) -> dict[str, str]:
    """This environment without the TensorFlow log settings (pytest's own import of szmass set
    TF_CPP_MIN_LOG_LEVEL), this checkout's src/ first, plus ``env``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", TF_LOGS)}
    return clean | {"PYTHONPATH": str(REPO / "src")} | env


def _python(code: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -c code`` with this checkout's src/ first (as the rule scripts have it)."""
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )


FAILING_JOB = """
import sys
{before}
from szmass.logs import setup_logging
log = setup_logging({log!r})
log.info("simulating")

def decode_shard():
    raise ValueError("cannot decode variable 'sky' of M4.zarr")

decode_shard()
"""


def test_uncaught_exception_goes_to_the_log_with_its_traceback(tmp_path):
    log = tmp_path / "job.log"
    proc = _python(FAILING_JOB.format(before="", log=str(log)), tmp_path)
    assert proc.returncode == 1
    text = log.read_text()
    assert "INFO szmass: simulating" in text
    assert "CRITICAL szmass: uncaught ValueError: the job fails" in text
    assert "Traceback (most recent call last):" in text
    assert "in decode_shard" in text
    assert text.rstrip().endswith("ValueError: cannot decode variable 'sky' of M4.zarr")
    # on the terminal once (through the logger), not a second time from Python's own hook
    assert proc.stderr.count("Traceback (most recent call last):") == 1, proc.stderr


def test_the_previous_excepthook_still_runs(tmp_path):
    log = tmp_path / "job.log"
    before = "sys.excepthook = lambda *exc: print('previous hook:', exc[1], file=sys.stderr)"
    proc = _python(FAILING_JOB.format(before=before, log=str(log)), tmp_path)
    assert proc.returncode == 1
    assert "previous hook: cannot decode variable 'sky' of M4.zarr" in proc.stderr
    assert "Traceback (most recent call last):" in log.read_text()


def test_bootstrap_logs_a_failure_before_the_scripts_setup_logging(tmp_path):
    """A rule script imports _bootstrap first: a failing import after it, or anything before
    the script's own setup_logging call, still reaches the rule's log (kept, not truncated)."""
    log = tmp_path / "logs" / "rule.log"
    log.parent.mkdir()
    other = tmp_path / "site" / "szmass"  # another checkout's szmass, earlier on the path
    other.mkdir(parents=True)
    (other / "__init__.py").write_text("raise ImportError('the szmass of another checkout')\n")
    script = tmp_path / "rule_script.py"
    script.write_text(
        "import types\n"
        f"snakemake = types.SimpleNamespace(log=[{str(log)!r}])  # as Snakemake's preamble\n"
        f"import sys; sys.path.insert(0, {str(other.parent)!r})\n"
        f"sys.path += [{str(REPO / 'src')!r}, {str(SCRIPTS)!r}]  # as the preamble appends them\n"
        "import _bootstrap\n"
        "import logging, os\n"
        "logging.getLogger('szmass').info('TF log level %s', os.environ['TF_CPP_MIN_LOG_LEVEL'])\n"
        "from szmass.logs import setup_logging\n"
        "setup_logging(snakemake.log[0])\n"
        "import szmass.no_such_module\n"
    )
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env=_env(PYTHONPATH=""),
    )
    assert proc.returncode == 1
    text = log.read_text()
    assert f"INFO szmass: TF log level {logs.TF_QUIET_LEVEL}" in text
    assert "Traceback (most recent call last):" in text
    assert "ModuleNotFoundError: No module named 'szmass.no_such_module'" in text


def test_every_rule_script_imports_bootstrap_first():
    for script in sorted(SCRIPTS.glob("*.py")):
        if script.name == "_bootstrap.py":
            continue
        code = [
            ln for ln in script.read_text().splitlines() if ln and not ln.startswith(('"""', "#"))
        ]
        first_import = next(ln for ln in code if ln.startswith(("import ", "from ")))
        assert first_import.startswith("import _bootstrap"), script.name


# --- TensorFlow's C++ start-up lines --------------------------------------------------------

#: What TensorFlow 2.21 printed on every start on these machines (x86-64, oneDNN on), and the
#: E line of the first training step of the mResUNet: none of it may reach the terminal or a log.
TF_NOISE = re.compile(
    r"oneDNN|port\.cc|cpu_feature_guard|absl::InitializeLog|util\.cc|^[IWE]\d{4} ", re.M
)
STARTUP = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1796168391.665910   14044 port.cc:153] oneDNN custom operations are on. ...\n"
    b"I0000 00:00:1796168391.745009   14044 cpu_feature_guard.cc:227] This TensorFlow binary "
    b"is optimized to use available CPU instructions in performance-critical operations.\n"
    b"To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild ...\n"
    b"/site-packages/keras/src/trainers/epoch_iterator.py:74: UserWarning: a Python warning\n"
    b"E0000 00:00:1796168420.842086   14044 util.cc:131] oneDNN supports DT_INT32 only on "
    b"platforms with AVX-512. Falling back to the default Eigen-based implementation.\n"
    b"2026-12-01 23:39:56,965 INFO szmass.train: TensorFlow 2.21.0 on CPU\n"
)


@pytest.mark.parametrize(
    ("min_severity", "kept"),
    [
        (0, STARTUP),
        (1, b"\n".join(STARTUP.splitlines()[4:]) + b"\n"),  # the E line stays, like TF's level 1
        (3, b"\n".join(STARTUP.splitlines()[4:5] + STARTUP.splitlines()[6:]) + b"\n"),
    ],
)
def test_filter_tf_startup_drops_only_absl_lines_below_the_level(min_severity, kept):
    assert filter_tf_startup(STARTUP, min_severity) == kept


def _tf_op(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    code = (
        "import os, szmass, tensorflow as tf\n"
        "print(int(tf.reduce_sum(tf.constant([1, 2]) + 1)))\n"
        "print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), os.environ.get('TF_ENABLE_ONEDNN_OPTS'))\n"
        "print(type(tf.__loader__).__name__)\n"
    )
    return _python(code, tmp_path, **env)


@pytest.mark.slow
def test_tensorflow_start_up_is_silent_unless_asked_for(tmp_path):
    proc = _tf_op(tmp_path)
    assert proc.returncode == 0, proc.stderr
    result, levels, loader = proc.stdout.splitlines()
    assert result == "5"
    assert levels == f"{logs.TF_QUIET_LEVEL} None"  # the log level only; oneDNN as it was
    assert loader == "SourceFileLoader"  # tensorflow looks imported plainly
    assert not TF_NOISE.search(proc.stderr), proc.stderr

    loud = _tf_op(tmp_path, **{TF_LOGS: "1"})
    assert loud.returncode == 0, loud.stderr
    assert loud.stdout.splitlines()[1] == "None None"
    if sys.platform == "linux" and platform.machine() == "x86_64":  # where TF enables oneDNN
        assert "oneDNN custom operations are on" in loud.stderr, loud.stderr
