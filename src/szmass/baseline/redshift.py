"""The matched filter across redshifts (issue 16; SPEC §7 "Redshift range"): templates at each
map's own z, and a mass calibration that knows how the filter's amplitude depends on z.

Templates. The maps of a set are grouped by the redshift of their templates: a map's own z
(``step=None``: a fixed-z set is one group, computed exactly as before) or its z rounded to a
multiple of ``TEMPLATE_Z_STEP`` (a continuous z distribution, every map at its own z). One
``matched_filter.filter_bank`` is built per group and reused for every shard (``BankCache``).

Calibration. The amplitude A of the fixed-scale filter is relative to the template of the
fixed mass M_f at the map's own z: A = 1 for a cluster of mass M_f without scatter, at every z.
For the self-similar A10 profile (Arnaud et al. 2010, arXiv:0910.1234, eqs. 5, 11, 13) the
central y scales as E(z)^2 M500^(1 + alpha_p) and the integrated Y as E(z)^(2/3) M500^(5/3)
D_A^-2; both E(z) and D_A cancel in the ratio to the template of M_f at the same z. What is left
is the shape: the filter's response to a cluster of another mass moves from the central-y
ratio (a cluster resolved by the 1' beam, low z) toward the Y ratio (unresolved, high z), so
the slope of ln A in ln M changes with the template's angular size theta500(M_f, z). Measured
on the noise-free response of the paper's filter (0.5-10e14 scales, z 0.2-1.5), the slope
goes from 1.23 (z = 0.2) to 1.45 (z = 1.5); a fit

    ln A = alpha + beta x + gamma t + delta x t,   x = ln(M / M_f),
    t = ln(theta500(M_f, z) / theta_pivot)

leaves 0.4% rms (1.6% at most) in ln M over 1-8e14 and z 0.2-1.5, against 1.2% (5% at most)
with ln E(z) in place of t and 4.5% (18%) with no z term; gamma comes out ~0 (the E(z)
cancellation). ``fit_redshift_calibration`` fits it on the medians of training-map cells in
(mass, z) and ``calibration_at`` turns it into the plain ln M = a + b ln A at one z.
"""

import logging
from collections.abc import Callable
from typing import Any

import numpy as np

from ..calibration import fit_calibration
from ..sky import profiles
from ..units import ARCMIN
from . import matched_filter as mf

log = logging.getLogger("szmass.baseline")

#: Step [redshift] of the template grid for a continuous z distribution. Measured on the
#: paper's sky (40 px, CAMB + George et al. 2015, 5 uK-arcmin): a template 0.005 in z off a
#: map's z (the largest offset at this step) changes the fixed-scale amplitude by 0.2-0.45%
#: (a shift common to all masses, ~0.3% in M), i.e. 0.005-0.07 sigma_A at M200c <= 4.5e14 and
#: at most 0.15 sigma_A (8e14 at z = 1.5, S/N ~40); 1 / 40 of the 20% intrinsic scatter. Per
#: map instead would cost 0.5 s a map (17 templates); a 0.2-1.5 range at this step is 130
#: groups, each built once per rule.
TEMPLATE_Z_STEP = 0.01
#: Calibration cells per training shard when its maps have many redshifts: equal-count bins
#: in z, at most this many, of at least ``CELL_MAPS`` maps (a median of 50 maps at S/N 1 is
#: good to ~20% of sigma_A).
Z_CELLS = 8
CELL_MAPS = 50
#: The fit across z has 4 parameters: it needs this many cell medians, and cells at several z
#: for 2 masses or more; with fewer it falls back to the one-z fit, with a warning.
MIN_Z_CELLS = 6
#: The per-map outputs of ``matched_filter.bank_estimates``.
PER_MAP = (
    "amplitude",
    "amplitude_err",
    "snr",
    "best_scale_m200c",
    "best_index",
    "y0",
    "y0_err",
    "amplitude_fixed",
    "amplitude_fixed_err",
    "snr_fixed",
    "y0_fixed",
    "y0_fixed_err",
    "amplitude_all",
    "snr_all",
)


