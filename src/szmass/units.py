"""Named unit factors and physical constants (SI and radians inside).

Multiply by a factor to convert *to* the internal unit, divide to convert back:
``theta_rad = theta_arcmin * ARCMIN``.
"""

import math

from scipy import constants as _c

ARCMIN = math.pi / (180.0 * 60.0)  # rad per arcmin
MSUN = 1.98847e30  # kg (IAU 2015 nominal)
MPC_CM = 3.0856775814913673e24  # cm per Mpc
KEV = 1.0e3 * _c.electron_volt  # J per keV
UK = 1.0e-6  # K per microkelvin

#: Thomson cross-section over the electron rest energy, cm^2 / keV (CODATA; SPEC: 1.30186e-27).
SIGMA_T_OVER_MEC2_CM2_PER_KEV = (
    _c.physical_constants["Thomson cross section"][0] * 1.0e4 / (_c.m_e * _c.c**2 / KEV)
)

PLANCK_H = _c.h  # J s
BOLTZMANN_K = _c.k  # J / K
