"""Single-frequency matched-filter amplitudes and masses: the linear baseline of the network.

The simulated sky is d = W (f + s + n) (``simulate.simulate_maps``): W the apodization window,
f the beam-convolved CMB + foreground field, cropped from a periodic padded grid, s the cluster,
n white noise. Because f is a crop of a periodic Gaussian field, its pixel covariance is exactly
the circulant covariance of the padded grid, the inverse FFT of the filter power |F_l|^2,
restricted to the cutout. With C = W (C_f + N) W and a template t (the windowed A10 cluster of
one trial mass), the minimum-variance unbiased linear estimate of the amplitude is

    A = t^T C^-1 d / (t^T C^-1 t),   sigma_A = (t^T C^-1 t)^(-1/2)

(Haehnelt & Tegmark 1996, astro-ph/9507077; Melin, Bartlett & Delabrouille 2006,
astro-ph/0602424). Filtering at several trial scales and keeping the one of highest S/N is the
survey practice (Melin et al. 2006; Hasselfield et al. 2013, arXiv:1301.0816, who calibrate on
a fixed scale instead because the maximum over scales is biased high at low S/N). The mass
calibration ln M200c = a + b ln A is fitted on training maps.

Amplitudes are relative to the template of their scale: A = 1 is the cluster of that mass
without intrinsic scatter. ``y0`` is A times the template's beam-convolved central Compton y,
comparable across scales.
"""

from typing import Any

import numpy as np
import scipy.fft
import scipy.linalg

from ..sky import maps as flatsky
from ..sky import profiles
from ..sky.cluster import sz_template_uk
from ..units import ARCMIN

#: ``spawn_key`` set code of the cluster-free maps; ``simulate.SET_CODES`` uses 1-3, so these
#: streams never coincide with those of a simulated data set.
CLUSTER_FREE_SET_CODE = 0
_COMPONENT_CODES = {"field": 0, "noise": 1}
_CHUNK = 4096  # maps per matrix product in apply_filters (bounds the float64 copy)


def _sky_geometry(sky: dict[str, Any]) -> tuple[int, int, float]:
    npix = int(sky["npix"])
    return npix, npix * int(sky["pad_factor"]), sky["pixel_arcmin"] * ARCMIN


def pixel_covariance(
    *, spectra_ell: np.ndarray, spectra_cl: np.ndarray, sky: dict[str, Any]
) -> np.ndarray:
    """Exact pixel covariance [uK^2] of the cluster-free simulated sky, (npix^2, npix^2).

    C = W (C_f + sigma_n^2 I) W, pixels flattened row-major (index y * npix + x). C_f is the
    circulant covariance of the padded (npix * pad_factor) grid of ``flatsky.field_filter``,
    irfft2(F_l^2)(dy, dx), which is exactly the covariance of the field that
    ``flatsky.gaussian_fields`` draws (beam included); sigma_n is
    ``flatsky.white_noise_rms_per_pixel`` and W the ``flatsky.apodization_window``.

    Args:
        spectra_ell, spectra_cl: the total sky C_l [uK^2], l = 0..lmax (the spectra table).
        sky: ``pixel_arcmin``, ``npix``, ``pad_factor``, ``beam_fwhm_arcmin``,
            ``noise_uk_arcmin``, ``apodization_width_pix``.
    """
    npix, n_pad, pixel_rad = _sky_geometry(sky)
    filt = flatsky.field_filter(
        ell=np.asarray(spectra_ell, float),
        cl=np.asarray(spectra_cl, float),
        n=n_pad,
        pixel_rad=pixel_rad,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
    )
    corr = scipy.fft.irfft2(filt**2, s=(n_pad, n_pad))  # corr[dy, dx], periodic
    idx = np.arange(npix)
    lag = (idx[:, None] - idx[None, :]) % n_pad
    cov = corr[lag[:, None, :, None], lag[None, :, None, :]].reshape(npix * npix, npix * npix)
    noise_rms = flatsky.white_noise_rms_per_pixel(sky["noise_uk_arcmin"], sky["pixel_arcmin"])
    cov[np.diag_indices_from(cov)] += noise_rms**2
    w = flatsky.apodization_window(npix, sky["apodization_width_pix"]).ravel()
    return cov * w[:, None] * w[None, :]


