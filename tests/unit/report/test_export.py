"""Exporting a run's small summaries (results/<run>/) and its per-stage wall times."""

import pytest

from szmass.report.export import MODEL_FILES, SMALL_FILES, export_model, export_run, stage_times

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"


def _bench(path, seconds):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t100.5\t1\t1\t1\t0\t0\t50\t{seconds / 2}\n")


def test_stage_times_per_job_and_rule(tmp_path):
    _bench(tmp_path / "compute_spectra.tsv", 9.5)
    _bench(tmp_path / "simulate_shard" / "grid" / "M1.tsv", 4.0)
    _bench(tmp_path / "simulate_shard" / "grid" / "M2.tsv", 5.0)
    times = stage_times(tmp_path).set_index("job")
    assert times.loc["grid/M2", "rule"] == "simulate_shard"
    assert times.loc["grid/M2", "wall_s"] == 5.0 and times.loc["grid/M2", "cpu_s"] == 2.5
    assert times.loc["compute_spectra", "max_rss_mb"] == 100.5


def test_no_benchmarks_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no benchmark files"):
        stage_times(tmp_path)


def test_export_copies_small_files_only(tmp_path):
    for name in SMALL_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
    (tmp_path / "results" / "figures").mkdir()
    (tmp_path / "results" / "figures" / "fig4.png").write_bytes(b"png")
    (tmp_path / "results" / "figures" / "fig4.pdf").write_bytes(b"pdf")
    (tmp_path / "results" / "model" / "mresunet.keras").write_bytes(b"model")
    _bench(tmp_path / "benchmarks" / "train_model.tsv", 3000.0)
    out = tmp_path / "export"
    export_run(out, root=tmp_path)
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert "figures/fig4.png" in names and "figures/fig4.pdf" not in names
    assert "model_history.csv" in names and "summary.json" in names
    assert not any(n.endswith(".keras") for n in names)
    assert "stage_times_per_rule.csv" in names


def test_unfinished_run_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="summary.json"):
        export_run(tmp_path / "out", root=tmp_path)
    assert not (tmp_path / "out").exists()


def test_model_export_drops_the_optimizer(tmp_path):
    """The exported model is the trained one (same predictions) without Adam's moments."""
    import keras
    import numpy as np

    from szmass.network.model import build_mresunet

    src = tmp_path / "results" / "model"
    src.mkdir(parents=True)
    net = build_mresunet(input_size=8, base_filters=4, depth=1, dropout=0.0)
    net.compile(optimizer="adam", loss="mse")
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    net.fit(x, np.zeros((4, 8, 8, 2), "float32"), epochs=1, verbose=0)  # Adam has state now
    net.save(src / "mresunet.keras")
    for name in MODEL_FILES:
        (src / name).write_text("{}")
    written = export_model(tmp_path / "out", root=tmp_path)
    exported = tmp_path / "out" / "model" / "mresunet.keras"
    assert exported in written
    assert all((tmp_path / "out" / "model" / name).is_file() for name in MODEL_FILES)
    assert exported.stat().st_size < 0.8 * (src / "mresunet.keras").stat().st_size
    loaded = keras.saving.load_model(exported)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), net.predict(x, verbose=0))
    assert not list((tmp_path / "out" / "model").glob(".*tmp*"))


def test_model_export_needs_a_finished_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="mresunet.keras"):
        export_model(tmp_path / "out", root=tmp_path)
