"""szmass.report.figures: the map figures draw each pixel around its own centre (pixel
npix // 2, the cluster, at offset 0, as the shards' coordinates put it)."""

import numpy as np
import pytest

from szmass.io import open_shard
from szmass.report import figures
from szmass.sky.simulate import shard_dataset

from ..conftest import split


@pytest.fixture
def drawn(monkeypatch):
    """The figures each call draws, instead of saved."""
    figs = []
    monkeypatch.setattr(figures, "save", lambda fig, out_paths, dpi=150: figs.append(fig))
    return figs


def _extents(fig):
    return [im.get_extent() for ax in fig.axes for im in ax.get_images()]


def _pixel_centre(extent, index, npix):
    """Where ``imshow`` draws the centre of pixel ``index`` along x."""
    left, right = extent[0], extent[1]
    return left + (index + 0.5) * (right - left) / npix


def test_offsets_follow_the_shards():
    sims = {k: np.zeros((1, 40, 40)) for k in ("sky", "sz")}
    sims.update({k: np.ones(1) for k in ("m200c", "m500c", "z", "ln_scatter")})
    ds = shard_dataset(sims, realizations=np.arange(1), pixel_arcmin=0.25, attrs={})
    np.testing.assert_array_equal(figures.centred_offsets(40, 0.25), ds.x.values)
    assert figures.pixel_edge_extent(ds.x.values, ds.y.values) == (-5.125, 4.875, -5.125, 4.875)


def test_example_figure_puts_the_cluster_at_zero(shards16, tmp_path, drawn):
    split(shards16, tmp_path)
    figures.figure_example(
        shard_path=shards16[0],
        normalization_path=str(tmp_path / "normalization.json"),
        realization=0,
        out_paths=[str(tmp_path / "fig2.png")],
    )
    x = open_shard(shards16[0]).x.values
    (fig,) = drawn
    extents = _extents(fig)
    assert len(extents) == 3
    for extent in extents:
        assert tuple(extent) == figures.pixel_edge_extent(x, x)
        assert _pixel_centre(extent, 8, 16) == pytest.approx(0.0, abs=1e-12)


def test_sz_maps_figure_puts_the_cluster_at_zero(tmp_path, drawn):
    maps = tmp_path / "mean_maps.npz"
    rng = np.random.default_rng(0)
    np.savez(
        maps,
        m200c=np.array([2e14]),
        sz_true=rng.normal(size=(1, 40, 40)),
        sz_pred=rng.normal(size=(1, 40, 40)),
    )
    figures.figure_sz_maps(
        maps_paths=[str(maps)], masses_1e14=[2], pixel_arcmin=0.25, out_paths=["unused.png"]
    )
    (fig,) = drawn
    extents = _extents(fig)
    assert len(extents) == 3
    for extent in extents:
        assert _pixel_centre(extent, 20, 40) == pytest.approx(0.0, abs=1e-12)
        assert extent[1] - extent[0] == pytest.approx(10.0)
