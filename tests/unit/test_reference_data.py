"""The reference data the tests compare with ship with the repository (tests/data/), so a
clean clone, with no ../shared beside it, runs every test."""

import hashlib
import importlib.util
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "tests" / "data"
TABLE = DATA / "george2015_150ghz_Dl_uK2.txt"


def _clone_files() -> list[str]:
    """The files under tests/ that a clone of this checkout has: the tracked ones (a file
    added but not yet committed counts), or all of them outside a git checkout."""
    try:
        listed = subprocess.run(
            ["git", "-C", str(REPO), "ls-files", "tests"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        listed = [str(p.relative_to(REPO)) for p in (REPO / "tests").rglob("*") if p.is_file()]
    return [name for name in listed if (REPO / name).is_file()]


def test_physics_conftest_finds_the_table_in_a_clean_clone(tmp_path):
    """Copy what a clone has of tests/ to a directory with no shared/ near it, import the
    physics conftest from there: the table it names is inside the clone and loads."""
    clone = tmp_path / "clone"
    for name in _clone_files():
        (clone / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, clone / name)
    assert not any((parent / "shared").exists() for parent in clone.parents)
    spec = importlib.util.spec_from_file_location(
        "clean_clone_physics_conftest", clone / "tests" / "physics" / "conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)

    table = Path(conftest.GEORGE2015_TABLE)
    assert table.is_relative_to(clone), f"{table} is outside the clone"
    assert table.is_file(), f"{table.relative_to(clone)} is not tracked by git"
    assert np.loadtxt(table).shape == (11991, 10)


def test_table_is_the_cited_one():
    """The table is unchanged from its source: its sha256 is the one tests/data/README.md
    gives, its header names the columns, and it covers l = 10..12000 in steps of one."""
    readme = (DATA / "README.md").read_text()
    cited = re.search(r"sha256 `([0-9a-f]{64})`", readme).group(1)
    assert hashlib.sha256(TABLE.read_bytes()).hexdigest() == cited
    assert "arXiv:1408.3161" in readme
    header = TABLE.read_text().splitlines()[0]
    assert header.split()[1:5] == ["ell", "Total", "CMB", "DG-Po"]
    ell = np.loadtxt(TABLE, usecols=0)
    np.testing.assert_array_equal(ell, np.arange(10, 12001))
