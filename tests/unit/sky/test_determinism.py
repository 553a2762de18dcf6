"""Every map draws from its own streams: same inputs, same bits, whatever else is computed."""

import itertools

import numpy as np
import pytest

from szmass.sky.simulate import COMPONENT_CODES, SET_CODES, map_rng, mass_key, simulate_maps

from ..conftest import COSMO

SKY = {
    "freq_ghz": 150.0,
    "pixel_arcmin": 0.25,
    "npix": 16,
    "pad_factor": 2,
    "beam_fwhm_arcmin": 1.0,
    "noise_uk_arcmin": 5.0,
    "apodization_width_pix": 2,
}
CLUSTER = {"redshift": 0.7, "x_max_r500": 5.0, "subpixel": 2}
# A synthetic spectrum, flat D_l = 100 uK^2, out to where a 1' beam is below 1e-5.
ELL = np.arange(40001.0)
CL = np.zeros_like(ELL)
CL[2:] = 2 * np.pi * 100.0 / (ELL[2:] * (ELL[2:] + 1))

GRID_MASS = 3e14
SCATTER_MASSES = np.array([2.1, 3.3, 4.7, 5.2, 6.9, 2.8]) * 1e14


def _simulate(m200c, keys, realizations, *, set_name="grid", seed=11, threads=1, sigma=0.2):
    return simulate_maps(
        m200c_msun=np.asarray(m200c, dtype=float),
        keys=np.asarray(keys),
        realizations=np.asarray(realizations),
        set_name=set_name,
        seed=seed,
        sigma_int=sigma,
        spectra_ell=ELL,
        spectra_cl=CL,
        cosmo=COSMO,
        sky=SKY,
        cluster=CLUSTER,
        threads=threads,
    )


def _grid(realizations, **kwargs):
    n = len(realizations)
    return _simulate([GRID_MASS] * n, [mass_key(3)] * n, realizations, **kwargs)


def _assert_same(a, b, index=slice(None)):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key][index], b[key], err_msg=key, strict=True)


@pytest.fixture(scope="module")
def base():
    """Grid maps for realizations 0..5."""
    return _grid(range(6))


def test_output_schema(base):
    assert base["sky"].shape == base["sz"].shape == (6, 16, 16)
    assert base["sky"].dtype == base["sz"].dtype == np.float32
    for key in ("m200c", "m500c", "z", "ln_scatter"):
        assert base[key].shape == (6,)
    assert np.all(np.isfinite(base["sky"]))
    assert np.all(base["m200c"] == GRID_MASS)
    assert np.all(base["m500c"] < GRID_MASS)


def test_rerun_is_bit_identical(base):
    _assert_same(base, _grid(range(6)))


def test_threads_do_not_change_bits(base):
    _assert_same(base, _grid(range(6), threads=2))


def test_map_does_not_depend_on_the_other_maps_in_the_call(base):
    _assert_same(base, _grid([2, 3]), index=slice(2, 4))
    _assert_same(base, _grid([5]), index=slice(5, 6))


def test_map_does_not_depend_on_order(base):
    order = [4, 0, 5, 2, 1, 3]
    _assert_same(base, _grid(order), index=order)


def test_maps_differ_between_realizations(base):
    for i, j in itertools.combinations(range(6), 2):
        assert not np.array_equal(base["sky"][i], base["sky"][j])
    assert len(set(base["ln_scatter"])) == 6


def test_different_seeds_differ(base):
    other = _grid(range(6), seed=12)
    assert not np.any(np.all(other["sky"] == base["sky"], axis=(1, 2)))
    assert not np.any(other["ln_scatter"] == base["ln_scatter"])


def test_scatter_set_subset_and_order():
    """Distinct masses per map (the scatter set): masses, m500c and maps per cluster id."""
    ids = np.arange(6)
    full = _simulate(SCATTER_MASSES, ids, np.zeros(6, int), set_name="scatter")
    pick = [4, 1]
    sub = _simulate(SCATTER_MASSES[pick], ids[pick], [0, 0], set_name="scatter")
    _assert_same(full, sub, index=pick)


def test_zero_scatter_is_exactly_zero():
    out = _grid(range(3), sigma=0.0)
    assert np.all(out["ln_scatter"] == 0.0)


def test_the_cluster_is_the_only_difference_between_scatter_values():
    """Same streams, only sigma_int differs: sky - sz is the same field and noise."""
    a = _grid(range(3), sigma=0.0)
    b = _grid(range(3), sigma=0.2)
    np.testing.assert_array_equal(a["m500c"], b["m500c"])
    assert not np.array_equal(a["sz"], b["sz"])
    from szmass.sky.maps import apodization_window

    window = apodization_window(SKY["npix"], SKY["apodization_width_pix"])
    diff = (a["sky"] - window * a["sz"]) - (b["sky"] - window * b["sz"])
    np.testing.assert_allclose(diff, 0.0, atol=1e-3)  # float32 rounding of ~100 uK maps


# --- map_rng ------------------------------------------------------------------------------


def test_map_rng_is_reproducible():
    a = map_rng(5, "grid", 30000, 7, "field").standard_normal(16)
    b = map_rng(5, "grid", 30000, 7, "field").standard_normal(16)
    np.testing.assert_array_equal(a, b)


def test_map_rng_streams_differ():
    draws = {}
    for set_name, key, realization, component in itertools.product(
        SET_CODES, [0, 1, mass_key(0.75), mass_key(1)], [0, 1, 799], COMPONENT_CODES
    ):
        stream = map_rng(5, set_name, key, realization, component)
        draws[(set_name, key, realization, component)] = tuple(stream.integers(0, 2**63, 4))
    assert len(set(draws.values())) == len(draws)


def test_map_rng_seeds_differ():
    a = map_rng(5, "grid", 1, 0, "noise").integers(0, 2**63, 4)
    b = map_rng(6, "grid", 1, 0, "noise").integers(0, 2**63, 4)
    assert not np.array_equal(a, b)


def test_map_rng_accepts_the_schema_seed_range():
    map_rng(0, "grid", 0, 0, "field").random()
    map_rng(2**32 - 1, "scatter", 99999, 0, "mass").random()


def test_mass_key():
    assert mass_key(0.75) == 7500
    assert mass_key(1) == mass_key(1.0) == 10000
    assert mass_key(0.1 + 0.2) == 3000  # not fooled by floating-point representation
