"""Angular power spectra of the 150 GHz sky: lensed CMB (CAMB) and five foregrounds.

Foregrounds are the George et al. 2015 (arXiv:1408.3161) best fit at 150 GHz, each given as its
amplitude D_3000 = l(l+1)C_l/2pi at l = 3000 [uK^2] and a shape: power laws for the Poisson
(D_l ∝ l^2) and clustered CIB (D_l ∝ l^0.8) terms, the Dunkley et al. 2013 templates shipped
with ``fgspectra`` for the tSZ and kSZ from unrelated haloes. The templates end at l = 10000;
above it their D_l is held at the l = 10000 value. The lensed CMB is computed by CAMB up to
``lmax_camb`` and taken as zero above (at l = 10^4 its D_l is ~0.03 uK^2 against ~10^2 uK^2 of
foregrounds). All spectra are C_l in uK^2, l = 0..lmax.
"""

import os
from pathlib import Path
from typing import Any

import camb
import numpy as np
from astropy.table import Table
from fgspectra import power as fgpower

from .. import __version__
from .cosmology import camb_params

L_PIVOT = 3000
FOREGROUND_COMPONENTS = ("cib_poisson", "cib_clustered", "radio_poisson", "tsz", "ksz")
_TEMPLATE_LMAX = 10000  # last multipole of the fgspectra templates


def dl_to_cl(ell: np.ndarray, dl: np.ndarray) -> np.ndarray:
    """C_l = 2pi D_l / (l(l+1)), zero for l < 2."""
    ell = np.asarray(ell, dtype=float)
    cl = np.zeros_like(np.asarray(dl, dtype=float))
    good = ell >= 2
    cl[good] = 2.0 * np.pi * dl[good] / (ell[good] * (ell[good] + 1.0))
    return cl


def _template_shape(template: fgpower.PowerSpectrumFromFile, ell: np.ndarray) -> np.ndarray:
    """Template D_l normalised to 1 at l = 3000, held constant above its last multipole."""
    ell_clip = np.clip(ell, 0, _TEMPLATE_LMAX).astype(int)
    return template.eval(ell=ell_clip, ell_0=L_PIVOT, amp=1.0)


def foreground_dl(
    ell: np.ndarray, *, d3000_uk2: dict[str, float], cib_clustered_index: float
) -> dict[str, np.ndarray]:
    """D_l [uK^2] of each George et al. 2015 component at 150 GHz.

    Args:
        ell: multipoles, shape (n,).
        d3000_uk2: amplitude D_3000 of each of ``FOREGROUND_COMPONENTS``.
        cib_clustered_index: power-law index n of the clustered CIB, D_l ∝ l^n (0.8).
    Returns:
        dict component -> D_l, shape (n,).
    """
    unknown = set(d3000_uk2) - set(FOREGROUND_COMPONENTS)
    missing = set(FOREGROUND_COMPONENTS) - set(d3000_uk2)
    if unknown or missing:
        raise KeyError(
            f"foreground amplitudes: unknown {sorted(unknown)}, missing {sorted(missing)}"
        )
    ell = np.asarray(ell, dtype=float)
    x = ell / L_PIVOT
    return {
        "cib_poisson": d3000_uk2["cib_poisson"] * x**2,
        "cib_clustered": d3000_uk2["cib_clustered"] * x**cib_clustered_index,
        "radio_poisson": d3000_uk2["radio_poisson"] * x**2,
        "tsz": d3000_uk2["tsz"] * _template_shape(fgpower.tSZ_150_bat(), ell),
        "ksz": d3000_uk2["ksz"] * _template_shape(fgpower.kSZ_bat(), ell),
    }


def lensed_cmb_cl(cosmo: dict[str, Any], *, lmax: int) -> tuple[np.ndarray, float]:
    """CAMB lensed TT C_l [uK^2] for l = 0..lmax, and the derived sigma8 (z = 0)."""
    results = camb.get_results(camb_params(cosmo, lmax=lmax))
    cls = results.get_lensed_scalar_cls(lmax=lmax, CMB_unit="muK", raw_cl=True)
    return cls[:, 0].copy(), float(results.get_sigma8_0())


def compute_spectra(
    *, cosmology: dict[str, Any], lmax_camb: int, lmax: int, foregrounds: dict[str, Any]
) -> Table:
    """The sky's spectra as one table: ell, cl_cmb, cl_<component>..., cl_total [uK^2].

    ``foregrounds`` holds ``d3000_uk2`` (per component) and ``cib_clustered_index``.
    The metadata carry the cosmology (with the derived sigma8) and every input.
    """
    if lmax < lmax_camb:
        raise ValueError(f"spectra.lmax ({lmax}) must be >= spectra.lmax_camb ({lmax_camb})")
    ell = np.arange(lmax + 1)
    cl_cmb_camb, sigma8 = lensed_cmb_cl(cosmology, lmax=lmax_camb)
    cl_cmb = np.zeros(lmax + 1)
    cl_cmb[: lmax_camb + 1] = cl_cmb_camb
    fg = foreground_dl(
        ell,
        d3000_uk2=foregrounds["d3000_uk2"],
        cib_clustered_index=foregrounds["cib_clustered_index"],
    )
    table = Table({"ell": ell, "cl_cmb": cl_cmb})
    for name in FOREGROUND_COMPONENTS:
        table[f"cl_{name}"] = dl_to_cl(ell, fg[name])
    table["cl_total"] = sum(table[f"cl_{c}"] for c in ("cmb", *FOREGROUND_COMPONENTS))
    for col in table.colnames[1:]:
        table[col].unit = "uK2"
        table[col].description = f"C_ell of {col[3:]} [uK^2]"
    table.meta.update(
        cosmology={**cosmology, "sigma8": sigma8},
        lmax_camb=lmax_camb,
        foregrounds=foregrounds,
        camb_version=camb.__version__,
        szmass_version=__version__,
        note="C_ell in uK^2 (CMB_unit=muK, raw_cl=True); 150 GHz; George et al. 2015 foregrounds",
    )
    return table


def write_spectra(table: Table, path: str | os.PathLike) -> None:
    """Write the table as ECSV, atomically (write beside, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        table.write(tmp, format="ascii.ecsv", overwrite=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def read_spectra(path: str | os.PathLike) -> Table:
    """Read a spectra table; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"spectra table {path} does not exist (run compute_spectra)")
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception as err:  # astropy raises several kinds
        raise ValueError(f"spectra table {path} cannot be read: {err}") from err
    needed = {"ell", "cl_total"}
    if not needed <= set(table.colnames) or "cosmology" not in table.meta:
        raise ValueError(f"spectra table {path} lacks columns {needed} or cosmology metadata")
    return table
