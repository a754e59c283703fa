"""Autoregressive rollouts: a surrogate model advances R replicas together, one stride per step.

The parts, in the order data flows through them:

* :mod:`~equignnmd.rollout.config` — :class:`RolloutConfig`, the typed settings.
* :mod:`~equignnmd.rollout.state` — :class:`RolloutState` (tensors, metal units) and
  :func:`init_state` (structures or arrays × replicas, Maxwell–Boltzmann velocities where
  none are given, net momentum removed, replica r's random stream seeded ``seed + r``);
  :func:`check_structures` refuses, before anything is written, what a model cannot start
  from (unknown species, NaN/inf positions or velocities, a box thinner than 2 × cutoff).
* :mod:`~equignnmd.rollout.stages` — the step, :func:`step` (model, state, stride, stages) →
  state, as an ordered list of stages: :class:`ModelStep`, :class:`RemoveMomentum`,
  :class:`Thermostat`, :class:`EnergyRescale` (FlashMD-style energy conservation with a
  potential energy from :mod:`equignnmd.energy`); :func:`advance` is the one-call form.
* :mod:`~equignnmd.rollout.guard` — :class:`StabilityGuard` after every step.
* :mod:`~equignnmd.rollout.reporter` — :class:`RolloutReporter`, the files (an observer),
  and the restart file a run resumes from (:func:`read_restart`; ``RolloutConfig.resume``).
* :mod:`~equignnmd.rollout.engine` — :func:`init_run` (first state + stages, as
  :class:`~equignnmd.ase_md.SurrogateMD` uses too); :class:`Rollout` and :func:`run_rollout`
  run the loop and return a :class:`RolloutResult`.

The model's temperature label (:func:`equignnmd.physics.temperature_label`) is the set point
for NVT, else each replica's initial kinetic temperature, held fixed; every temperature
reported or checked is :func:`equignnmd.physics.kinetic_temperature` (centre-of-mass motion
removed, 3N − 3 degrees of freedom). A replica follows the same trajectory in a batch as when
run alone with its seed.

>>> result = run_rollout(model, "start.extxyz", dt_fs=10.0, steps=1000, temperature_K=300,
...                      thermostat="csvr", replicas=4, out_dir="ro")
"""

from .config import RolloutConfig
from .engine import Rollout, RolloutResult, init_run, run_rollout
from .guard import RolloutStopped, RolloutUnstable, StabilityGuard, thermo_snapshot
from .reporter import THERMO_COLUMNS, RolloutReporter, read_restart
from .stages import (
    ENERGY_THERMO,
    EnergyRescale,
    ModelStep,
    RemoveMomentum,
    Stage,
    Thermostat,
    advance,
    energy_thermo,
    finite_difference,
    init_stages,
    make_batch,
    model_temperature,
    standard_stages,
    step,
    thermostat_of,
    thermostat_work,
)
from .state import RolloutState, check_structures, init_state, make_generators

__all__ = [
    "ENERGY_THERMO",
    "THERMO_COLUMNS",
    "EnergyRescale",
    "ModelStep",
    "RemoveMomentum",
    "Rollout",
    "RolloutConfig",
    "RolloutReporter",
    "RolloutResult",
    "RolloutState",
    "RolloutStopped",
    "RolloutUnstable",
    "StabilityGuard",
    "Stage",
    "Thermostat",
    "advance",
    "check_structures",
    "energy_thermo",
    "finite_difference",
    "init_run",
    "init_stages",
    "init_state",
    "make_batch",
    "make_generators",
    "model_temperature",
    "read_restart",
    "run_rollout",
    "standard_stages",
    "step",
    "thermo_snapshot",
    "thermostat_of",
    "thermostat_work",
]
