"""The cosmology shared by CAMB (spectra) and colossus (haloes, distances).

A cosmology is a plain dict with the keys of ``config['cosmology']``: ``H0`` [km/s/Mpc],
``ombh2``, ``omch2``, ``omnuh2`` (one massive neutrino), ``tau``, ``ns``, ``As``, ``TCMB`` [K],
``YHe``; the spectra stage adds the derived ``sigma8`` (from CAMB) so that colossus uses exactly
the CAMB cosmology. Planck 2018 best fit: Planck Collaboration VI 2018, arXiv:1807.06209.
"""

from typing import Any

import camb
from colossus.cosmology import cosmology as colossus_cosmology

COSMOLOGY_KEYS = ("H0", "ombh2", "omch2", "omnuh2", "tau", "ns", "As", "TCMB", "YHe")
#: CAMB's neutrino mass for the reference omnuh2 (omnuh2 is linear in mnu at fixed TCMB).
_MNU_REF_EV = 0.06


def h(cosmo: dict[str, Any]) -> float:
    """Dimensionless Hubble parameter h = H0 / 100."""
    return cosmo["H0"] / 100.0


def h70(cosmo: dict[str, Any]) -> float:
    """h70 = H0 / 70, the unit of Arnaud et al. 2010 (arXiv:0910.1234)."""
    return cosmo["H0"] / 70.0


def omega_m(cosmo: dict[str, Any]) -> float:
    """Total matter density today, baryons + CDM + massive neutrinos."""
    return (cosmo["ombh2"] + cosmo["omch2"] + cosmo["omnuh2"]) / h(cosmo) ** 2


def camb_params(cosmo: dict[str, Any], *, lmax: int, want_sigma8: bool = True) -> camb.CAMBparams:
    """CAMB parameters for ``cosmo``: one massive neutrino with the configured omnuh2."""
    missing = [k for k in COSMOLOGY_KEYS if k not in cosmo]
    if missing:
        raise KeyError(f"cosmology is missing {missing}")
    common = dict(
        H0=cosmo["H0"],
        ombh2=cosmo["ombh2"],
        omch2=cosmo["omch2"],
        num_massive_neutrinos=1,
        nnu=3.046,
        tau=cosmo["tau"],
        ns=cosmo["ns"],
        As=cosmo["As"],
        TCMB=cosmo["TCMB"],
        YHe=cosmo["YHe"],
        lmax=lmax,
        lens_potential_accuracy=1,
        WantTransfer=want_sigma8,
    )
    ref = camb.set_params(mnu=_MNU_REF_EV, **common)
    mnu = _MNU_REF_EV * cosmo["omnuh2"] / ref.omnuh2
    params = camb.set_params(mnu=mnu, **common)
    if want_sigma8:
        params.set_matter_power(redshifts=[0.0], kmax=2.0)
    return params


def colossus(cosmo: dict[str, Any]):
    """Set and return the colossus cosmology matching ``cosmo`` (needs ``sigma8``).

    colossus keeps its cosmology in a module global; every szmass function that uses colossus
    calls this first, so the global always matches the arguments. Nothing is cached on disk.
    """
    if "sigma8" not in cosmo:
        raise KeyError("cosmology needs the derived 'sigma8' (written by the spectra stage)")
    params = dict(
        flat=True,
        H0=cosmo["H0"],
        Om0=omega_m(cosmo),
        Ob0=cosmo["ombh2"] / h(cosmo) ** 2,
        sigma8=cosmo["sigma8"],
        ns=cosmo["ns"],
        Tcmb0=cosmo["TCMB"],
    )
    current = colossus_cosmology.current_cosmo
    if current is not None and getattr(current, "_szmass_params", None) == params:
        return current
    cosmo_obj = colossus_cosmology.setCosmology("szmass", params=params, persistence="")
    cosmo_obj._szmass_params = params
    return cosmo_obj
