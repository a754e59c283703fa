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

FS_PER_PS = 1000.0

AL_MASS_AMU = 26.9815
AL_LATTICE_A = 4.05
AL_ATOMIC_NUMBER = 13

ASE_VELOCITY_PER_A_PS = 1.0 / (1000.0 * ase.units.fs)
"""Multiply a velocity in Å/ps by this to get ASE's velocity unit (Å per ASE time unit)."""


def velocity_to_ase(v_A_ps):
    return v_A_ps * ASE_VELOCITY_PER_A_PS


def velocity_from_ase(v_ase):
    return v_ase / ASE_VELOCITY_PER_A_PS


def fs_to_ase_time(dt_fs: float) -> float:
    return dt_fs * ase.units.fs


def ase_time_to_fs(t_ase: float) -> float:
    return t_ase / ase.units.fs
