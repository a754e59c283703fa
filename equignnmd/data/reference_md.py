"""LAMMPS reference MD started from a given state (the yardstick for rollouts).

Same positions, velocities and cell as the surrogate's start, the same kind of thermostat
(``none`` → NVE, ``csvr`` → ``fix temp/csvr``, ``langevin`` → ``fix langevin``), velocity Verlet
at ``md_timestep_fs`` (1 fs), frames recorded every ``stride_fs`` so the two trajectories can be
compared frame by frame.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .._lammps import resolve_potential
from ..lammps_potential import LammpsPotential
from ..materials import ALUMINIUM, Material
from .lammps_md import LammpsMD, MDSettings

ENSEMBLE = {"none": "nve", "nve": "nve", "csvr": "csvr", "langevin": "langevin"}


def lammps_reference(
    positions,
    velocities,
    cell,
    stride_fs: float,
    n_frames: int,
    temperature_K: float,
    thermostat: str = "csvr",
    tau_fs: float | None = None,
    potential: str | Path | LammpsPotential | None = None,
    material: Material = ALUMINIUM,
    md_timestep_fs: float = 1.0,
    seed: int = 4242,
) -> dict[str, np.ndarray]:
    """Run LAMMPS from the given state; returns frames 0..n_frames (inclusive) every stride.

    Args:
        positions: (N, 3) Å (wrapped or unwrapped); velocities: (N, 3) Å/ps;
        cell: (3, 3) Å, LAMMPS-style lower-triangular rows.
        tau_fs: thermostat time constant (default 100 × stride, as in our rollouts).
        potential: a :class:`~equignnmd.lammps_potential.LammpsPotential` (a dataset's own,
            :func:`~equignnmd.lammps_potential.dataset_potential`), a potential file (path or
            shipped name) for ``material``'s element, or None for the default Al EAM.

    Returns:
        ``positions`` (F, N, 3) unwrapped Å, ``velocities`` (F, N, 3) Å/ps, ``cell``
        (F, 3, 3), ``time_fs`` (F,), ``temperature_K`` (F,), ``wall_s`` (MD time only).
    """
    if thermostat not in ENSEMBLE:
        raise ValueError(f"thermostat {thermostat!r}: expected one of {sorted(ENSEMBLE)}")
    ratio = stride_fs / md_timestep_fs
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"stride {stride_fs} fs must be a multiple of {md_timestep_fs} fs")
    settings = MDSettings(
        potential=(
            potential if isinstance(potential, LammpsPotential) else resolve_potential(potential)
        ),
        material=material,
        temperature_K=temperature_K,
        seed=seed,
        timestep_fs=md_timestep_fs,
        ensemble=ENSEMBLE[thermostat],
        tdamp_fs=tau_fs if tau_fs is not None else 100.0 * stride_fs,
        descriptors=False,
    )
    state = {"positions": positions, "velocities": velocities, "cell": cell}
    frames = []
    wall = 0.0
    with LammpsMD(settings, state=state) as md:
        frames.append(md.frame())
        for _ in range(n_frames):
            t0 = time.perf_counter()
            md.run(int(round(ratio)))
            wall += time.perf_counter() - t0
            frames.append(md.frame())
    return {
        "positions": np.stack([f["positions"] for f in frames]),
        "velocities": np.stack([f["velocities"] for f in frames]),
        "cell": np.stack([f["cell"] for f in frames]),
        "time_fs": np.array([f["time_fs"] for f in frames]),
        "temperature_K": np.array([f["thermo"]["temperature_K"] for f in frames]),
        "wall_s": wall,
    }
