"""Redshift as a drawn quantity (issue 16): ``cluster.redshift`` is a number (the paper's fixed
z) or ``{distribution: uniform, range: [lo, hi]}``, each map's z from its own stream."""

import numpy as np
import pytest
from scipy import stats

from szmass.sky import maps, profiles
from szmass.sky.cluster import sz_template_uk
from szmass.sky.simulate import (
    draw_redshifts,
    map_rng,
    mass_key,
    simulate_maps,
    simulate_shard,
    sky_components,
)

from ..conftest import CLUSTER, COSMO, sky, write_spectra

SKY = sky(16)
UNIFORM = {"distribution": "uniform", "range": [0.2, 1.5]}
# A synthetic spectrum, flat D_l = 100 uK^2, out to where a 1' beam is below 1e-5.
ELL = np.arange(40001.0)
CL = np.zeros_like(ELL)
CL[2:] = 2 * np.pi * 100.0 / (ELL[2:] * (ELL[2:] + 1))
SEED = 11
#: Two grid masses [1e14 Msun] interleaved, three realizations each.
MASSES_1E14 = np.array([2.0, 5.0, 2.0, 5.0, 2.0, 5.0])
KEYS = np.array([mass_key(m) for m in MASSES_1E14])
REALIZATIONS = np.array([0, 0, 1, 1, 2, 2])
#: The field and noise do not depend on the redshift: the sky minus the apodized SZ map agrees
#: between a fixed-z and a drawn-z run to float32 rounding of ~100 uK values (~1e-5 uK).
FIELD_ATOL_UK = 1e-4


def _simulate(redshift, index=slice(None), *, set_name="grid", sigma=0.2):
    return simulate_maps(
        m200c_msun=MASSES_1E14[index] * 1e14,
        keys=KEYS[index],
        realizations=REALIZATIONS[index],
        set_name=set_name,
        seed=SEED,
        sigma_int=sigma,
        spectra_ell=ELL,
        spectra_cl=CL,
        cosmo=COSMO,
        sky=SKY,
        cluster={**CLUSTER, "redshift": redshift},
    )


def _template(m500, z):
    return sz_template_uk(
        m500_msun=m500,
        z=z,
        cosmo=COSMO,
        npix=SKY["npix"],
        pixel_arcmin=SKY["pixel_arcmin"],
        fwhm_arcmin=SKY["beam_fwhm_arcmin"],
        freq_ghz=SKY["freq_ghz"],
        subpixel=CLUSTER["subpixel"],
        x_max=CLUSTER["x_max_r500"],
    )


def _reference_fixed_z(z, *, sigma=0.2):
    """The map making as it was before z could be drawn (commit 26b7af4), step by step: one
    M500c and one template per distinct mass at the fixed z, then field + scaled SZ + noise."""
    m200c = MASSES_1E14 * 1e14
    window = maps.apodization_window(SKY["npix"], SKY["apodization_width_pix"])
    unique, inverse = np.unique(m200c, return_inverse=True)
    m500 = np.atleast_1d(profiles.m200c_to_m500c(unique, z=z, cosmo=COSMO))
    templates = np.stack([_template(m, z) for m in m500])
    n, npix = len(m200c), SKY["npix"]
    out = {
        "sky": np.empty((n, npix, npix), dtype=np.float32),
        "sz": np.empty((n, npix, npix), dtype=np.float32),
        "m200c": m200c,
        "m500c": m500[inverse],
        "z": np.full(n, z),
        "ln_scatter": np.empty(n),
    }
    parts = sky_components(
        spectra_ell=ELL,
        spectra_cl=CL,
        sky=SKY,
        set_name="grid",
        seed=SEED,
        keys=KEYS,
        realizations=REALIZATIONS,
    )
    for i, field, noise in parts:
        delta = sigma * map_rng(SEED, "grid", KEYS[i], REALIZATIONS[i], "scatter").standard_normal()
        sz = templates[inverse[i]] * np.exp(delta)
        out["ln_scatter"][i], out["sz"][i] = delta, sz
        out["sky"][i] = window * (field + sz + noise)
    return out


@pytest.fixture(scope="module")
def fixed():
    return _simulate(0.7)


@pytest.fixture(scope="module")
def drawn():
    return _simulate(UNIFORM)


# --- a fixed z: the same bits as before ------------------------------------------------------


def test_fixed_z_is_bit_identical_to_the_path_before(fixed):
    reference = _reference_fixed_z(0.7)
    assert fixed.keys() == reference.keys()
    for key in fixed:
        np.testing.assert_array_equal(fixed[key], reference[key], err_msg=key, strict=True)


