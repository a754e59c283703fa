"""Honest baselines: what a surrogate must beat.

* :func:`zero` — atoms stay put, velocities unchanged.
* :func:`ballistic` — r + vΔt.
* :func:`taylor` — r + vΔt + ½(F/m)Δt², v + (F/m)Δt, with the recorded EAM force
  (one force call: the cost of one MD step, the accuracy of a second-order expansion).

All take a batch (PyG ``Data``/``Batch`` with ``vel``, ``mass``, ``dt_fs``, optionally
``forces``) and return :class:`equignnmd.models.base.Prediction`, exactly like a model.
"""

from .metrics import position_errors, velocity_errors
from .predictors import BASELINES, ballistic, predict_arrays, taylor, zero

__all__ = [
    "BASELINES",
    "ballistic",
    "position_errors",
    "predict_arrays",
    "taylor",
    "velocity_errors",
    "zero",
]
