"""Units. Inside the package everything is LAMMPS ``metal``: Å, ps, eV, amu, Å/ps, K.

Conversions to ASE's own units happen only at the edges (``ase`` integration, ``predict``).
"""

from __future__ import annotations

import ase.units

KB_EV_PER_K = 8.617333262e-5
"""Boltzmann constant, eV/K."""

MVV2E = 1.0364269e-4
"""amu·Å²/ps² → eV (LAMMPS metal ``mvv2e``)."""

FTM2V = 1.0 / 1.0364269e-4
"""(eV/Å)/amu → Å/ps² (LAMMPS metal ``ftm2v``)."""

EV_PER_A3_IN_GPA = 160.2176634
"""eV/Å³ → GPa."""

BAR_PER_EV_PER_A3 = EV_PER_A3_IN_GPA * 1.0e4
"""eV/Å³ → bar (LAMMPS metal pressures are in bar; 10⁴ bar per GPa)."""

FS_PER_PS = 1000.0
"""Femtoseconds per picosecond: strides are given in fs, metal time is ps."""

ASE_VELOCITY_PER_A_PS = 1.0 / (FS_PER_PS * ase.units.fs)
"""Multiply a velocity in Å/ps by this to get ASE's velocity unit (Å per ASE time unit)."""


PS_PER_NS = 1000.0
SECONDS_PER_DAY = 86400.0


def ns_per_day(simulated_ps: float, wall_s: float) -> float:
    """Throughput of an MD engine: simulated ns per day of wall time (0 when none passed)."""
    return simulated_ps / PS_PER_NS / wall_s * SECONDS_PER_DAY if wall_s > 0 else 0.0


def fs_to_ps(t_fs):
    """A time (or stride) in fs → ps; works on floats, arrays and tensors."""
    return t_fs / FS_PER_PS


def ps_to_fs(t_ps):
    """A time in ps → fs; works on floats, arrays and tensors."""
    return t_ps * FS_PER_PS


def velocity_to_ase(v_A_ps):
    return v_A_ps * ASE_VELOCITY_PER_A_PS


def velocity_from_ase(v_ase):
    return v_ase / ASE_VELOCITY_PER_A_PS


def fs_to_ase_time(dt_fs: float) -> float:
    return dt_fs * ase.units.fs


def ase_time_to_fs(t_ase: float) -> float:
    return t_ase / ase.units.fs
