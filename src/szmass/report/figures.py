"""The paper's figures (SPEC §4, Figures 2-6; Gupta & Reichardt 2020, arXiv:2003.06135) and the
baseline comparison, from the workflow's own outputs. Every function writes each of
``out_paths`` (the format follows the extension) beside and renames it into place.
"""

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..io import open_shard  # noqa: E402
from ..network.dataset import prepare, read_normalization  # noqa: E402
from . import stats  # noqa: E402
from .summary import rescaled_estimates  # noqa: E402

SET_STYLE = {
    "trained": {"marker": "o", "color": "C0", "label": "trained masses"},
    "interpolated": {"marker": "s", "color": "C1", "label": "interpolated masses"},
    "extrapolated": {"marker": "^", "color": "C3", "label": "extrapolated masses"},
}
_E14 = 1e14


def save(fig, out_paths: Sequence[str], *, dpi: int = 150) -> None:
    """Save ``fig`` to every path (format from the extension), atomically, and close it."""
    for path in map(Path, out_paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
        os.replace(tmp, path)
    plt.close(fig)


def centred_offsets(npix: int, pixel_arcmin: float) -> np.ndarray:
    """Pixel-centre offsets [arcmin] with pixel ``npix // 2`` at 0: the shards' x and y."""
    return (np.arange(npix) - npix // 2) * pixel_arcmin


def pixel_edge_extent(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float]:
    """``imshow`` extent (left, right, bottom, top) from pixel-centre coordinates: the outer
    pixel edges, so that each pixel is drawn around its own centre."""
    dx, dy = x[1] - x[0], y[1] - y[0]
    return (x[0] - dx / 2, x[-1] + dx / 2, y[0] - dy / 2, y[-1] + dy / 2)


def _image(ax, data, extent, *, title, label, cmap="RdBu_r", vlim=None):
    vlim = float(np.max(np.abs(data))) if vlim is None else vlim
    im = ax.imshow(data, origin="lower", extent=extent, cmap=cmap, vmin=-vlim, vmax=vlim)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("offset [arcmin]")
    plt.colorbar(im, ax=ax, shrink=0.8, label=label)
    return im


def figure_example(
    *,
    shard_path: str,
    normalization_path: str,
    realization: int,
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """Figure 2: one simulated cutout and the two labels the network learns."""
    norm = read_normalization(normalization_path)
    ds = open_shard(shard_path)
    p = prepare(ds, norm, realizations=slice(realization, realization + 1), where=shard_path)
    extent = pixel_edge_extent(ds.x.values, ds.y.values)
    m = float(p["m200c"][0]) / _E14
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.6), layout="constrained")
    _image(
        axes[0],
        p["inputs"][0, ..., 0] * norm["sky_scale"],
        extent,
        title="input: sky map (CMB, foregrounds, cluster, noise)",
        label="T [uK]",
    )
    _image(
        axes[1],
        p["labels"][0, ..., 0] * norm["sz_scale"],
        extent,
        title="label 1: the cluster's SZ map (beam)",
        label="T [uK]",
    )
    ax = axes[2]
    im = ax.imshow(
        p["labels"][0, ..., 1] * norm["m_norm_msun"] / _E14,
        origin="lower",
        extent=extent,
        cmap="viridis",
    )
    ax.set_title("label 2: mass map (projected NFW)", fontsize=9)
    ax.set_xlabel("offset [arcmin]")
    plt.colorbar(im, ax=ax, shrink=0.8, label="M200c at the centre [1e14 Msun]")
    axes[0].set_ylabel("offset [arcmin]")
    fig.suptitle(f"An example cutout: M200c = {m:g}e14 Msun, realization {realization}")
    save(fig, out_paths, dpi=dpi)


def figure_sz_maps(
    *,
    maps_paths: Sequence[str],
    masses_1e14: Sequence[float],
    pixel_arcmin: float,
    out_paths: Sequence[str],
    dpi: int = 150,
) -> dict[str, float]:
    """Figure 3: mean true, mean predicted and residual SZ maps for a few masses.

    Returns, per mass, max |mean residual| / max |mean true map| (the paper: < 1/100).
    """
    by_mass: dict[float, tuple[np.ndarray, np.ndarray]] = {}
    for path in maps_paths:
        with np.load(path) as f:
            for i, m in enumerate(f["m200c"]):
                by_mass[round(float(m) / _E14, 6)] = (f["sz_true"][i], f["sz_pred"][i])
    missing = [m for m in masses_1e14 if round(float(m), 6) not in by_mass]
    if missing:
        raise ValueError(
            f"figure 3: no mean maps for masses {missing} (have {sorted(by_mass)}); "
            "pick evaluation.sz_masses from grid.masses"
        )
    ratios = {}
    fig, axes = plt.subplots(
        len(masses_1e14),
        3,
        figsize=(11, 3.3 * len(masses_1e14)),
        squeeze=False,
        layout="constrained",
    )
    for row, m in zip(axes, masses_1e14, strict=True):
        true, pred = by_mass[round(float(m), 6)]
        offsets = centred_offsets(true.shape[0], pixel_arcmin)
        extent = pixel_edge_extent(offsets, offsets)
        vlim = float(np.max(np.abs(true)))
        resid = pred - true
        ratios[f"{m:g}"] = float(np.max(np.abs(resid)) / vlim)
        _image(row[0], true, extent, title=f"true, M = {m:g}e14", label="T [uK]", vlim=vlim)
        _image(row[1], pred, extent, title=f"predicted, M = {m:g}e14", label="T [uK]", vlim=vlim)
        _image(
            row[2],
            resid,
            extent,
            title=f"residual (max {ratios[f'{m:g}']:.1e} of the signal)",
            label="T [uK]",
        )
        row[0].set_ylabel("offset [arcmin]")
    fig.suptitle("Mean SZ maps over the test realizations: truth, network, residual")
    save(fig, out_paths, dpi=dpi)
    return ratios


def figure_mass_recovery(
    *,
    per_mass: pd.DataFrame,
    train_masses_1e14: Sequence[float],
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """Figure 4: median estimate (16-84 % bars) against the true mass, dM/M, and the pull.

    ``per_mass`` holds the ``stats.per_mass_summary`` columns and a ``set`` column.
    """
    fig, axes = plt.subplots(
        3, 1, figsize=(7, 9), sharex=True, gridspec_kw={"height_ratios": [3, 1.2, 1.2]}
    )
    lo, hi = min(train_masses_1e14), max(train_masses_1e14)
    for ax in axes:
        ax.axvspan(lo, hi, color="0.92", zorder=0)
    top = max(per_mass["m_true"].max(), per_mass["p84"].max()) / _E14 * 1.05
    axes[0].plot([0, top], [0, top], color="0.4", lw=1, ls="--", label="truth")
    if "estimator" in per_mass:
        per_mass = per_mass[per_mass["estimator"] == "network"]
    for name, style in SET_STYLE.items():
        rows = per_mass[per_mass["set"] == name]
        if rows.empty:
            continue
        x = rows["m_true"] / _E14
        axes[0].errorbar(
            x,
            rows["median"] / _E14,
            yerr=[(rows["median"] - rows["p16"]) / _E14, (rows["p84"] - rows["median"]) / _E14],
            ls="none",
            capsize=2,
            **{k: style[k] for k in ("marker", "color")},
            label=style["label"],
        )
        axes[1].plot(x, rows["dm_over_m"], ls="none", marker=style["marker"], color=style["color"])
        axes[2].plot(x, rows["pull"], ls="none", marker=style["marker"], color=style["color"])
    axes[0].set_ylabel("estimated M200c [1e14 Msun]\n(median, 16-84 %)")
    axes[0].legend(loc="upper left", fontsize=8, title="shaded: trained range", title_fontsize=8)
    axes[1].axhline(0.2, color="0.4", ls=":", lw=1)
    axes[1].set_ylabel("dM/M\n(half 16-84 % / M)")
    axes[2].axhspan(-1, 1, color="C2", alpha=0.15)
    axes[2].axhline(0, color="0.4", lw=1)
    axes[2].set_ylabel("pull\n(median - M) / error")
    axes[2].set_xlabel("true M200c [1e14 Msun]")
    axes[0].set_xlim(0, top)
    fig.suptitle("Mass recovery on the test realizations")
    save(fig, out_paths, dpi=dpi)


def figure_scatter(
    *,
    ln_ratios: Mapping[str, np.ndarray],
    fits: Mapping[str, Mapping[str, float]],
    floors: Mapping[str, float],
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """Figure 5: histograms of ln(M_est/M_true) for the scatter sets, and their Gaussian fits.

    ``ln_ratios`` / ``fits`` / ``floors`` are keyed by a legend label (e.g. "sigma_int = 0.2").
    """
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if not ln_ratios:
        ax.text(
            0.5,
            0.5,
            "no set has enough positive estimates to fit (see summary.json)",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        save(fig, out_paths, dpi=dpi)
        return
    all_values = np.concatenate([v[np.isfinite(v)] for v in ln_ratios.values()])
    bins = np.linspace(np.percentile(all_values, 0.5), np.percentile(all_values, 99.5), 41)
    for i, (label, values) in enumerate(ln_ratios.items()):
        fit = fits[label]
        colour = f"C{i}"
        centres, counts, curve = stats.histogram_gaussian(
            values, bins=bins, mean=fit["mean"], sigma=fit["sigma"]
        )
        ax.stairs(counts, bins, color=colour, lw=1.5)
        ax.plot(
            centres,
            curve,
            color=colour,
            ls="--",
            label=(
                f"{label}: mean {fit['mean']:+.3f} ± {fit['mean_err']:.3f}, "
                f"width {fit['sigma']:.3f} ± {fit['sigma_err']:.3f}"
            ),
        )
        floor = floors.get(label)
        if floor:
            ax.axvspan(-floor, floor, color=colour, alpha=0.08)
    ax.set_xlabel("ln(M_est / M_true)")
    ax.set_ylabel("clusters per bin")
    ax.legend(fontsize=8, title="Gaussian fits (shaded: ±floor)", title_fontsize=8)
    ax.set_title("Scatter test: masses uniform in the trained range")
    save(fig, out_paths, dpi=dpi)


def figure_scatter_from_outputs(
    *, predictions: Sequence[str], summary_path: str, out_paths: Sequence[str], dpi: int = 150
) -> None:
    """Figure 5 from the workflow's outputs: ``results/eval/scatter<s>/predictions.csv`` and
    the fits and floor in ``summary.json``."""
    summary = json.loads(Path(summary_path).read_text())
    fits, floor = summary["scatter"]["fits"], summary["scatter"]["floor_sigma_int"]
    ln_ratios, labelled_fits, floors = {}, {}, {}
    for path in predictions:
        name = Path(path).parent.name
        table = pd.read_csv(path)
        label = f"sigma_int = {float(name.removeprefix('scatter')):g}"
        if "error" in fits[name]:  # too few positive estimates to fit (said in the summary)
            continue
        est = table["m200c_est"].to_numpy()
        ln_ratios[label] = np.log(est[est > 0] / table["m200c_true"].to_numpy()[est > 0])
        labelled_fits[label] = fits[name]
        if float(name.removeprefix("scatter")) > 0 and floor:
            floors[label] = floor
    figure_scatter(
        ln_ratios=ln_ratios, fits=labelled_fits, floors=floors, out_paths=out_paths, dpi=dpi
    )


def figure_scaled_masses(
    *,
    m_true: np.ndarray,
    m_scaled: np.ndarray,
    fit: Mapping[str, Any],
    title: str,
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """Figure 6: realistic-profile set, rescaled estimates against the truth and the ln-ratio
    histogram with its Gaussian fit."""
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.5))
    ax0.plot(m_true / _E14, m_scaled / _E14, ".", ms=2, alpha=0.3, color="C0")
    top = np.nanmax([m_true.max(), np.nanpercentile(m_scaled, 99.5)]) / _E14 * 1.05
    ax0.plot([0, top], [0, top], color="0.4", ls="--", lw=1, label="truth")
    ax0.set_xlabel("true M200c [1e14 Msun]")
    ax0.set_ylabel("rescaled estimate r M_est [1e14 Msun]")
    ax0.legend(fontsize=8)
    values = np.log(m_scaled / m_true)
    values = values[np.isfinite(values)]
    edges = np.linspace(values.min(), values.max(), 41)
    centres, counts, curve = stats.histogram_gaussian(
        values, bins=edges, mean=fit["mean"], sigma=fit["sigma"]
    )
    ax1.stairs(counts, edges, color="C0")
    ax1.plot(
        centres,
        curve,
        "--",
        color="C0",
        label=f"mean {fit['mean']:+.3f} ± {fit['mean_err']:.3f}\n"
        f"width {fit['sigma']:.3f} ± {fit['sigma_err']:.3f}",
    )
    ax1.axvline(0, color="0.4", lw=1)
    ax1.set_xlabel("ln(r M_est / M_true)")
    ax1.set_ylabel("maps per bin")
    ax1.legend(fontsize=8)
    fig.suptitle(title)
    save(fig, out_paths, dpi=dpi)


def figure_realistic_from_outputs(
    *,
    predictions_path: str,
    shard_path: str,
    summary_path: str,
    source: str,
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """Figure 6 from the workflow's outputs (the r of each cluster comes from the shard)."""
    summary = json.loads(Path(summary_path).read_text())["realistic"]
    ds = open_shard(shard_path, variables=("cluster_r_measured",))
    table = pd.read_csv(predictions_path)
    est = rescaled_estimates(table, ds)
    keep = est > 0
    what = "real Compton-y cutouts" if source == "fits" else "stand-in clusters (not Magneticum)"
    fit = summary["fit_scaled"]
    if "error" in fit:
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.text(
            0.5,
            0.5,
            f"realistic set: {fit['error']}",
            ha="center",
            va="center",
            transform=ax.transAxes,
        )
        ax.set_axis_off()
        save(fig, out_paths, dpi=dpi)
        return
    figure_scaled_masses(
        m_true=table["m200c_true"].to_numpy()[keep],
        m_scaled=est[keep],
        fit=fit,
        title=f"Realistic profiles, {what}: mean r = {summary['mean_r']:.3f} (paper 1.287); "
        f"{int((~keep).sum())} estimates <= 0 left out",
        out_paths=out_paths,
        dpi=dpi,
    )


def figure_baseline(
    *,
    per_mass: pd.DataFrame,
    train_masses_1e14: Sequence[float],
    out_paths: Sequence[str],
    dpi: int = 150,
) -> None:
    """The network (raw; calibrated and template readout where the run has them) against the
    matched filter per mass: dM/M, the bias of the median, and the filter's median best-scale
    S/N (what the map itself carries)."""
    fig, axes = plt.subplots(3, 1, figsize=(7, 9), sharex=True)
    lo, hi = min(train_masses_1e14), max(train_masses_1e14)
    for ax in axes:
        ax.axvspan(lo, hi, color="0.92", zorder=0)
    labels = {
        "network": ("mResUNet (raw)", "C0", "-"),
        "network_calibrated": ("mResUNet (calibrated on validation maps)", "C2", "-."),
        "network_template": ("mResUNet (template readout)", "C1", ":"),
        "matched_filter": ("matched filter", "C3", "--"),
    }
    for estimator, (label, colour, ls) in labels.items():
        rows = per_mass[per_mass["estimator"] == estimator].sort_values("m_true")
        if rows.empty:
            continue
        x = rows["m_true"] / _E14
        axes[0].plot(x, rows["dm_over_m"], ls=ls, marker="o", color=colour, label=label)
        axes[1].plot(x, rows["bias"], ls=ls, marker="o", color=colour, label=label)
        if estimator == "matched_filter" and "median_snr" in rows:
            axes[2].plot(x, rows["median_snr"], ls=ls, marker="o", color=colour)
    axes[0].axhline(0.2, color="0.4", ls=":", lw=1)
    axes[0].set_ylabel("dM/M (half 16-84 % / M)")
    axes[0].legend(fontsize=8, title="shaded: trained range", title_fontsize=8)
    axes[1].axhline(0, color="0.4", lw=1)
    axes[1].set_ylabel("bias: median / M - 1")
    axes[2].set_yscale("log")
    axes[2].axhline(1, color="0.4", ls=":", lw=1)
    axes[2].set_ylabel("matched-filter S/N\n(median, best scale)")
    axes[2].set_xlabel("true M200c [1e14 Msun]")
    fig.suptitle("Network against matched filter on the same test maps")
    save(fig, out_paths, dpi=dpi)


def figure_coverage(
    *, summary: Mapping[str, Any], out_paths: Sequence[str], dpi: int = 150
) -> None:
    """Figure 8 (issue 14): per estimator, how often the 68% and 95% intervals hold the true
    mass per mass bin of the grid and scatter sets, against the nominal rates and the targets'
    tolerance; below, the PIT histograms of the scatter sets (flat when the intervals are
    right)."""
    from .coverage import COVERAGE_TARGETS, ESTIMATOR_LABELS

    if not isinstance(summary, Mapping):
        summary = json.loads(Path(summary).read_text())
    block = summary.get("coverage", {})
    estimators = [e for e in ESTIMATOR_LABELS if e in block] or list(block)
    n = max(1, len(estimators))
    fig, axes = plt.subplots(2, n, figsize=(5.5 * n, 8), squeeze=False)
    for col, estimator in enumerate(estimators):
        sets = block[estimator]
        ax = axes[0, col]
        for nominal, tol in COVERAGE_TARGETS.values():
            ax.axhspan(nominal - tol, nominal + tol, color="0.9", zorder=0)
            ax.axhline(nominal, color="0.4", lw=1, ls=":")
        others = iter([("D", "C2"), ("v", "C4"), ("P", "C5"), ("X", "C7")])
        for name, c in sets.items():
            marker, colour = ("o", "C0") if name in SET_STYLE else next(others, ("D", "C2"))
            style = SET_STYLE.get(name, {"marker": marker, "color": colour, "label": name})
            x = [b["m200c"] / _E14 for b in c["bins"]]
            for level, fill in ((68, style["color"]), (95, "none")):
                ax.plot(
                    x,
                    [b[f"coverage_{level}"] for b in c["bins"]],
                    ls="none",
                    marker=style["marker"],
                    mec=style["color"],
                    mfc=fill,
                    label=f"{style['label']}, {level}%",
                )
        ax.set_xscale("log")
        ax.set_ylim(0.4, 1.02)
        ax.set_xlabel("true M200c [1e14 Msun]")
        ax.set_ylabel("fraction of true masses inside the interval")
        ax.set_title(f"{ESTIMATOR_LABELS.get(estimator, estimator)}: coverage per mass")
        ax.legend(fontsize=6, ncol=2, loc="lower left")
        ax = axes[1, col]
        for k, (name, c) in enumerate(
            (n_, c_) for n_, c_ in sets.items() if n_.startswith("scatter")
        ):
            hist = np.asarray(c.get("pit_histogram", []), float)
            if hist.sum() > 0:
                density = hist / hist.sum() * hist.size
                ax.stairs(density, np.linspace(0, 1, hist.size + 1), color=f"C{k}", label=name)
        ax.axhline(1.0, color="0.4", lw=1, ls=":")
        ax.set_xlabel("PIT: F(estimate | true mass)")
        ax.set_ylabel("density")
        ax.set_ylim(0, None)
        ax.set_title("PIT, scatter sets (flat = right)")
        ax.legend(fontsize=8)
    fig.suptitle("Per-cluster intervals: coverage (shaded: target tolerance) and PIT")
    fig.subplots_adjust(hspace=0.3)
    save(fig, out_paths, dpi=dpi)