def scale_templates(
    *,
    m200c_msun: np.ndarray,
    z: float,
    cosmo: dict[str, Any],
    sky: dict[str, Any],
    cluster: dict[str, Any],
) -> np.ndarray:
    """Windowed, beam-convolved A10 cluster maps [uK] of trial masses, (n_scales, npix, npix).

    Exactly the simulation's cluster term without scatter (``cluster.sz_template_uk`` at
    M500c from ``profiles.m200c_to_m500c``, Diemer & Kravtsov 2015, arXiv:1407.4730; Arnaud
    et al. 2010, arXiv:0910.1234) times the apodization window.

    Args:
        m200c_msun: trial masses M200c [Msun], shape (n_scales,).
        z: redshift of the cluster.
        cosmo: cosmology dict with ``sigma8`` (``szmass.cosmology``).
        sky: as for ``pixel_covariance`` plus ``freq_ghz``.
        cluster: ``x_max_r500``, ``subpixel``.
    """
    m200 = np.atleast_1d(np.asarray(m200c_msun, dtype=float))
    if m200.ndim != 1 or not np.all(np.isfinite(m200) & (m200 > 0)):
        raise ValueError(f"m200c_msun must be positive finite masses, shape (n,); got {m200}")
    npix = int(sky["npix"])
    m500 = np.atleast_1d(profiles.m200c_to_m500c(m200, z=z, cosmo=cosmo))
    window = flatsky.apodization_window(npix, sky["apodization_width_pix"])
    out = np.empty((m200.size, npix, npix))
    for i, m in enumerate(m500):
        out[i] = window * sz_template_uk(
            m500_msun=float(m),
            z=z,
            cosmo=cosmo,
            npix=npix,
            pixel_arcmin=sky["pixel_arcmin"],
            fwhm_arcmin=sky["beam_fwhm_arcmin"],
            freq_ghz=sky["freq_ghz"],
            subpixel=cluster["subpixel"],
            x_max=cluster["x_max_r500"],
        )
    return out


def build_filters(templates: np.ndarray, covariance: np.ndarray) -> dict[str, np.ndarray]:
    """Matched filters of ``templates`` (n_scales, npix, npix) [uK] for ``covariance``
    (npix^2, npix^2) [uK^2].

    Returns ``weights`` (n_scales, npix^2) [1/uK], w_s = C^-1 t_s / (t_s^T C^-1 t_s), so that
    A_s = w_s . d, and ``sigma`` (n_scales,) = (t_s^T C^-1 t_s)^(-1/2), the rms of A_s. The
    solve is a Cholesky factorisation of C rescaled to unit diagonal (the window's 10^-3
    corner weights would otherwise cost six digits of conditioning).
    """
    templates = np.asarray(templates, dtype=float)
    covariance = np.asarray(covariance, dtype=float)
    if templates.ndim != 3 or templates.shape[1] != templates.shape[2]:
        raise ValueError(f"templates must be (n_scales, npix, npix), got {templates.shape}")
    p = templates.shape[1] * templates.shape[2]
    if covariance.shape != (p, p):
        raise ValueError(
            f"covariance {covariance.shape} does not match templates {templates.shape}: "
            f"expected ({p}, {p})"
        )
    scale = np.sqrt(np.diag(covariance))
    if not np.all(np.isfinite(scale) & (scale > 0)):
        raise ValueError("covariance has a non-positive or non-finite diagonal")
    try:
        factor = scipy.linalg.cho_factor(covariance / np.outer(scale, scale), lower=True)
    except np.linalg.LinAlgError as err:
        raise ValueError(
            f"covariance {covariance.shape} is not positive definite (an empirical covariance "
            "needs more maps than pixels)"
        ) from err
    t = templates.reshape(templates.shape[0], p).T  # (p, n_scales)
    cinv_t = scipy.linalg.cho_solve(factor, t / scale[:, None]) / scale[:, None]
    norm = np.einsum("ps,ps->s", t, cinv_t)
    if not np.all(norm > 0):
        raise ValueError("a template has zero signal (t^T C^-1 t <= 0)")
    return {"weights": (cinv_t / norm).T.copy(), "sigma": norm**-0.5}


