"""Static checks of the repository: snakemake --lint, snakefmt, ruff."""

import subprocess

from . import smk


def _tool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(smk.BIN / args[0]), *args[1:]],
        cwd=smk.REPO,
        env=smk.env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
    )


def test_snakemake_lint_is_clean():
    proc = _tool("snakemake", "--lint", "--configfile", "config/test.yaml")
    assert proc.returncode == 0, proc.stdout
    assert "Lints for" not in proc.stdout, proc.stdout


def test_snakefmt_check():
    proc = _tool("snakefmt", "--check", ".")
    assert proc.returncode == 0, proc.stdout


def test_ruff_check():
    proc = _tool("ruff", "check", ".")
    assert proc.returncode == 0, proc.stdout
