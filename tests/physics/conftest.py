"""Shared fixtures of the physics tests: the paper's config, its spectra (CAMB, once per
session), the cosmology with CAMB's sigma8, and a colossus cosmology built here directly
(not through ``szmass.sky.cosmology``) for the independent reference calculations."""

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from colossus.cosmology import cosmology as colossus_cosmology

from szmass.sky import spectra

REPO = Path(__file__).resolve().parents[2]
CONFIG_PATH = REPO / "config" / "config.yaml"
#: The George et al. 2015 best fit at 150 GHz, shipped with the tests (tests/data/README.md).
GEORGE2015_TABLE = REPO / "tests" / "data" / "george2015_150ghz_Dl_uK2.txt"


@pytest.fixture(scope="session")
def config() -> dict[str, Any]:
    """The paper's config (config/config.yaml)."""
    with open(CONFIG_PATH) as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="session")
def spectra_table(config):
    """The sky's spectra at the paper's settings (CAMB lensed TT + George et al. 2015)."""
    sp = config["spectra"]
    return spectra.compute_spectra(
        cosmology=config["cosmology"],
        lmax_camb=sp["lmax_camb"],
        lmax=sp["lmax"],
        foregrounds=sp["foregrounds"],
    )


@pytest.fixture(scope="session")
def ell_cl(spectra_table) -> tuple[np.ndarray, np.ndarray]:
    """(ell, total C_l [uK^2]) of the spectra table, l = 0..lmax."""
    return (
        np.asarray(spectra_table["ell"], dtype=float),
        np.asarray(spectra_table["cl_total"], dtype=float),
    )


@pytest.fixture(scope="session")
def cosmo(spectra_table) -> dict[str, Any]:
    """The cosmology dict as the pipeline passes it on (config + CAMB's sigma8)."""
    return dict(spectra_table.meta["cosmology"])


@pytest.fixture(scope="session")
def reference_colossus(cosmo):
    """A colossus cosmology set up here from the cosmological parameters, independent of
    ``szmass.sky.cosmology``: flat, massive neutrinos counted as matter (0.06 eV is
    non-relativistic at z < 10^2). Methods use the object itself, so it stays valid when
    szmass later replaces colossus's global cosmology."""
    h = cosmo["H0"] / 100.0
    params = dict(
        flat=True,
        H0=cosmo["H0"],
        Om0=(cosmo["ombh2"] + cosmo["omch2"] + cosmo["omnuh2"]) / h**2,
        Ob0=cosmo["ombh2"] / h**2,
        sigma8=cosmo["sigma8"],
        ns=cosmo["ns"],
        Tcmb0=cosmo["TCMB"],
    )
    return colossus_cosmology.setCosmology("physics-test-reference", params=params, persistence="")


@pytest.fixture(scope="session")
def george2015() -> np.ndarray:
    """The George et al. 2015 best-fit table at 150 GHz, D_l [uK^2]: columns ell, total, CMB,
    DG-Po, DG-Cl, kSZ, tSZ, RG, tSZ-CIB, other (arXiv:1408.3161; tests/data/README.md)."""
    return np.loadtxt(GEORGE2015_TABLE)
