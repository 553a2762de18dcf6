"""Simulation throughput for the paper config, against the bare cost of the Gaussian field.

Prints maps/s for a grid shard (one profile, 800 maps) and a scatter shard (one profile per
cluster), each beside the cost of only drawing + filtering the padded Gaussian field for the
same number of maps in the same run, and the projected wall time of the paper's whole data
set (19 x 800 grid + 2 x 1000 scatter maps) on this machine.

    python bench/bench_simulate.py [--maps 800] [--clusters 1000] [--cores 2]
"""

import argparse
import time
from pathlib import Path

import numpy as np
import yaml

from szmass.sky import maps
from szmass.sky.simulate import map_rng, scatter_set_masses, simulate_maps
from szmass.sky.spectra import compute_spectra
from szmass.units import ARCMIN

ROOT = Path(__file__).resolve().parents[1]


def bare_field_seconds(
    *, n_maps: int, filt: np.ndarray, n_pad: int, npix: int, seed: int, chunk: int = 100
) -> float:
    """Seconds to draw n_maps padded white-noise fields, filter them and crop: the floor."""
    start = time.perf_counter()
    for first in range(0, n_maps, chunk):
        idx = range(first, min(first + chunk, n_maps))
        white = np.stack(
            [map_rng(seed, "grid", 0, i, "field").standard_normal((n_pad, n_pad)) for i in idx]
        )
        maps.crop_center(maps.gaussian_fields(white, filt), npix)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(ROOT / "config/config.yaml"))
    parser.add_argument("--maps", type=int, default=800, help="maps in the grid shard")
    parser.add_argument("--clusters", type=int, default=1000, help="maps in the scatter shard")
    parser.add_argument("--cores", type=int, default=2, help="parallel shard jobs assumed")
    parser.add_argument("--repeat", type=int, default=2, help="best of this many runs")
    args = parser.parse_args()
    cfg = yaml.safe_load(Path(args.config).read_text())
    sky, cl_cfg = cfg["sky"], cfg["cluster"]
    cluster = {k: cl_cfg[k] for k in ("redshift", "x_max_r500", "subpixel")}

    t0 = time.perf_counter()
    table = compute_spectra(cosmology=cfg["cosmology"], **cfg["spectra"])
    t_spectra = time.perf_counter() - t0
    cosmo = dict(table.meta["cosmology"])
    ell, cl = np.asarray(table["ell"], float), np.asarray(table["cl_total"], float)
    n_pad = sky["npix"] * sky["pad_factor"]
    filt = maps.field_filter(
        ell=ell,
        cl=cl,
        n=n_pad,
        pixel_rad=sky["pixel_arcmin"] * ARCMIN,
        fwhm_arcmin=sky["beam_fwhm_arcmin"],
    )
    common = dict(
        set_name="grid",
        seed=cfg["seed"],
        spectra_ell=ell,
        spectra_cl=cl,
        cosmo=cosmo,
        sky=sky,
        cluster=cluster,
    )

    # warm-up (colossus tables, FFT plans)
    simulate_maps(
        m200c_msun=np.full(4, 4e14),
        keys=np.zeros(4, int),
        realizations=np.arange(4),
        sigma_int=0.2,
        **common,
    )

    rows = []
    for label, n, masses in (
        ("grid shard (1 profile)", args.maps, np.full(args.maps, 4e14)),
        (
            "scatter shard (1 profile/map)",
            args.clusters,
            scatter_set_masses(
                seed=cfg["seed"],
                n_clusters=args.clusters,
                mass_range_1e14=tuple(cfg["scatter"]["mass_range"]),
            ),
        ),
    ):
        # best of `repeat` runs each, interleaved, so neither side gains from warm caches
        bare, full = float("inf"), float("inf")
        for _ in range(args.repeat):
            bare = min(
                bare,
                bare_field_seconds(
                    n_maps=n, filt=filt, n_pad=n_pad, npix=sky["npix"], seed=cfg["seed"]
                ),
            )
            t0 = time.perf_counter()
            simulate_maps(
                m200c_msun=masses,
                keys=np.arange(n),
                realizations=np.zeros(n, int),
                sigma_int=0.2,
                **common,
            )
            full = min(full, time.perf_counter() - t0)
        rows.append((label, n, n / full, n / bare, full / bare))

    print(f"spectra (CAMB lmax {cfg['spectra']['lmax_camb']}): {t_spectra:.1f} s")
    print("ratio = simulation time / time to only draw, filter and crop the padded field")
    print(f"{'':32s} {'maps':>6s} {'maps/s':>8s} {'bare field maps/s':>18s} {'ratio':>6s}")
    for label, n, rate, bare_rate, ratio in rows:
        print(f"{label:32s} {n:6d} {rate:8.0f} {bare_rate:18.0f} {ratio:6.2f}")
    n_grid = len(cfg["grid"]["masses"]) * cfg["grid"]["n_realizations"]
    n_scatter = len(cfg["scatter"]["sigma_int"]) * cfg["scatter"]["n_clusters"]
    serial = n_grid / rows[0][2] + n_scatter / rows[1][2]
    print(
        f"paper data set: {n_grid} grid + {n_scatter} scatter maps: {serial:.0f} s on one core,"
        f" ~{serial / args.cores + t_spectra:.0f} s with {args.cores} parallel jobs + spectra"
    )


if __name__ == "__main__":
    main()
