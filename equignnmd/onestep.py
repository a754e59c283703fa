"""One-step errors: a model (and the baselines) on pairs (t, t + Δt), grouped by stride.

Shared by the trainer's validation and ``equignnmd evaluate`` (the paper's Tables 4 and 6).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from .baselines import BASELINES


class _Sums:
    __slots__ = ("pos", "pos2", "vel", "n")

    def __init__(self):
        self.pos = self.pos2 = self.vel = 0.0
        self.n = 0

    def add(self, pos_err: torch.Tensor, vel_err: torch.Tensor | None) -> None:
        self.pos += float(pos_err.sum())
        self.pos2 += float((pos_err**2).sum())
        self.vel += float(vel_err.sum()) if vel_err is not None else float("nan")
        self.n += int(pos_err.numel())

    def result(self) -> dict[str, float]:
        n = max(self.n, 1)
        return {
            "pos_mean_A": self.pos / n,
            "pos_rmse_A": (self.pos2 / n) ** 0.5,
            "vel_mean_A_ps": self.vel / n,
            "atoms": self.n,
        }


@torch.no_grad()
def stride_errors(
    model,
    batches: Iterable,
    with_baselines: bool = True,
    on_batch: Callable | None = None,
) -> dict[float, dict[str, dict[str, float]]]:
    """Mean per-atom position error (Å), RMSE and velocity error (Å/ps) per stride.

    Returns ``{dt_fs: {"model"|"zero"|"ballistic"|"taylor": {...}}}``; ``model`` may be
    ``None`` (baselines only). ``on_batch(batch, prediction)`` sees every model prediction
    (the trainer uses it for the validation loss).
    """
    sums: dict[float, dict[str, _Sums]] = {}
    for batch in batches:
        preds = {}
        if model is not None:
            batch = model.prepare(batch.to(model.device))
            preds["model"] = model(batch)
            if on_batch is not None:
                on_batch(batch, preds["model"])
        if with_baselines:
            for name, fn in BASELINES.items():
                if name == "taylor" and getattr(batch, "forces", None) is None:
                    continue
                preds[name] = fn(batch)
        dt_atom = batch.dt_fs[batch.batch]
        for name, p in preds.items():
            err = (p.displacement - batch.disp).norm(dim=-1)
            verr = None if p.velocity is None else (p.velocity - batch.vel_next).norm(dim=-1)
            for s in torch.unique(batch.dt_fs).tolist():
                m = dt_atom == s
                sums.setdefault(float(s), {}).setdefault(name, _Sums()).add(
                    err[m], None if verr is None else verr[m]
                )
    return {s: {n: v.result() for n, v in d.items()} for s, d in sorted(sums.items())}
