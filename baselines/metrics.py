"""Error metrics on unwrapped positions and velocities (works on NumPy arrays and tensors)."""

from __future__ import annotations

import numpy as np


def _np(x):
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, np.float64)


def position_errors(pred_disp, true_disp) -> dict[str, float]:
    """``mean``: mean per-atom Euclidean error, Å (the paper's figure); ``rmse``: root mean
    square of the per-atom Euclidean error, Å; ``max``: worst atom, Å."""
    err = np.linalg.norm(_np(pred_disp) - _np(true_disp), axis=-1)
    return {
        "mean": float(err.mean()),
        "rmse": float(np.sqrt((err**2).mean())),
        "max": float(err.max()),
    }


def velocity_errors(pred_vel, true_vel) -> dict[str, float]:
    """Mean per-atom Euclidean velocity error and RMSE, Å/ps."""
    err = np.linalg.norm(_np(pred_vel) - _np(true_vel), axis=-1)
    return {"mean": float(err.mean()), "rmse": float(np.sqrt((err**2).mean()))}
