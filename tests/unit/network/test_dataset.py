"""szmass.network.dataset: the labels, the normalization and the training split (SPEC §3)."""

import json
import re

import numpy as np
import pytest
import xarray as xr
from scipy import integrate

from szmass.io import open_shard, write_zarr_atomic
from szmass.network.dataset import (
    NORMALIZATION_KEYS,
    mass_map,
    nfw_projected_shape,
    normalization_from_training,
    prepare,
    read_normalization,
    write_normalization,
)
from szmass.sky import cosmology, profiles
from szmass.sky.simulate import shard_dataset, simulate_shard
from szmass.units import ARCMIN

from ..conftest import CLUSTER, COSMO, MASSES, TRAIN, VAL, split, write_spectra
from ..conftest import sky as shard_sky

# the sets' string coordinate ("sz", "mass"): zarr 3 warns that it has no v3 spec yet

#: nfw_projected_shape is the closed form (Wright & Brainerd 2000 eq. 11), exact but for the
#: band |x - 1| < 1e-6 where it returns the limit 1/3 (slope ~ -0.2: error < 3e-7); quad
#: reaches ~1e-12 elsewhere.
NFW_PROJECTION_RTOL = 1e-6
#: mass_map averages 8x8 point samples per pixel; the central pixel holds the log cusp of the
#: projected NFW, whose mean the midpoint samples miss by ~0.1% (measured 0.07-0.15% for
#: 1-8e14 Msun). All pixels are divided by it, so every pixel carries that offset.
MASS_MAP_RTOL = 3e-3
Z = 0.7
NPIX, PIXEL_ARCMIN = 16, 0.25
M_NORM = 4.5e14  # SPEC §3: the mean of the paper's training masses 1..8e14


def _nfw_by_quad(x: float) -> float:
    """Sigma(R = x r_s) / (2 rho_s r_s) = int_0^inf dz / (s (1 + s)^2), s = sqrt(x^2 + z^2):
    the line-of-sight integral of rho_NFW = rho_s / (r/r_s (1 + r/r_s)^2)."""

    def rho(z):
        s = np.hypot(x, z)
        return 1.0 / (s * (1.0 + s) ** 2)

    return integrate.quad(rho, 0.0, np.inf, epsabs=0.0, epsrel=1e-12, limit=200)[0]


@pytest.mark.parametrize(
    "x", [1e-3, 0.1, 0.5, 0.999, 1.0 - 5e-7, 1.0, 1.0 + 5e-7, 1.001, 2.0, 30.0]
)
def test_nfw_projected_shape_against_quad(x):
    got = nfw_projected_shape(np.array([x]))[0]
    np.testing.assert_allclose(got, _nfw_by_quad(x), rtol=NFW_PROJECTION_RTOL)


def _mass_map(m200c, npix=NPIX):
    return mass_map(
        m200c_msun=m200c, m_norm_msun=M_NORM, z=Z, cosmo=COSMO, npix=npix, pixel_arcmin=PIXEL_ARCMIN
    )


@pytest.mark.parametrize("m200c", [1e14, 4.5e14, 8e14])
@pytest.mark.parametrize("npix", [16, 40])
def test_mass_map_peak_is_m200c_over_m_norm(m200c, npix):
    label = _mass_map(m200c, npix)
    c = npix // 2
    assert label.shape == (npix, npix)
    assert label[c, c] == pytest.approx(m200c / M_NORM, rel=1e-12)
    # the unique maximum sits on the central pixel
    assert np.argmax(label) == c * npix + c
    assert np.sum(label == label.max()) == 1
    # radially decreasing: a pixel nearer the centre never holds less
    yy, xx = np.indices(label.shape) - c
    r = np.hypot(xx, yy).ravel()
    v = label.ravel()
    nearer = r[:, None] < r[None, :] - 1e-9  # pixel i lies nearer the centre than pixel j
    assert np.all((v[:, None] >= v[None, :]) | ~nearer)
    assert np.all(label > 0)
    # symmetric about the centre where the map has both sides
    np.testing.assert_allclose(
        label[c - 3 : c + 4, c - 3 : c + 4], label[c - 3 : c + 4, c - 3 : c + 4].T
    )
    np.testing.assert_allclose(label[c - 3, c], label[c + 3, c], rtol=1e-12)


