"""szmass and nemo side by side (issue 17): masses and wall time on the same survey-like map,
at the same cluster positions, in one run.

    pip install -e '.[cpu,test,nemo]'
    python bench/bench_vs_nemo.py [--threads 2] [--model results/cpu/model]
        [--spectra results/spectra/spectra.ecsv] [--single-scale] [--keep DIR]

Without the workflow's spectra table (a fresh clone), the config's spectra are computed first
(CAMB, seconds).

The map is the project's survey-like test map (``szmass.survey.testmap``, the config's
``survey_map`` section: clusters of known M200c and M500c at z = 0.7, A10 profiles with 20%
log-normal scatter in Y, CMB + foregrounds + white noise). On it:

- nemo (``nemo-sz``, the ACT cluster pipeline): its A10 multi-scale matched filter
  (``ArnaudModelMatchedFilter``, noise from the map itself, the ACT DR5 bank of 16 scales with
  the reference filter M500 = 2e14 at z = 0.4; ``--single-scale`` keeps only the reference),
  forced photometry at the truth positions (``nemo -f``), then ``nemoMass`` (forced
  photometry of the reference filter's map, masses from the catalogue's redshifts with nemo's
  A10 scaling relation: ``M500cUncorr`` without and ``M500c`` with the mass-function
  correction);
- ``szmass predict`` (``predict_catalogue``) at the same positions: the network and the
  project's matched filter.

Prints, per estimator, the median and spread of ln(M500c_est / M500c_true), the fraction of
truths inside the estimator's 68% interval where it gives one, the wall time of each stage
and the ratio of szmass's time to nemo's. Everything nemo needs (the beam profile in nemo's
format, the inverse-variance map, the YAML config) is written from the map's own header into
a temporary directory (``--keep DIR`` writes there instead and keeps it). Each tool runs as
its own process, so its start-up (imports, TensorFlow, the model) counts in its time.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parents[1]

#: nemo's shipped A10 scaling relation (Hasselfield et al. 2013, arXiv:1301.0816; the
#: defaults of nemo 0.9.0's startUp.parseConfigFile): y0 = A0 E(z)^2 (M500c / Mpivot)^(1+B0)
#: Q(theta500), with log-normal intrinsic scatter sigma_int in y0.
NEMO_SCALING = {"tenToA0": 4.95e-5, "B0": 0.08, "Mpivot": 3.0e14, "sigma_int": 0.2}
#: The ACT DR5 filter bank (nemo's examples/ACT-DR5-clusters): A10 templates of these M500c
#: [1e14 Msun] at these z, the reference (photometry) filter M500c = 2e14 at z = 0.4.
NEMO_MASSES_1E14, NEMO_REDSHIFTS = (1, 2, 4, 8), (0.2, 0.4, 0.8, 1.2)
NEMO_REFERENCE = "Arnaud_M2e14_z0p4"
#: Bootstrap resamples of the clusters for the standard error of a median.
N_BOOT = 2000
#: The speed target of issue 17: szmass's time at most this fraction of nemo's.
SPEED_TARGET = 0.2


def filter_label(m500_1e14: float, z: float) -> str:
    return f"Arnaud_M{m500_1e14:g}e14_z{z:g}".replace(".", "p")


def write_beam_profile(path: Path, fwhm_arcmin: float) -> None:
    """A Gaussian beam of the map's FWHM in nemo's (ACT's) profile format: radius [deg] and
    response (1 at the centre), with the solid angle [nsr] in a header line."""
    sigma_deg = fwhm_arcmin / 60.0 / np.sqrt(8.0 * np.log(2.0))
    r_deg = np.linspace(0.0, 20.0 * sigma_deg, 4001)
    solid_angle_nsr = 2.0 * np.pi * np.radians(sigma_deg) ** 2 * 1e9
    header = (
        f"Gaussian beam, FWHM {fwhm_arcmin:g} arcmin (written by szmass bench_vs_nemo)\n"
        f"solid angle = {solid_angle_nsr:.4f} +/- 0.0 nsr\nradius [deg]  response"
    )
    np.savetxt(
        path,
        np.column_stack([r_deg, np.exp(-0.5 * (r_deg / sigma_deg) ** 2)]),
        header=header,
        fmt="%.8e",
    )


def nemo_config(*, work: Path, freq_ghz: float, cosmo: dict, single_scale: bool) -> dict:
    """nemo's YAML config (as a dict) for the map, ivar and beam files in ``work``."""
    h = cosmo["H0"] / 100.0
    omega_m = (cosmo["ombh2"] + cosmo["omch2"] + cosmo.get("omnuh2", 0.0)) / h**2
    scales = [(m, z) for z in NEMO_REDSHIFTS for m in NEMO_MASSES_1E14]
    filters = []
    for m, z in scales:
        label = filter_label(m, z)
        if single_scale and label != NEMO_REFERENCE:
            continue
        params = {"M500MSun": float(m * 1e14), "z": float(z)}
        if label == NEMO_REFERENCE:
            # Only here: the stitched filtered map nemoMass reads is written by every filter
            # that saves it, so with more than one the last filter's map would be read
            params["saveFilteredMaps"] = True
        filters.append({"label": label, "params": params})
    return {
        "unfilteredMaps": [
            {
                "mapFileName": str(work / "map.fits"),
                "weightsFileName": str(work / "ivar.fits"),
                "obsFreqGHz": float(freq_ghz),
                "units": "uK",
                "beamFileName": str(work / "beam_profile.txt"),
            }
        ],
        "outputDir": str(work / "nemo"),
        "thresholdSigma": 4.0,
        "minObjPix": 1,
        "findCenterOfMass": True,
        "useInterpolator": True,
        "rejectBorder": 0,
        "objIdent": "SZM-N",
        "longNames": False,
        "photFilter": NEMO_REFERENCE,
        "fitQ": True,
        "massOptions": {
            "H0": float(cosmo["H0"]),
            "Om0": float(omega_m),
            "Ob0": float(cosmo["ombh2"] / h**2),
            "sigma8": float(cosmo["sigma8"]),
            "ns": float(cosmo["ns"]),
            # The test map's SZ is non-relativistic (szmass.sky.cluster.sz_template_uk)
            "scalingRelations": [{**NEMO_SCALING, "relativisticCorrection": False}],
        },
        # nemo 0.9.0 requires this section even with the selection function off
        "calcSelFn": False,
        "selFnOptions": {"fixedSNRCut": 5.0, "method": "fast"},
        "allFilters": {
            "class": "ArnaudModelMatchedFilter",
            "params": {
                "noiseParams": {"method": "dataMap", "noiseGridArcmin": 40.0},
                "saveFilteredMaps": False,
                "saveRMSMap": False,
                "savePlots": False,
                "saveDS9Regions": False,
                "outputUnits": "yc",
                "edgeTrimArcmin": 0.0,
            },
        },
        "mapFilters": filters,
    }


def make_inputs(work: Path, *, spectra: Path, config: dict) -> dict:
    """The survey-like map, its truth catalogue and ivar map, and nemo's beam profile and
    catalogue (name, RADeg, decDeg, redshift, redshiftErr), all in ``work``."""
    from astropy.table import Table

    from szmass.sky.spectra import read_spectra
    from szmass.survey.skymap import read_sky_map
    from szmass.survey.testmap import make_survey_map

    t0 = time.perf_counter()
    made = make_survey_map(
        spectra_path=spectra,
        sky=config["sky"],
        cosmo=None,
        cluster=config["cluster"],
        out_map=work / "map.fits",
        out_catalogue=work / "truth.csv",
        out_ivar=work / "ivar.fits",
        seed=config["seed"],
        **config["survey_map"],
    )
    sky_map = read_sky_map(work / "map.fits")
    if sky_map.beam_fwhm_arcmin is None:
        raise SystemExit(f"{work / 'map.fits'}: no beam FWHM in the header")
    write_beam_profile(work / "beam_profile.txt", sky_map.beam_fwhm_arcmin)
    truth = Table.read(work / "truth.csv", format="ascii.csv")
    nemo_cat = Table(
        {
            "name": truth["name"],
            "RADeg": truth["ra"],
            "decDeg": truth["dec"],
            "redshift": truth["z"],
            "redshiftErr": np.zeros(len(truth)),
        }
    )
    nemo_cat.write(work / "truth_nemo.fits", overwrite=True)
    return {
        "truth": truth.to_pandas(),
        "freq_ghz": float(sky_map.header["FREQ"]),
        "cosmo": dict(read_spectra(spectra).meta["cosmology"]),
        "shape": made["shape"],
        "pixel_arcmin": made["pixel_arcmin"],
        "wall_s": time.perf_counter() - t0,
    }


def run_timed(cmd: list[str], *, log: Path, cwd: Path, threads: int) -> float:
    """Run one command, its output to ``log``; its wall time [s]. Exits naming the log on
    failure."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    t0 = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.run(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "".join(log.read_text().splitlines(keepends=True)[-15:])
        raise SystemExit(f"{' '.join(cmd)} failed (exit {proc.returncode}); {log} ends:\n{tail}")
    return wall


def nemo_tool(name: str) -> str:
    """The path of a nemo command, beside this Python's or on PATH."""
    beside = Path(sys.executable).parent / name
    found = str(beside) if beside.is_file() else shutil.which(name)
    if found is None:
        raise SystemExit(
            f"nemo's {name} command is not installed: pip install -e '.[nemo]' (nemo-sz)"
        )
    return found


def nemo_log_stages(log: Path) -> dict[str, float]:
    """The stages nemo times itself [s], from its log: filters + forced photometry, the Q fit
    (its filter-mismatch function), and the rest after them (tables, tidying up)."""
    text = log.read_text()
    marks = {}
    for key, pattern in (
        ("filtered", r"after map filtering and making catalogs: time since start = ([\d.]+)"),
        ("q", r"after Q fits completed: time since start = ([\d.]+)"),
        ("finished", r"Finished \[time taken = ([\d.]+)"),
    ):
        found = re.search(pattern, text)
        if found is None:
            return {}
        marks[key] = float(found.group(1))
    return {
        "filters + photometry": marks["filtered"],
        "Q fit": marks["q"] - marks["filtered"],
        "after": marks["finished"] - marks["q"],
    }


def run_nemo(work: Path, inputs: dict, *, single_scale: bool, threads: int) -> dict:
    """nemo's filters + forced photometry (``nemo -f``), then ``nemoMass -F`` (photometry of
    the reference filter's stitched map, and masses): the masses, nemo's own forced catalogue,
    the wall time of each command and nemo's own stage times."""
    import yaml
    from astropy.table import Table

    config = nemo_config(
        work=work, freq_ghz=inputs["freq_ghz"], cosmo=inputs["cosmo"], single_scale=single_scale
    )
    cfg, cat, out = work / "nemo.yml", work / "truth_nemo.fits", work / "nemo_mass.fits"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    walls = {}
    walls["nemo (filters, photometry, Q)"] = run_timed(
        [nemo_tool("nemo"), str(cfg), "-f", str(cat)],
        log=work / "nemo.log",
        cwd=work,
        threads=threads,
    )
    walls["nemoMass (photometry, masses)"] = run_timed(
        [nemo_tool("nemoMass"), str(cfg), "-c", str(cat), "-F", "-o", str(out)],
        log=work / "nemoMass.log",
        cwd=work,
        threads=threads,
    )
    forced = (
        Path(config["outputDir"])
        / f"{cat.stem}_{Path(config['outputDir']).name}_forcedCatalog.fits"
    )
    return {
        "masses": Table.read(out).to_pandas(),
        "forced": Table.read(forced).to_pandas() if forced.is_file() else None,
        "walls": walls,
        "stages": nemo_log_stages(work / "nemo.log"),
    }


def szmass_worker(args) -> None:
    """In its own process: ``predict_catalogue`` on the map, its stage times as JSON."""
    from szmass.survey.predict import predict_catalogue

    work = Path(args.worker)
    result = predict_catalogue(
        map_path=work / "map.fits",
        catalogue_path=work / "truth.csv",
        out_path=work / "szmass.csv",
        model_dir=args.model,
        weights_path=work / "ivar.fits",
        threads=args.threads,
    )
    print(json.dumps(result.attrs["timings"]))


def run_szmass(work: Path, *, model: str, threads: int) -> dict:
    """``szmass predict`` in its own process: its output, wall time and own stage times."""
    import pandas as pd

    cmd = [sys.executable, __file__, "--worker", str(work), "--model", model]
    wall = run_timed(
        cmd + ["--threads", str(threads)], log=work / "szmass.log", cwd=ROOT, threads=threads
    )
    stages = json.loads((work / "szmass.log").read_text().strip().splitlines()[-1])
    return {"masses": pd.read_csv(work / "szmass.csv"), "wall": wall, "stages": stages}


def by_name(table, names):
    """``table`` (a nemo output) indexed like ``names`` through its ``name`` column."""
    import pandas as pd

    keys = [(v.decode() if isinstance(v, bytes) else str(v)).strip() for v in table["name"]]
    return table.set_index(pd.Index(keys)).reindex(names)


def estimates(truth, nemo, szmass, *, model: str) -> dict:
    """Per estimator: M500c estimates [Msun] in truth order and, where given, their 68%
    interval (lo, hi) [Msun]; NaN where an estimator gives nothing."""
    from szmass.sky.profiles import m200c_to_m500c
    from szmass.survey.card import read_model_dir

    model_files = read_model_dir(model)
    cosmo = model_files["card"]["cosmology"]
    z = szmass["z"].to_numpy()

    def to500(m200):  # as predict converts its network's M200c (diemer15 at the row's z);
        m200 = np.asarray(m200, dtype=float)  # open bounds (0, inf) stay open
        out = np.where(np.isfinite(m200) & (m200 > 0), np.nan, m200)
        good = np.isfinite(m200) & (m200 > 0)
        for zi in np.unique(z[good]):
            sel = good & (z == zi)
            out[sel] = m200c_to_m500c(m200[sel], z=float(zi), cosmo=cosmo)
        return out

    def with_interval(prefix):  # szmass.intervals' 68% interval; None where it has none
        lo, hi = szmass[f"{prefix}m200c_lo16"], szmass[f"{prefix}m200c_hi84"]
        return (None, None) if lo.isna().all() else (to500(lo), to500(hi))

    out = {
        "szmass network": (szmass["m500c"].to_numpy(), *with_interval("")),
        "szmass filter": (to500(szmass["mf_m200c"]), *with_interval("mf_")),
    }
    nemo = by_name(nemo, truth["name"])
    for col in ("M500cUncorr", "M500c"):  # nemoMass: units of 1e14 Msun, 0 where no mass
        m = nemo[col].to_numpy(dtype=float) * 1e14
        lo = m - nemo[f"{col}_errMinus"].to_numpy(dtype=float) * 1e14
        hi = m + nemo[f"{col}_errPlus"].to_numpy(dtype=float) * 1e14
        out[f"nemo {col}"] = (np.where(m > 0, m, np.nan), lo, hi)
    return out


def median_se(x: np.ndarray, rng: np.random.Generator) -> float:
    """Bootstrap standard error of the median of x (resampling the clusters)."""
    idx = rng.integers(0, len(x), size=(N_BOOT, len(x)))
    return float(np.std(np.median(x[idx], axis=1)))


def summarize(m_true: np.ndarray, est: dict) -> list[dict]:
    """One row per estimator: n, median, 16-84% half-width and std of ln(M_est / M_true),
    the median's bootstrap error, and the fraction of truths in the 68% interval."""
    rng = np.random.default_rng(0)
    rows = []
    for name, (m, lo, hi) in est.items():
        ok = np.isfinite(m) & (m > 0)
        ln = np.log(m[ok] / m_true[ok])
        p16, p50, p84 = np.percentile(ln, [16, 50, 84])
        inside = np.nan
        if lo is not None:
            inside = float(np.mean((lo[ok] <= m_true[ok]) & (m_true[ok] <= hi[ok])))
        rows.append(
            {
                "estimator": name,
                "n": int(ok.sum()),
                "median": p50,
                "median_se": median_se(ln, rng),
                "half_width": (p84 - p16) / 2,
                "std": float(np.std(ln, ddof=1)),
                "in_68": inside,
            }
        )
    return rows


def paired_difference(m_true, a: np.ndarray, b: np.ndarray) -> tuple[float, float, int]:
    """median ln(a / M_true) - median ln(b / M_true) on the clusters both measure, and its
    paired bootstrap error; (difference, error, n)."""
    ok = np.isfinite(a) & np.isfinite(b) & (a > 0) & (b > 0)
    la, lb = np.log(a[ok] / m_true[ok]), np.log(b[ok] / m_true[ok])
    idx = np.random.default_rng(1).integers(0, ok.sum(), size=(N_BOOT, ok.sum()))
    boot = np.median(la[idx], axis=1) - np.median(lb[idx], axis=1)
    return float(np.median(la) - np.median(lb)), float(np.std(boot)), int(ok.sum())


def print_masses(rows: list[dict], diff: tuple) -> None:
    print(
        f"\nln(M500c_est / M500c_true)   {'n':>3} {'median':>7} {'+-':>6} {'16-84/2':>8} "
        f"{'std':>6} {'in 68%':>7}"
    )
    for r in rows:
        inside = "-" if np.isnan(r["in_68"]) else f"{r['in_68']:.2f}"
        print(
            f"{r['estimator']:<28} {r['n']:3d} {r['median']:+7.3f} {r['median_se']:6.3f} "
            f"{r['half_width']:8.3f} {r['std']:6.3f} {inside:>7}"
        )
    rows = {r["estimator"]: r for r in rows}
    combined = float(
        np.hypot(rows["szmass filter"]["median_se"], rows["nemo M500cUncorr"]["median_se"])
    )
    d, d_err, n = diff
    print(
        f"szmass filter - nemo M500cUncorr (median ln ratio, {n} clusters): {d:+.3f}; combined "
        f"error {combined:.3f} ({'within' if abs(d) <= combined else 'outside'}), paired "
        f"bootstrap error {d_err:.3f}"
    )


def print_photometry_check(nemo: dict, names) -> None:
    """nemo's two photometry paths on the reference filter: in memory (``nemo -f``) and from
    the stitched map (``nemoMass -F``); they differ when the wrong filter's map is saved."""
    if nemo["forced"] is None:
        print("nemo's forced catalogue not found: photometry paths not compared")
        return
    a = by_name(nemo["masses"], names)["fixed_y_c"].to_numpy(dtype=float)
    b = by_name(nemo["forced"], names)["fixed_y_c"].to_numpy(dtype=float)
    ratio = a / b
    ratio = ratio[np.isfinite(ratio)]
    print(
        f"nemo fixed_y_c, nemoMass -F / nemo -f: median {np.median(ratio):.4f}, range "
        f"{ratio.min():.4f}-{ratio.max():.4f} ({len(ratio)} clusters)"
    )


def print_times(nemo: dict, szmass: dict, inputs: dict) -> None:
    print("\nwall time [s], each command in its own process (start-up included)")
    print(f"  {'survey-like map made':<32} {inputs['wall_s']:7.1f}")
    nemo_total = sum(nemo["walls"].values())
    for name, t in nemo["walls"].items():
        print(f"  {name:<32} {t:7.1f}")
    if nemo["stages"]:
        print("    nemo's own: " + ", ".join(f"{k} {v:.1f}" for k, v in nemo["stages"].items()))
    print(f"  {'nemo total':<32} {nemo_total:7.1f}")
    print(f"  {'szmass predict':<32} {szmass['wall']:7.1f}")
    print("    predict's own: " + ", ".join(f"{k} {v:.1f}" for k, v in szmass["stages"].items()))
    ratio = szmass["wall"] / nemo_total
    print(
        f"  szmass / nemo: {ratio:.3f} ({1 / ratio:.0f}x faster; target <= {SPEED_TARGET:g}: "
        f"{'met' if ratio <= SPEED_TARGET else 'missed'})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="threads for both tools")
    parser.add_argument("--model", default=str(ROOT / "results" / "cpu" / "model"))
    parser.add_argument("--spectra", default=str(ROOT / "results" / "spectra" / "spectra.ecsv"))
    parser.add_argument("--config", default=str(ROOT / "config" / "config.yaml"))
    parser.add_argument(
        "--single-scale",
        action="store_true",
        help="nemo with its reference filter only (the only one its masses use)",
    )
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        szmass_worker(args)
        return
    import yaml

    if not Path(args.config).is_file():
        raise SystemExit(f"config {args.config} does not exist")
    nemo_tool("nemo")
    config = yaml.safe_load(Path(args.config).read_text())
    print(
        f"{datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z}, {platform.node()}: "
        f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the start; "
        f"--threads {args.threads}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        spectra = Path(args.spectra)
        if not spectra.is_file():  # a fresh clone: the workflow's compute_spectra, here
            from szmass.sky.spectra import compute_spectra, write_spectra

            print(f"{spectra} does not exist: computing the config's spectra (CAMB, ~15 s)")
            t0 = time.perf_counter()
            spectra = work / "spectra.ecsv"
            write_spectra(
                compute_spectra(
                    cosmology=config["cosmology"],
                    lmax_camb=config["spectra"]["lmax_camb"],
                    lmax=config["spectra"]["lmax"],
                    foregrounds=config["spectra"]["foregrounds"],
                ),
                spectra,
            )
            print(f"  spectra computed in {time.perf_counter() - t0:.0f} s")
        inputs = make_inputs(work, spectra=spectra, config=config)
        truth = inputs["truth"]
        print(
            f"survey-like map: {inputs['shape'][1]} x {inputs['shape'][0]} px of "
            f"{inputs['pixel_arcmin']:g}', {len(truth)} clusters at z = {truth['z'].iloc[0]:g}, "
            f"M500c {truth['m500c'].min() / 1e14:.2f}-{truth['m500c'].max() / 1e14:.2f}e14 "
            f"Msun; nemo {'reference filter only' if args.single_scale else '16 filter scales'}"
        )
        nemo = run_nemo(work, inputs, single_scale=args.single_scale, threads=args.threads)
        szmass = run_szmass(work, model=args.model, threads=args.threads)
    est = estimates(truth, nemo["masses"], szmass["masses"], model=args.model)
    m_true = truth["m500c"].to_numpy()
    diff = paired_difference(m_true, est["szmass filter"][0], est["nemo M500cUncorr"][0])
    print_masses(summarize(m_true, est), diff)
    print_photometry_check(nemo, truth["name"])
    print_times(nemo, szmass, inputs)


if __name__ == "__main__":
    main()