def apply_filters(maps: np.ndarray, filters: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Amplitude (n, n_scales) and S/N = amplitude / sigma of every map (n, npix, npix) at
    every scale of ``build_filters``; one matrix product (float64) per chunk of maps."""
    maps, weights, sigma = np.asarray(maps), filters["weights"], filters["sigma"]
    if maps.ndim != 3 or maps.shape[1] * maps.shape[2] != weights.shape[1]:
        raise ValueError(
            f"maps must be (n, npix, npix) with npix^2 = {weights.shape[1]} (the filters' "
            f"pixels), got {maps.shape}"
        )
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    amp = np.empty((n, weights.shape[0]))
    for start in range(0, n, _CHUNK):
        amp[start : start + _CHUNK] = flat[start : start + _CHUNK].astype(float) @ weights.T
    return {"amplitude": amp, "snr": amp / sigma}


def filter_bank(
    *,
    z: float,
    scale_m200c_msun: np.ndarray,
    fixed_m200c_msun: float,
    covariance: np.ndarray,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    cosmo: dict[str, Any],
) -> dict[str, Any]:
    """The filters of every trial scale and of the fixed scale for clusters at redshift ``z``
    (templates from ``scale_templates``, filters from ``build_filters``), with what
    ``bank_estimates`` needs to turn amplitudes into y0: ``z``, ``scales``, ``fixed``,
    ``filters``, ``y0_scale`` (each template's beam-convolved central Compton y) and
    ``response_fixed`` (the fixed-scale amplitude of each scale's noise-free template)."""
    scales = np.atleast_1d(np.asarray(scale_m200c_msun, dtype=float))
    templates = scale_templates(
        m200c_msun=np.append(scales, fixed_m200c_msun), z=z, cosmo=cosmo, sky=sky, cluster=cluster
    )
    filters = build_filters(templates, covariance)
    c = int(sky["npix"]) // 2
    window_c = flatsky.apodization_window(int(sky["npix"]), sky["apodization_width_pix"])[c, c]
    y_per_uk = 1.0 / (cosmo["TCMB"] * profiles.f_sz(sky["freq_ghz"], cosmo["TCMB"]) * 1e6)
    flat_templates = templates.reshape(templates.shape[0], -1)
    return {
        "z": float(z),
        "scales": scales,
        "fixed": float(fixed_m200c_msun),
        "filters": filters,
        "y0_scale": templates[:, c, c] / window_c * y_per_uk,  # positive: f_sz < 0 at 150 GHz
        "response_fixed": filters["weights"][-1] @ flat_templates[:-1].T,
    }


def bank_estimates(maps: np.ndarray, bank: dict[str, Any]) -> dict[str, np.ndarray]:
    """The estimates of ``matched_filter_estimates`` for maps (n, npix, npix) from one
    ``filter_bank``."""
    res = apply_filters(maps, bank["filters"])
    sigma, y0_scale, scales = bank["filters"]["sigma"], bank["y0_scale"], bank["scales"]
    amp, snr = res["amplitude"][:, :-1], res["snr"][:, :-1]
    best = np.argmax(snr, axis=1)
    rows = np.arange(amp.shape[0])
    return {
        "amplitude": amp[rows, best],
        "amplitude_err": sigma[best],
        "snr": snr[rows, best],
        "best_scale_m200c": scales[best],
        "best_index": best,
        "y0": amp[rows, best] * y0_scale[best],
        "y0_err": sigma[best] * y0_scale[best],
        "amplitude_fixed": res["amplitude"][:, -1],
        "amplitude_fixed_err": np.full(amp.shape[0], sigma[-1]),
        "snr_fixed": res["snr"][:, -1],
        "y0_fixed": res["amplitude"][:, -1] * y0_scale[-1],
        "y0_fixed_err": np.full(amp.shape[0], sigma[-1] * y0_scale[-1]),
        "fixed_m200c": bank["fixed"],
        "scale_m200c": scales,
        "scale_sigma": sigma[:-1],
        "scale_y0": y0_scale[:-1],
        "scale_response_fixed": bank["response_fixed"],
        "amplitude_all": amp,
        "snr_all": snr,
    }


def matched_filter_estimates(
    maps: np.ndarray,
    *,
    spectra_ell: np.ndarray,
    spectra_cl: np.ndarray,
    sky: dict[str, Any],
    cluster: dict[str, Any],
    cosmo: dict[str, Any],
    scale_m200c_msun: np.ndarray,
    fixed_m200c_msun: float | None = None,
    covariance: np.ndarray | None = None,
    z: float | None = None,
) -> dict[str, np.ndarray]:
    """Multi-scale and fixed-scale matched-filter amplitudes of simulated maps (n, npix, npix),
    every template at one redshift (maps at several: ``baseline.redshift.estimates_by_z``).

    Args:
        scale_m200c_msun: trial masses M200c [Msun] setting the filter scales (n_scales,).
        fixed_m200c_msun: scale of the fixed-scale estimate; default the middle trial mass
            (index n_scales // 2).
        covariance: pixel covariance to use instead of ``pixel_covariance`` (e.g. the
            ``empirical_covariance`` check path).
        z: the clusters' redshift; default ``cluster['redshift']`` (which must then be a
            number).
        sky, cluster, cosmo, spectra_*: as for ``pixel_covariance`` / ``scale_templates``.
    Returns:
        per map (n,): ``amplitude``, ``amplitude_err``, ``snr``, ``best_scale_m200c`` [Msun],
        ``best_index``, ``y0``, ``y0_err`` (beam-convolved central Compton y) at the scale of
        highest S/N; ``amplitude_fixed``, ``amplitude_fixed_err``, ``snr_fixed``, ``y0_fixed``,
        ``y0_fixed_err`` at the fixed scale; and per scale ``scale_m200c``, ``scale_sigma``,
        ``scale_y0`` (the template's central y), ``scale_response_fixed`` (the fixed-scale
        amplitude of each scale's noise-free template: ``calibration.fit_calibration`` of it against
        ``scale_m200c`` is a calibration with no training maps), the scalar ``fixed_m200c``,
        and the full ``amplitude_all`` / ``snr_all`` (n, n_scales).
    """
    scales = np.atleast_1d(np.asarray(scale_m200c_msun, dtype=float))
    fixed = scales[scales.size // 2] if fixed_m200c_msun is None else float(fixed_m200c_msun)
    if covariance is None:
        covariance = pixel_covariance(spectra_ell=spectra_ell, spectra_cl=spectra_cl, sky=sky)
    bank = filter_bank(
        z=cluster["redshift"] if z is None else z,
        scale_m200c_msun=scales,
        fixed_m200c_msun=fixed,
        covariance=covariance,
        sky=sky,
        cluster=cluster,
        cosmo=cosmo,
    )
    return bank_estimates(maps, bank)


def cluster_free_maps(
    *,
    n_maps: int,
    seed: int,
    spectra_ell: np.ndarray,
    spectra_cl: np.ndarray,
    sky: dict[str, Any],
    first: int = 0,
    threads: int = 1,
) -> np.ndarray:
    """Maps W (f + n) drawn exactly as ``simulate.simulate_maps`` draws its sky, without a
    cluster, (n_maps, npix, npix) float64 [uK].

    Map i (i = first..first + n_maps - 1) uses its own ``SeedSequence(seed, spawn_key=
    (CLUSTER_FREE_SET_CODE, 0, i, component))`` streams, disjoint from every simulated set.
    """
    npix, n_pad, pixel_rad = _sky_geometry(sky)
    filt = flatsky.field_filter(
        ell=np.asarray(spectra_ell, float),
        cl=np.asarray(spectra_cl, float),
        n=n_pad,
        pixel_rad=pixel_rad,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
    )
    window = flatsky.apodization_window(npix, sky["apodization_width_pix"])
    noise_rms = flatsky.white_noise_rms_per_pixel(sky["noise_uk_arcmin"], sky["pixel_arcmin"])

    def rng(i: int, component: str) -> np.random.Generator:
        key = (CLUSTER_FREE_SET_CODE, 0, i, _COMPONENT_CODES[component])
        return np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=key)))

    out = np.empty((n_maps, npix, npix))
    for start in range(first, first + n_maps, 100):
        idx = range(start, min(start + 100, first + n_maps))
        white = np.stack([rng(i, "field").standard_normal((n_pad, n_pad)) for i in idx])
        field = flatsky.crop_center(flatsky.gaussian_fields(white, filt, workers=threads), npix)
        noise = np.stack([rng(i, "noise").standard_normal((npix, npix)) for i in idx])
        out[start - first : start - first + len(idx)] = window * (field + noise_rms * noise)
    return out


def empirical_covariance(maps: np.ndarray) -> np.ndarray:
    """Sample covariance (mean subtracted, ddof = 1) of n maps (n, npix, npix), (p, p), p =
    npix^2.

    A check path for ``pixel_covariance``. With it, t^T C^ t is inflated: sigma_A^2 from C^ is
    sigma_A^2 chi^2_{n-p} / (n - 1) (Wishart; Hartlap et al. 2007, astro-ph/0608064), i.e.
    low by (n - p) / (n - 1) on average; multiply by (n - 1) / (n - p) to compare.
    """
    maps = np.asarray(maps)
    if maps.ndim != 3:
        raise ValueError(f"maps must be (n, npix, npix), got {maps.shape}")
    n, p = maps.shape[0], maps.shape[1] * maps.shape[2]
    if n <= p:
        raise ValueError(f"{n} maps cannot give a positive-definite covariance of {p} pixels")
    flat = maps.reshape(n, p).astype(float)
    flat -= flat.mean(axis=0)
    return flat.T @ flat / (n - 1)
