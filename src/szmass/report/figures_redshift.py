"""Figure 9 (issue 16, beyond the paper): the network against the matched filter by redshift,
from the summary's ``redshift`` block (``report.redshift``): per test set, the mean ln ratio
with the target's band, the fitted width beside the filter's (and its tolerance), and the
filter's median S/N, per z bin pooled over mass; z bins where the filter's S/N is at most the
target's threshold are shaded (not judged)."""

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import redshift as rz
from .figures import plt, save

#: Estimator -> (label, colour, marker, x offset as a fraction of the bin).
STYLE = {
    "network": ("mResUNet (raw)", "C0", "o", -0.08),
    "matched_filter": ("matched filter", "C3", "s", 0.08),
}


def _pooled(bins: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [b for b in bins if b["mass_bin"] == rz.ALL_MASSES]


def _values(rows, estimator: str, key: str) -> np.ndarray:
    return np.array([r.get(estimator, {}).get(key, np.nan) for r in rows], dtype=float)


def _set_column(axes, name: str, bins: Sequence[Mapping[str, Any]]) -> None:
    """One set's three panels: mean ln ratio, fitted width, the filter's S/N."""
    rows = _pooled(bins)
    axes[0].set_title(name)
    axes[2].set_xlabel("z")
    if not rows:
        text = f"no z bin of {rz.MIN_BIN_MAPS} maps or more"
        axes[0].text(0.5, 0.5, text, ha="center", transform=axes[0].transAxes)
        return
    z = np.array([r["z_median"] for r in rows])
    lo, hi = np.array([r["z_lo"] for r in rows]), np.array([r["z_hi"] for r in rows])
    snr = _values(rows, "matched_filter", "median_snr")
    for ax in axes:
        for a, b, s in zip(lo, hi, snr, strict=True):
            if not s > rz.TARGET_MIN_SNR:
                ax.axvspan(a, b, color="0.9", zorder=0)
    band = rz.TARGET_MAX_ABS_MEAN_LN
    axes[0].axhspan(-band, band, color="C2", alpha=0.15, zorder=0)
    axes[0].axhline(0, color="0.4", lw=1)
    for estimator, (label, colour, marker, shift) in STYLE.items():
        x = z + shift * (hi - lo)
        style = {"ls": "-", "marker": marker, "color": colour, "label": label, "capsize": 2}
        mean, err = _values(rows, estimator, "mean"), _values(rows, estimator, "mean_err")
        axes[0].errorbar(x, mean, yerr=err, **style)
        sigma, sig_err = _values(rows, estimator, "sigma"), _values(rows, estimator, "sigma_err")
        axes[1].errorbar(x, sigma, yerr=sig_err, **style)
    limit = (1 + rz.TARGET_WIDTH_TOLERANCE) * _values(rows, "matched_filter", "sigma")
    label = f"filter x {1 + rz.TARGET_WIDTH_TOLERANCE:g}"
    axes[1].hlines(limit, lo, hi, color="C3", ls=":", lw=1, label=label)
    axes[2].plot(z, snr, ls="--", marker="s", color="C3")
    axes[2].axhline(rz.TARGET_MIN_SNR, color="0.4", ls=":", lw=1)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    axes[1].set_ylim(0, None)
    axes[2].set_ylim(0, None)


def figure_redshift(
    *, summary: Mapping[str, Any] | str | Path, out_paths: Sequence[str], dpi: int = 150
) -> None:
    """Figure 9 from ``summary`` (the dict or summary.json): one column per set of its
    ``redshift`` block (the scatter sets first); raises if the summary has no such block
    (a fixed-z run, for which the workflow draws no Figure 9)."""
    if not isinstance(summary, Mapping):
        summary = json.loads(Path(summary).read_text())
    block = summary.get("redshift")
    if not block or not block["sets"]:
        raise ValueError("the summary has no redshift block: its test sets are at one z")
    names = sorted(block["sets"], key=lambda n: (not n.startswith("scatter"), n))
    fig, axes = plt.subplots(
        3, len(names), figsize=(4.5 * len(names), 9), sharex="col", squeeze=False
    )
    for col, name in enumerate(names):
        _set_column(axes[:, col], name, block["sets"][name]["bins"])
    axes[0, 0].set_ylabel(f"mean ln(M_est/M_true)\n(band: ±{rz.TARGET_MAX_ABS_MEAN_LN})")
    axes[1, 0].set_ylabel("fitted sigma of ln(M_est/M_true)")
    axes[2, 0].set_ylabel("matched-filter S/N (median)")
    fig.suptitle(
        f"By redshift, pooled over mass (shaded: filter S/N <= {rz.TARGET_MIN_SNR:g}, not judged)"
    )
    save(fig, out_paths, dpi=dpi)