def test_fixed_z_draws_nothing():
    z = draw_redshifts(0.7, seed=SEED, set_name="grid", keys=KEYS, realizations=REALIZATIONS)
    np.testing.assert_array_equal(z, np.full(len(KEYS), 0.7), strict=True)


# --- the draw ---------------------------------------------------------------------------------


def test_drawn_z_is_uniform_over_the_range():
    n = 3000
    z = draw_redshifts(
        UNIFORM, seed=SEED, set_name="scatter", keys=np.arange(n), realizations=np.zeros(n)
    )
    assert z.min() >= 0.2 and z.max() < 1.5
    assert stats.kstest((z - 0.2) / 1.3, "uniform").pvalue > 1e-3


def test_a_maps_z_does_not_depend_on_the_other_maps():
    def draw(index, set_name="grid"):
        return draw_redshifts(
            UNIFORM,
            seed=SEED,
            set_name=set_name,
            keys=KEYS[index],
            realizations=REALIZATIONS[index],
        )

    every = draw(slice(None))
    np.testing.assert_array_equal(draw([4, 1]), every[[4, 1]])
    assert len(np.unique(every)) == len(every)
    assert not np.isin(draw(slice(None), "continuous"), every).any()  # each set its own stream


def test_unknown_distribution_is_refused():
    with pytest.raises(ValueError, match="cluster.redshift.distribution"):
        draw_redshifts(
            {"distribution": "normal", "range": [0.2, 1.5]},
            seed=SEED,
            set_name="grid",
            keys=KEYS,
            realizations=REALIZATIONS,
        )


# --- the maps at each map's own z ---------------------------------------------------------------


def test_each_map_uses_its_own_z(drawn):
    z = drawn["z"]
    assert len(np.unique(z)) == len(z) and np.all((z >= 0.2) & (z < 1.5))
    for i in (0, 3):
        m500 = float(profiles.m200c_to_m500c(drawn["m200c"][i], z=z[i], cosmo=COSMO))
        assert drawn["m500c"][i] == m500
        expected = (_template(m500, z[i]) * np.exp(drawn["ln_scatter"][i])).astype(np.float32)
        np.testing.assert_array_equal(drawn["sz"][i], expected)


def test_drawn_z_changes_only_the_cluster(fixed, drawn):
    """The redshift stream is a stream of its own: the scatter, the CMB and the noise are the
    fixed-z run's; only the cluster's map differs."""
    np.testing.assert_array_equal(drawn["ln_scatter"], fixed["ln_scatter"], strict=True)
    window = maps.apodization_window(SKY["npix"], SKY["apodization_width_pix"])
    rest = {k: r["sky"] - window * r["sz"] for k, r in (("fixed", fixed), ("drawn", drawn))}
    np.testing.assert_allclose(rest["drawn"], rest["fixed"], rtol=0, atol=FIELD_ATOL_UK)
    assert not np.allclose(drawn["sz"], fixed["sz"])


def test_drawn_maps_do_not_depend_on_the_other_maps(drawn):
    alone = _simulate(UNIFORM, [3, 4])
    for key in drawn:
        np.testing.assert_array_equal(alone[key], drawn[key][[3, 4]], err_msg=key, strict=True)


# --- shards ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def scatter_shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("redshift")
    spectra = write_spectra(root / "spectra.ecsv")
    return [
        simulate_shard(
            spectra_path=str(spectra),
            out_path=str(root / f"sigma{sigma:g}.zarr"),
            set_name="scatter",
            seed=3,
            sky=SKY,
            cluster={**CLUSTER, "redshift": UNIFORM},
            sigma_int=sigma,
            n_clusters=5,
            mass_range_1e14=(2, 7),
        )
        for sigma in (0.2, 0.0)
    ]


def test_shard_records_the_distribution_and_each_z(scatter_shards):
    ds = scatter_shards[0]
    assert ds.attrs["cluster_redshift_distribution"] == "uniform"
    assert list(ds.attrs["cluster_redshift_range"]) == [0.2, 1.5]
    assert "cluster_redshift" not in ds.attrs
    assert ds.z.attrs["long_name"] == "redshift"
    assert len(np.unique(ds.z.values)) == ds.sizes["realization"]


def test_both_scatter_sets_hold_the_same_clusters(scatter_shards):
    with_scatter, without = scatter_shards
    np.testing.assert_array_equal(with_scatter.z.values, without.z.values)
    np.testing.assert_array_equal(with_scatter.m500c.values, without.m500c.values)
