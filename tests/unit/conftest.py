"""Fixtures of the training-stage unit tests: tiny simulated shards and a prepared data set.

The shards come from the real ``simulate.simulate_shard`` on a synthetic sky spectrum (flat
D_l, no CAMB), so ``dataset.split_dataset`` sees exactly what the workflow gives it.
"""

from pathlib import Path

import numpy as np
import pytest
from astropy.table import Table

from szmass.network.dataset import split_dataset
from szmass.sky.simulate import simulate_shard

#: config/config.yaml's cosmology plus the derived sigma8 the spectra stage adds.
COSMO = {
    "H0": 67.32117,
    "ombh2": 0.0223828,
    "omch2": 0.1201075,
    "omnuh2": 6.451439e-4,
    "tau": 0.05430842,
    "ns": 0.9660499,
    "As": 2.100549e-9,
    "TCMB": 2.7255,
    "YHe": 0.2454006,
    "sigma8": 0.8119,
}
CLUSTER = {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 2}
SHARD_SEED = 3
#: The tiny grid: three training masses [1e14 Msun], 12 realizations each.
MASSES = (1, 2, 4)
N_REALIZATIONS = 12
TRAIN, VAL = (0, 8), (8, 12)


def sky(npix: int) -> dict:
    return {
        "freq_ghz": 150.0,
        "pixel_arcmin": 0.25,
        "npix": npix,
        "pad_factor": 2,
        "beam_fwhm_arcmin": 1.0,
        "noise_uk_arcmin": 5.0,
        "apodization_width_pix": 2,
    }


def write_spectra(path: Path) -> Path:
    """A spectra table as compute_spectra writes it: flat D_l = 100 uK^2 out to l = 40000."""
    ell = np.arange(40001.0)
    cl = np.zeros_like(ell)
    cl[2:] = 2 * np.pi * 100.0 / (ell[2:] * (ell[2:] + 1))
    table = Table({"ell": ell, "cl_total": cl})
    table.meta["cosmology"] = COSMO
    table.meta["foregrounds"] = {}
    table.write(path, format="ascii.ecsv", overwrite=True)
    return path


def simulate_grid(directory: Path, *, npix: int, masses=MASSES, n=N_REALIZATIONS) -> list[str]:
    """Grid shards M{mass}.zarr in ``directory``; returns their paths."""
    directory.mkdir(parents=True, exist_ok=True)
    spectra = write_spectra(directory / "spectra.ecsv")
    paths = []
    for mass in masses:
        path = directory / f"M{mass:g}.zarr"
        simulate_shard(
            spectra_path=str(spectra),
            out_path=str(path),
            set_name="grid",
            seed=SHARD_SEED,
            sky=sky(npix),
            cluster=CLUSTER,
            sigma_int=0.2,
            mass_1e14=mass,
            n_realizations=n,
        )
        paths.append(str(path))
    return paths


def split(shard_paths: list[str], out: Path) -> dict:
    """``split_dataset`` into ``out``/{train,val}.zarr and ``out``/normalization.json."""
    return split_dataset(
        train=[(p, list(TRAIN)) for p in shard_paths],
        val=[(p, list(VAL)) for p in shard_paths],
        out_train=str(out / "train.zarr"),
        out_val=str(out / "val.zarr"),
        out_normalization=str(out / "normalization.json"),
    )


@pytest.fixture(scope="session")
def shards16(tmp_path_factory) -> list[str]:
    """Three 16x16-pixel grid shards (masses 1, 2, 4e14 Msun, 12 realizations each)."""
    return simulate_grid(tmp_path_factory.mktemp("shards16"), npix=16)


@pytest.fixture(scope="session")
def prepared8(tmp_path_factory) -> Path:
    """A prepared 8x8-pixel training set (24 maps) and validation set (12 maps), as the
    split_dataset rule writes them: train.zarr, val.zarr, normalization.json. Read only."""
    root = tmp_path_factory.mktemp("prepared8")
    split(simulate_grid(root / "sims", npix=8), root)
    return root
