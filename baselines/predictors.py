"""Baseline predictors with the same output as a model (displacement Å, velocity Å/ps)."""

from __future__ import annotations

import numpy as np
import torch

from equignnmd.models.base import Prediction
from equignnmd.units import FTM2V, fs_to_ps


def _per_atom_dt_ps(batch) -> torch.Tensor:
    dt = fs_to_ps(batch.dt_fs)
    idx = getattr(batch, "batch", None)
    dt_atom = dt[idx] if idx is not None else dt.expand(batch.vel.shape[0])
    return dt_atom.unsqueeze(-1)


def zero(batch) -> Prediction:
    return Prediction(torch.zeros_like(batch.vel), batch.vel.clone())


def ballistic(batch) -> Prediction:
    return Prediction(batch.vel * _per_atom_dt_ps(batch), batch.vel.clone())


def taylor(batch) -> Prediction:
    if getattr(batch, "forces", None) is None:
        raise ValueError("the Taylor baseline needs recorded forces (field 'forces')")
    dt = _per_atom_dt_ps(batch)
    acc = batch.forces / batch.mass.unsqueeze(-1) * FTM2V
    return Prediction(batch.vel * dt + 0.5 * acc * dt**2, batch.vel + acc * dt)


BASELINES = {"zero": zero, "ballistic": ballistic, "taylor": taylor}


def predict_arrays(name: str, vel, forces, masses, dt_fs: float):
    """NumPy version for whole trajectories: arrays (..., N, 3) → (displacement, velocity)."""
    dt = fs_to_ps(dt_fs)
    vel = np.asarray(vel, np.float64)
    if name == "zero":
        return np.zeros_like(vel), vel
    if name == "ballistic":
        return vel * dt, vel
    if name == "taylor":
        acc = np.asarray(forces, np.float64) / np.asarray(masses)[..., None] * FTM2V
        return vel * dt + 0.5 * acc * dt**2, vel + acc * dt
    raise ValueError(f"unknown baseline {name!r}; known: {sorted(BASELINES)}")
