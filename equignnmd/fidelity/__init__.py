"""``equignnmd fidelity``: does a surrogate's *trajectory* behave like the reference MD?

From equilibrated LAMMPS states at several temperatures (held-out ones included), for one
checkpoint and the reference EAM potential (or a dataset's own reference and material, an
element or a random substitutional alloy whose atoms each keep their own mass):

1. **NVE** at every surrogate stride: the true total energy of the surrogate's trajectory
   every ``energy_every`` strides (its kinetic energy plus the EAM potential energy of its
   positions, one LAMMPS single point; :class:`equignnmd.potential.LammpsEnergy`), its drift
   in meV/atom/ps and the temperature trace, beside LAMMPS velocity Verlet from the same state at
   ``verlet_fs`` (1, 5, 10, 20 fs).
2. **NVT** (CSVR and Langevin, τ = ``tau_strides`` strides) beside LAMMPS with the same
   thermostat: mean and standard deviation of T against the canonical expectation
   (σ_T = T √(2 / (3N − 3))), RDF L1 with its calibration rows (LAMMPS at T with another seed,
   and at T ± ``calibration_dK``), VDOS overlap over the whole run and over its last quarter,
   the VDOS weight below 2 THz, the mean-square displacement from the start (a solid's
   plateau) and the drift of time-averaged sites, the FCC fraction (CNA) of the last frame,
   and equipartition: the kinetic temperature of the box's longest plane waves
   (:func:`equignnmd.analysis.plane_wave_temperatures`) over the kinetic temperature.
3. **One-step** kinetic-energy bias (K_pred / K_true − 1) and error energy
   Σ m |Δv|² / Σ m v² per stride and temperature, on pairs of an NVE reference run at
   ``reference_fs`` (1 fs; a costly reference's own stable step), with the
   zero / ballistic / Taylor baselines beside the model; and the model's reversibility error
   (step, flip the velocities, step, flip: the mean distance to the start, Å, and the
   relative velocity error), which is zero for exact Hamiltonian dynamics.

It writes ``fidelity.md``, ``fidelity.json`` and plots into ``out``. A score computed from
fewer than ``min_frames`` frames is printed as "–" (and stored as null).

Data flows one way through the modules: :mod:`.cache` (reference runs kept on disk) →
:mod:`.run` (the settings :class:`FidelityConfig` and
:data:`PRESETS`, the LAMMPS and surrogate runs, :func:`fidelity`) → :mod:`.score` (the
scores of a run) → :mod:`.render` (plots, ``fidelity.md``, ``fidelity.json``).
"""

from .render import render_fidelity
from .run import (
    PRESETS,
    FidelityConfig,
    equilibrated_state,
    fidelity,
    lammps_nvt,
    make_config,
    surrogate_run,
    verlet_nve,
)
from .score import SITE_DRIFT_WINDOW_PS

__all__ = [
    "PRESETS",
    "SITE_DRIFT_WINDOW_PS",
    "FidelityConfig",
    "equilibrated_state",
    "fidelity",
    "lammps_nvt",
    "make_config",
    "render_fidelity",
    "surrogate_run",
    "verlet_nve",
]