def template_redshifts(z: np.ndarray, *, step: float | None) -> np.ndarray:
    """Each map's template redshift: its own z (``step=None``) or z rounded to the nearest
    multiple of ``step`` (to 10 decimals, so that 0.7 stays 0.7)."""
    z = np.asarray(z, dtype=float)
    if not np.all(np.isfinite(z) & (z > 0)):
        raise ValueError(f"redshifts must be positive and finite, got {z[~(z > 0)][:3]} ...")
    return z if step is None else np.round(np.round(z / step) * step, 10)


class BankCache:
    """``filter_bank`` per template redshift, built once: call it with a z."""

    def __init__(self, **bank_kwargs: Any) -> None:
        self.kwargs, self.banks = bank_kwargs, {}

    def __call__(self, z: float) -> dict[str, Any]:
        if z not in self.banks:
            self.banks[z] = mf.filter_bank(z=z, **self.kwargs)
        return self.banks[z]


def estimates_by_z(
    maps: np.ndarray, template_z: np.ndarray, bank_at: Callable[[float], dict[str, Any]]
) -> dict[str, np.ndarray]:
    """The per-map estimates (``PER_MAP``) of ``matched_filter.bank_estimates`` for maps (n,
    npix, npix) whose templates lie at ``template_z`` (n,), one filter bank (``bank_at(z)``)
    per distinct z; plus ``template_z``. One distinct z gives exactly the single-z result."""
    template_z = np.asarray(template_z, dtype=float)
    if template_z.shape != (len(maps),):
        raise ValueError(f"template_z {template_z.shape} does not match {len(maps)} maps")
    groups = np.unique(template_z)
    if groups.size == 1:  # the maps as they are: the single-z products, bit for bit
        one = mf.bank_estimates(maps, bank_at(float(groups[0])))
        return {k: one[k] for k in PER_MAP} | {"template_z": template_z}
    out: dict[str, np.ndarray] = {"template_z": template_z}
    for z in groups:
        pick = np.flatnonzero(template_z == z)
        part = mf.bank_estimates(maps[pick], bank_at(float(z)))
        for key in PER_MAP:
            if key not in out:
                out[key] = np.empty((len(maps), *part[key].shape[1:]), part[key].dtype)
            out[key][pick] = part[key]
    return out


def ln_theta500_fixed(z: float, *, fixed_m200c_msun: float, cosmo: dict[str, Any]) -> float:
    """ln(theta500 / arcmin) of the fixed-scale template at redshift z: R500 of M500c from
    M200c (diemer15) over D_A(z) (``profiles.theta500_rad``)."""
    m500 = profiles.m200c_to_m500c(fixed_m200c_msun, z=z, cosmo=cosmo)
    return float(np.log(profiles.theta500_rad(m500, z=z, cosmo=cosmo) / ARCMIN))


