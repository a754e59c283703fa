"""Autoregressive rollouts: a surrogate model advances R replicas together, one stride per step.

The parts, in the order data flows through them:

* :mod:`~equignnmd.rollout.config` — :class:`RolloutConfig`, the typed settings.
* :mod:`~equignnmd.rollout.state` — :class:`RolloutState` (tensors, metal units; each stage's
  own state as a frozen record in ``info``) and ``init_state`` (structures or arrays ×
  replicas, Maxwell–Boltzmann velocities where none are given, net momentum removed, replica
  r's random stream seeded ``seed + r``); ``check_structures`` refuses, before anything is
  written, what a model cannot start from (unknown species, NaN/inf positions or velocities,
  a box thinner than 2 × cutoff).
* :mod:`~equignnmd.rollout.stages` — the step, :func:`step` (model, state, stride, stages) →
  state, as an ordered list of stages: ``ModelStep``, ``RemoveMomentum``, ``Thermostat``,
  ``EnergyRescale`` (FlashMD-style energy conservation with a potential energy from
  :mod:`equignnmd.potential`); ``standard_stages`` and ``init_stages`` build and start them.
* :mod:`~equignnmd.rollout.guard` — ``StabilityGuard`` after every step.
* :mod:`~equignnmd.rollout.reporter` — ``RolloutReporter``, the files (an observer), and the
  restart file a run resumes from (:func:`read_restart`; ``RolloutConfig.resume``).
* :mod:`~equignnmd.rollout.engine` — :func:`init_run` (first state + stages, as
  :class:`~equignnmd.ase_md.SurrogateMD` uses too); :class:`Rollout` and :func:`run_rollout`
  run the loop and return a :class:`RolloutResult`.

This package face holds what a user of rollouts needs; the parts are imported from their
modules (``from equignnmd.rollout.stages import Thermostat``).

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
from .guard import RolloutStopped, RolloutUnstable
from .reporter import read_restart
from .stages import step
from .state import RolloutState

__all__ = [
    "Rollout",
    "RolloutConfig",
    "RolloutResult",
    "RolloutState",
    "RolloutStopped",
    "RolloutUnstable",
    "init_run",
    "read_restart",
    "run_rollout",
    "step",
]