def test_mass_map_against_independent_pixel_average():
    """The mass map against a 2-D quadrature of the projected NFW over each pixel, with r_s
    from colossus' NFWProfile (M200c, c200c from diemer15) and D_A: checks the scale radius
    (h factors, arcmin) and the pixel averaging."""
    from colossus.halo import profile_nfw

    m200c = 3e14
    h = cosmology.h(COSMO)
    cosmo = cosmology.colossus(COSMO)
    c200 = float(profiles.concentration_200c(m200c, z=Z, cosmo=COSMO))
    rs_mpc = profile_nfw.NFWProfile(M=m200c * h, c=c200, z=Z, mdef="200c").par["rs"] / 1e3 / h
    theta_s_arcmin = rs_mpc / (cosmo.angularDiameterDistance(Z) / h) / ARCMIN

    def pixel_mean(i, j):
        x0, y0 = (j - NPIX // 2) * PIXEL_ARCMIN, (i - NPIX // 2) * PIXEL_ARCMIN
        # split at the centre: the cusp sits on a corner, never inside a sub-square
        xs = sorted(
            {x0 - PIXEL_ARCMIN / 2, x0 + PIXEL_ARCMIN / 2} | ({0.0} if j == NPIX // 2 else set())
        )
        ys = sorted(
            {y0 - PIXEL_ARCMIN / 2, y0 + PIXEL_ARCMIN / 2} | ({0.0} if i == NPIX // 2 else set())
        )

        def f(y, x):
            return float(nfw_projected_shape(np.array([np.hypot(x, y) / theta_s_arcmin]))[0])

        total = sum(
            integrate.dblquad(f, xa, xb, ya, yb, epsabs=0.0, epsrel=1e-7)[0]
            for xa, xb in zip(xs, xs[1:], strict=False)
            for ya, yb in zip(ys, ys[1:], strict=False)
        )
        return total / PIXEL_ARCMIN**2

    label = _mass_map(m200c)
    centre = pixel_mean(NPIX // 2, NPIX // 2)
    for i, j in [(8, 9), (9, 9), (8, 12), (0, 0), (3, 14)]:
        expected = pixel_mean(i, j) / centre * m200c / M_NORM
        np.testing.assert_allclose(label[i, j], expected, rtol=MASS_MAP_RTOL, err_msg=(i, j))


# --- the training split and its normalization ---------------------------------------------


@pytest.fixture(scope="module")
def split16(shards16, tmp_path_factory):
    """split_dataset of the 16-pixel shards: (directory, returned normalization)."""
    out = tmp_path_factory.mktemp("split16")
    return out, split(shards16, out)


def _load(path) -> xr.Dataset:
    return xr.open_zarr(path).load()


def test_normalization_file(split16, shards16):
    out, norm = split16
    saved = json.loads((out / "normalization.json").read_text())
    assert saved == norm
    assert set(NORMALIZATION_KEYS) <= set(saved)
    assert read_normalization(out / "normalization.json") == saved
    # the constants, independently, from the training realizations of the shards
    shards = [open_shard(p) for p in shards16]
    train = slice(*TRAIN)
    assert saved["sky_scale"] == max(float(np.abs(ds.sky.values[train]).max()) for ds in shards)
    assert saved["sz_scale"] == max(float(np.abs(ds.sz.values[train]).max()) for ds in shards)
    assert saved["m_norm_msun"] == pytest.approx(np.mean(MASSES) * 1e14, rel=1e-12)
    assert saved["npix"] == NPIX and saved["pixel_arcmin"] == PIXEL_ARCMIN
    # only the training realizations set the scale
    assert saved["sky_scale"] <= max(float(np.abs(ds.sky.values).max()) for ds in shards)


def test_training_inputs_lie_in_unit_interval(split16):
    out, _ = split16
    train = _load(out / "train.zarr")
    x = train.inputs.values
    assert x.dtype == np.float32
    assert np.abs(x).max() == 1.0
    assert x.min() >= -1.0
    assert np.abs(train.labels.isel(label=0).values).max() == 1.0


def test_split_contents(split16, shards16):
    out, norm = split16
    shards = [open_shard(p) for p in shards16]
    for name, (lo, hi) in (("train", TRAIN), ("val", VAL)):
        ds = _load(out / f"{name}.zarr")
        n = (hi - lo) * len(MASSES)
        assert ds.inputs.shape == (n, NPIX, NPIX, 1), name
        assert ds.labels.shape == (n, NPIX, NPIX, 2), name
        assert list(ds.attrs["label_names"]) == ["sz", "mass"]
        assert ds.attrs["set"] == name
        assert [list(r) for r in ds.attrs["realizations"]] == [[lo, hi]] * len(MASSES)
        np.testing.assert_array_equal(ds.realization.values, np.tile(np.arange(lo, hi), 3))
        np.testing.assert_array_equal(ds.m200c.values, np.repeat(np.array(MASSES) * 1e14, hi - lo))
        # the same constants for both sets: inputs = sky / sky_scale, labels as prepared
        sky = np.concatenate([s.sky.values[lo:hi] for s in shards])
        np.testing.assert_array_equal(ds.inputs.values[..., 0], sky / np.float32(norm["sky_scale"]))
        sz = np.concatenate([s.sz.values[lo:hi] for s in shards])
        np.testing.assert_allclose(ds.labels.values[..., 0], sz / norm["sz_scale"], rtol=1e-6)
        for k, mass in enumerate(MASSES):
            expected = mass_map(
                m200c_msun=mass * 1e14,
                m_norm_msun=norm["m_norm_msun"],
                z=Z,
                cosmo=COSMO,
                npix=NPIX,
                pixel_arcmin=PIXEL_ARCMIN,
            )
            got = ds.labels.values[k * (hi - lo) : (k + 1) * (hi - lo), ..., 1]
            np.testing.assert_allclose(got, np.broadcast_to(expected, got.shape), rtol=1e-6)


def test_prepare_is_the_one_preparation(split16, shards16):
    """prepare() on a shard gives the stored validation rows bit for bit."""
    out, norm = split16
    val = _load(out / "val.zarr")
    part = prepare(open_shard(shards16[1]), norm, realizations=slice(*VAL), where="M2")
    n = VAL[1] - VAL[0]
    np.testing.assert_array_equal(part["inputs"], val.inputs.values[n : 2 * n])
    np.testing.assert_array_equal(part["labels"], val.labels.values[n : 2 * n])


def test_m_norm_of_the_paper_grid():
    """SPEC §3: M_norm = mean training mass = 4.5e14 Msun for the masses 1..8e14."""
    rng = np.random.default_rng(0)
    shards = []
    for mass in range(1, 9):
        n = 4
        sims = {
            "sky": rng.standard_normal((n, 8, 8)).astype(np.float32),
            "sz": rng.standard_normal((n, 8, 8)).astype(np.float32),
            "m200c": np.full(n, mass * 1e14),
            "m500c": np.full(n, mass * 0.7e14),
            "z": np.full(n, Z),
            "ln_scatter": rng.standard_normal(n),
        }
        attrs = {"sky_pixel_arcmin": PIXEL_ARCMIN}
        shards.append(
            shard_dataset(sims, realizations=np.arange(n), pixel_arcmin=0.25, attrs=attrs)
        )
    norm = normalization_from_training([(ds, range(0, 2)) for ds in shards])
    assert norm["m_norm_msun"] == pytest.approx(M_NORM, rel=1e-12)


# --- bad input ------------------------------------------------------------------------------


def _copy_with(src, dest, edit):
    """A copy of shard ``src`` at ``dest`` with ``edit(ds)`` applied (written atomically)."""
    ds = open_shard(src).copy(deep=True)
    edit(ds)
    write_zarr_atomic(ds, dest)
    return str(dest)


def _set_nan(realization):
    def edit(ds):
        ds["sky"].values[realization, 3, 4] = np.nan

    return edit


def test_nan_in_a_training_shard_names_it(shards16, tmp_path):
    bad = _copy_with(shards16[1], tmp_path / "M2.zarr", _set_nan(2))
    with pytest.raises(ValueError, match=r"M2\.zarr.*'sky'.*NaN"):
        split([shards16[0], bad, shards16[2]], tmp_path)
    for name in ("train.zarr", "val.zarr", "normalization.json"):
        assert not (tmp_path / name).exists(), name


def test_nan_in_a_validation_realization_names_the_shard(shards16, tmp_path):
    bad = _copy_with(shards16[2], tmp_path / "M4.zarr", _set_nan(VAL[0] + 1))
    with pytest.raises(ValueError, match=r"M4\.zarr.*'sky'.*NaN"):
        split([shards16[0], shards16[1], bad], tmp_path)
    assert not (tmp_path / "normalization.json").exists()
    assert not (tmp_path / "val.zarr").exists()


def test_failed_split_writes_nothing(shards16, tmp_path):
    bad = _copy_with(shards16[2], tmp_path / "M4.zarr", _set_nan(VAL[0] + 1))
    with pytest.raises(ValueError):
        split([shards16[0], shards16[1], bad], tmp_path)
    assert not (tmp_path / "train.zarr").exists()


def test_shards_of_another_map_size_are_refused(shards16, tmp_path):
    """A shard whose maps differ from the training set's (the first shard's) size."""
    from ..conftest import simulate_grid

    small = simulate_grid(tmp_path / "small", npix=8, masses=(2,), n=VAL[1])[0]
    with pytest.raises(ValueError, match=r"small/M2\.zarr: maps are 8x8 pixels.*16x16"):
        split([shards16[0], small], tmp_path)
    assert not (tmp_path / "train.zarr").exists()


def test_prepare_refuses_another_pixel_size(shards16, split16):
    _, norm = split16
    other = {**norm, "pixel_arcmin": 0.5}
    with pytest.raises(ValueError, match=r"test-shard: pixel is 0\.25'.*0\.5'"):
        prepare(open_shard(shards16[0]), other, where="test-shard")


def test_missing_normalization_file(tmp_path):
    path = tmp_path / "nowhere" / "normalization.json"
    with pytest.raises(FileNotFoundError, match=rf"{re.escape(str(path))} does not exist"):
        read_normalization(path)


def test_incomplete_normalization_file(tmp_path):
    path = tmp_path / "normalization.json"
    write_normalization({"sky_scale": 1.0, "npix": 8}, path)
    with pytest.raises(ValueError, match=rf"{re.escape(str(path))} lacks .*sz_scale.*m_norm_msun"):
        read_normalization(path)


def test_unreadable_normalization_file_is_named(tmp_path):
    path = tmp_path / "normalization.json"
    path.write_text('{"sky_scale": 1.0,')  # cut short
    with pytest.raises(ValueError, match=re.escape(str(path))):
        read_normalization(path)


def test_write_normalization_is_atomic(tmp_path):
    path = tmp_path / "normalization.json"
    write_normalization({"a": 1}, path)
    write_normalization({"a": 2}, path)
    assert json.loads(path.read_text()) == {"a": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["normalization.json"]


# --- labels at each map's redshift (issue 16) -----------------------------------------------


def test_a_shard_with_two_redshifts_gets_two_mass_labels(tmp_path):
    """Maps of one mass at z = 0.3 and 1.2 in one shard: ``prepare`` builds each map's mass
    label at its own z, so the two labels differ. Both peak at M200c / M_norm; at z = 1.2 the
    NFW's angular scale r_s / D_A is smaller (D_A(1.2) / D_A(0.3) ~ 1.8, and r_s shrinks with
    rho_crit(z)), so the label falls off faster away from the centre."""
    spectra = write_spectra(tmp_path / "spectra.ecsv")
    m200c, n = 3e14, 3
    parts = [
        simulate_shard(
            spectra_path=str(spectra),
            out_path=str(tmp_path / f"z{z:g}.zarr"),
            set_name="grid",
            seed=3,
            sky=shard_sky(NPIX),
            cluster={**CLUSTER, "redshift": z},
            sigma_int=0.2,
            mass_1e14=m200c / 1e14,
            n_realizations=n,
        )
        for z in (0.3, 1.2)
    ]
    ds = xr.concat(parts, dim="realization").assign_coords(realization=np.arange(2 * n))
    norm = normalization_from_training([(ds, range(2 * n))])
    labels = prepare(ds, norm)["labels"][..., 1]
    low, high = labels[:n], labels[n:]
    for group, z in ((low, 0.3), (high, 1.2)):
        expected = mass_map(
            m200c_msun=m200c,
            m_norm_msun=norm["m_norm_msun"],
            z=z,
            cosmo=COSMO,
            npix=NPIX,
            pixel_arcmin=PIXEL_ARCMIN,
        )
        for label in group:
            np.testing.assert_allclose(label, expected, rtol=1e-6)  # float32 labels
    c = NPIX // 2
    np.testing.assert_allclose(low[0, c, c], high[0, c, c], rtol=1e-6)
    assert low[0, c, c] == pytest.approx(m200c / norm["m_norm_msun"], rel=1e-6)
    assert not np.allclose(low[0], high[0], rtol=1e-3)
    # off the centre the z = 1.2 label is lower at every radius: its angular scale is smaller
    off = np.ones((NPIX, NPIX), dtype=bool)
    off[c, c] = False
    assert np.all(high[0][off] < low[0][off])
    d_ratio = profiles.angular_diameter_distance_mpc(1.2, COSMO) / (
        profiles.angular_diameter_distance_mpc(0.3, COSMO)
    )
    assert d_ratio > 1.5