def cell_split(template_z: np.ndarray) -> list[np.ndarray]:
    """The calibration cells of one training shard, as index arrays: one cell per distinct
    template z when there are at most ``Z_CELLS`` (a fixed-z shard is one cell of every map),
    else equal-count bins in z of at least ``CELL_MAPS`` maps (at most ``Z_CELLS``)."""
    template_z = np.asarray(template_z, dtype=float)
    values = np.unique(template_z)
    if values.size <= Z_CELLS:
        return [np.flatnonzero(template_z == z) for z in values]
    n_cells = int(np.clip(template_z.size // CELL_MAPS, 1, Z_CELLS))
    return np.array_split(np.argsort(template_z, kind="stable"), n_cells)


def fit_redshift_calibration(
    *,
    amplitude: np.ndarray,
    m200c_msun: np.ndarray,
    ln_theta: np.ndarray,
    fixed_m200c_msun: float,
) -> dict[str, Any]:
    """The filter's mass calibration from cell medians of the fixed-scale amplitude (n_cells,)
    at masses ``m200c_msun`` [Msun] and template sizes ``ln_theta`` (``ln_theta500_fixed``).

    One template size (a fixed-z training set): ``calibration.fit_calibration`` (forward),
    exactly as without redshifts (also, with a warning, with too few cells: ``MIN_Z_CELLS``).
    Several: the least-squares fit of the module docstring,
    ln A = alpha + beta x + gamma t + delta x t, returned as ln M = a + b ln A at the pivot
    t = 0 (the median ln_theta of the cells) plus ``redshift_terms`` (the coefficients, their
    covariance, the pivots and the cells' ln_theta range) for ``calibration_at``.
    """
    amp, mass, t_all = (np.asarray(v, dtype=float) for v in (amplitude, m200c_msun, ln_theta))
    if not amp.shape == mass.shape == t_all.shape or amp.ndim != 1:
        raise ValueError(f"amplitude, m200c_msun, ln_theta must be (n,): {amp.shape}, ...")
    if np.unique(t_all).size == 1:
        return fit_calibration(amplitude=amp, m200c_msun=mass, method="forward")
    good = np.isfinite(amp) & (amp > 0)
    spread = sum(np.unique(t_all[good & (mass == m)]).size > 1 for m in np.unique(mass))
    if good.sum() < MIN_Z_CELLS or spread < 2:
        log.warning(
            "%d positive cell medians, %d masses with cells at several z: too few to fit how "
            "the calibration changes with z (>= %d and 2); fitted as if at one z",
            good.sum(),
            spread,
            MIN_Z_CELLS,
        )
        return fit_calibration(amplitude=amp, m200c_msun=mass, method="forward")
    pivot = float(np.median(t_all[good]))
    x, t = np.log(mass[good] / fixed_m200c_msun), t_all[good] - pivot
    design = np.stack([np.ones_like(x), x, t, x * t], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.log(amp[good]), rcond=None)
    resid = np.log(amp[good]) - design @ coef
    s2 = float(resid @ resid / (x.size - 4)) if x.size > 4 else 0.0
    terms = {
        "form": "ln A = alpha + beta x + gamma t + delta x t, x = ln(M200c / m_pivot), "
        "t = ln(theta500(fixed scale, z) / arcmin) - ln_theta_pivot",
        "alpha": float(coef[0]),
        "beta": float(coef[1]),
        "gamma": float(coef[2]),
        "delta": float(coef[3]),
        "covariance": (s2 * np.linalg.inv(design.T @ design)).tolist(),
        "rms_ln_a": float(np.sqrt(s2)),
        "m_pivot": float(fixed_m200c_msun),
        "ln_theta_pivot": pivot,
        "ln_theta_range": [float(t_all[good].min()), float(t_all[good].max())],
    }
    counts = {"n_used": int(good.sum()), "n_nonpositive": int((~good).sum())}
    return calibration_at({"redshift_terms": terms, **counts}, pivot) | {"redshift_terms": terms}


def calibration_at(calibration: dict[str, Any], ln_theta: float) -> dict[str, Any]:
    """The plain calibration ln M200c = a + b ln A (``a``, ``b``, their first-order errors,
    ``scatter``, ``n_used``, ``n_nonpositive``) for templates of size ``ln_theta``: the
    calibration itself when it has no ``redshift_terms`` (fitted at one z)."""
    terms = calibration.get("redshift_terms")
    if terms is None:
        return calibration
    t = float(ln_theta) - terms["ln_theta_pivot"]
    p = np.array([terms[k] for k in ("alpha", "beta", "gamma", "delta")])
    alpha_t, beta_t = p[0] + p[2] * t, p[1] + p[3] * t
    if not beta_t > 0:
        raise ValueError(f"the calibration's slope is {beta_t:.3g} <= 0 at ln theta {ln_theta}")
    b = 1.0 / beta_t
    a = np.log(terms["m_pivot"]) - alpha_t * b
    g, h = np.array([1.0, 0.0, t, 0.0]), np.array([0.0, 1.0, 0.0, t])
    jac = np.stack([-g * b + alpha_t * h * b**2, -h * b**2])
    cov = jac @ np.asarray(terms["covariance"]) @ jac.T
    return {
        "a": float(a),
        "b": float(b),
        "a_err": float(np.sqrt(cov[0, 0])),
        "b_err": float(np.sqrt(cov[1, 1])),
        "scatter": float(terms["rms_ln_a"] * b),
        "n_used": calibration["n_used"],
        "n_nonpositive": calibration["n_nonpositive"],
    }
