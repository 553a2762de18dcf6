"""Matched-filter throughput at the paper geometry, against numpy baselines in the same run.

Builds the filters (exact pixel covariance, one windowed A10 template per scale, Cholesky)
for the paper config, then filters 10,000 float32 maps at every scale. Prints the build time,
maps/s of ``apply_filters`` beside two baselines measured on the same maps (casting the
float32 maps to float64 and normalising them by a constant; one 2-d FFT per map), the ratios
(filter time / baseline time),
and, per scale, the predicted sigma_A, the S/N of a cluster of that mass without scatter
(1 / sigma_A) and the measured std of A on cluster-free maps over sigma_A.

    python bench/bench_matched_filter.py [--maps 10000] [--scales 16] [--camb]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import scipy.fft
import yaml

from szmass.baseline import matched_filter as mf
from szmass.sky import profiles

ROOT = Path(__file__).resolve().parents[1]


def analytic_spectrum() -> tuple[np.ndarray, np.ndarray]:
    """A CMB-like + CIB-like C_l [uK^2] (as in tests/physics/test_baseline_matched_filter.py)."""
    ell = np.arange(40001.0)
    cl = np.zeros_like(ell)
    lv = ell[2:]
    dl = 3000.0 * (lv / 300.0) ** -2 * np.exp(-lv / 2000.0)
    dl += 10.0 * (lv / 3000.0) ** 2 + 3.0 * (lv / 3000.0) ** 0.8
    cl[2:] = 2.0 * np.pi * dl / (lv * (lv + 1.0))
    return ell, cl


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config/config.yaml"))
    parser.add_argument("--maps", type=int, default=10000, help="maps filtered per timing")
    parser.add_argument("--draw", type=int, default=1000, help="cluster-free maps drawn")
    parser.add_argument("--scales", type=int, default=16, help="trial masses, log-spaced")
    parser.add_argument("--mass-range", type=float, nargs=2, default=(0.5, 10.0))
    parser.add_argument("--camb", action="store_true", help="CAMB + George et al. spectra")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many runs")
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    sky, cl_cfg = cfg["sky"], cfg["cluster"]
    cluster = {k: cl_cfg[k] for k in ("redshift", "x_max_r500", "subpixel")}

    if args.camb:
        from szmass.sky.spectra import compute_spectra

        table = compute_spectra(cosmology=cfg["cosmology"], **cfg["spectra"])
        cosmo = dict(table.meta["cosmology"])
        ell, cl = np.asarray(table["ell"], float), np.asarray(table["cl_total"], float)
        label = "CAMB + George et al. 2015"
    else:
        cosmo = {**cfg["cosmology"], "sigma8": 0.8111}
        ell, cl = analytic_spectrum()
        label = "analytic"
    scales = np.geomspace(*args.mass_range, args.scales) * 1e14

    t0 = time.perf_counter()
    cov = mf.pixel_covariance(spectra_ell=ell, spectra_cl=cl, sky=sky)
    t_cov = time.perf_counter() - t0
    t0 = time.perf_counter()
    templates = mf.scale_templates(
        m200c_msun=scales, z=cluster["redshift"], cosmo=cosmo, sky=sky, cluster=cluster
    )
    t_tmpl = time.perf_counter() - t0
    t0 = time.perf_counter()
    filters = mf.build_filters(templates, cov)
    t_build = time.perf_counter() - t0

    drawn = mf.cluster_free_maps(
        n_maps=args.draw, seed=cfg["seed"], spectra_ell=ell, spectra_cl=cl, sky=sky
    )
    reps = -(-args.maps // args.draw)
    batch = np.tile(drawn.astype(np.float32), (reps, 1, 1))[: args.maps]
    norm = float(np.abs(batch).max())

    t_apply = best_of(lambda: mf.apply_filters(batch, filters), args.repeat)
    t_cast = best_of(lambda: batch.astype(np.float64) / norm, args.repeat)
    t_fft = best_of(lambda: scipy.fft.rfft2(batch), args.repeat)
    amp = mf.apply_filters(drawn, filters)["amplitude"]
    ratio = amp.std(axis=0, ddof=1) / filters["sigma"]

    npix = sky["npix"]
    print(f"geometry {npix}x{npix} px of {sky['pixel_arcmin']}', pad {sky['pad_factor']}; {label}")
    print(
        f"build: covariance {cov.shape[0]}^2 {t_cov:.2f} s, {len(scales)} templates "
        f"{t_tmpl:.2f} s, Cholesky + solves {t_build:.2f} s"
    )
    print(f"{args.maps} float32 maps x {len(scales)} scales, best of {args.repeat}:")
    print(f"{'':40s} {'seconds':>8s} {'maps/s':>10s} {'filter/baseline':>16s}")
    print(f"{'apply_filters (all scales)':40s} {t_apply:8.3f} {args.maps / t_apply:10.0f}")
    for name, t in (
        ("baseline: cast to float64 + normalise", t_cast),
        ("baseline: one rfft2 per map (float32)", t_fft),
    ):
        print(f"{name:40s} {t:8.3f} {args.maps / t:10.0f} {t_apply / t:16.2f}")
    print(
        f"per scale ({args.draw} cluster-free maps for std/sigma; expect 1 +- "
        f"{1 / np.sqrt(2 * (args.draw - 1)):.3f}):"
    )
    print(f"{'M200c [1e14]':>12s} {'sigma_A':>8s} {'S/N':>7s} {'y0 [1e-5]':>9s} {'std/sigma':>9s}")
    y_per_uk = 1.0 / (cosmo["TCMB"] * profiles.f_sz(sky["freq_ghz"], cosmo["TCMB"]) * 1e6)
    for i, m in enumerate(scales):
        y0 = templates[i, npix // 2, npix // 2] * y_per_uk
        print(
            f"{m / 1e14:12.3f} {filters['sigma'][i]:8.4f} {1 / filters['sigma'][i]:7.2f} "
            f"{y0 * 1e5:9.3f} {ratio[i]:9.3f}"
        )


if __name__ == "__main__":
    main()
