"""Per-step stability checks of a rollout, and the thermo snapshot they are made from.

Per replica: non-finite positions or velocities; a pair closer than ``min_distance_A``; a
kinetic temperature (:func:`equignnmd.physics.kinetic_temperature`) above
``max_temperature_factor`` × the reference (the model's temperature label: set point, or the
initial temperature for NVE) or, when ``min_temperature_factor`` is set, below that fraction of
it (a model that drains the kinetic energy freezes the system).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import physics
from ..graph import edge_vectors, neighbour_list
from .state import RolloutState

__all__ = [
    "NoveltyWarning",
    "RolloutStopped",
    "RolloutUnstable",
    "StabilityGuard",
    "thermo_snapshot",
]


@dataclass
class StabilityGuard:
    """Per-step checks; :meth:`check` returns ``(thermo, problem)`` with problem ``None`` or
    ``(replica, cause)``.

    ``min_distance_A``: any pair closer is a failure (1.5 Å for Al, whose nearest neighbours
    sit at 2.86 Å); ``max_temperature_factor`` × ``reference_K`` (per replica; skipped where the
    reference is 0) and, if set, ``min_temperature_factor`` × ``reference_K`` bound the kinetic
    temperature from above and below; ``probe_cutoff_A``: radius of the neighbour list that also
    measures the minimum pair distance reported in the thermo log (``inf`` when no pair is that
    close).
    """

    min_distance_A: float = 1.5
    max_temperature_factor: float | None = 3.0
    probe_cutoff_A: float = 3.5
    min_temperature_factor: float | None = None
    reference_K: torch.Tensor | None = None

    @classmethod
    def for_run(
        cls,
        reference_K: torch.Tensor,
        min_distance_A: float = 1.5,
        max_temperature_factor: float | None = 3.0,
        min_temperature_factor: float | None = None,
    ) -> StabilityGuard:
        """A guard whose probe reaches 0.5 Å past ``min_distance_A`` (at least 3.5 Å)."""
        return cls(
            min_distance_A=min_distance_A,
            max_temperature_factor=max_temperature_factor,
            min_temperature_factor=min_temperature_factor,
            probe_cutoff_A=max(3.5, float(min_distance_A) + 0.5),
            reference_K=reference_K.detach().cpu(),
        )

    def check(self, state: RolloutState):
        thermo = thermo_snapshot(state, probe_cutoff_A=self.probe_cutoff_A)
        finite = thermo.pop("_finite")
        pair = thermo.pop("_pair")
        for r in range(state.n_replicas):
            if not finite[r]:
                return thermo, (r, "non-finite positions or velocities (NaN/inf)")
            if thermo["min_distance_A"][r] < self.min_distance_A:
                i, j = pair[r]
                return thermo, (
                    r,
                    f"atoms {i} and {j} are {thermo['min_distance_A'][r]:.3f} Å apart, closer "
                    f"than min_distance_A = {self.min_distance_A} Å",
                )
            ref = float(self.reference_K[r]) if self.reference_K is not None else 0.0
            temp = thermo["temperature_K"][r]
            if ref > 0 and self.max_temperature_factor is not None:
                if temp > self.max_temperature_factor * ref:
                    return thermo, (
                        r,
                        f"temperature {temp:.1f} K exceeds "
                        f"max_temperature_factor {self.max_temperature_factor} × {ref:.1f} K",
                    )
            if ref > 0 and self.min_temperature_factor is not None:
                if temp < self.min_temperature_factor * ref:
                    return thermo, (
                        r,
                        f"temperature {temp:.1f} K is below "
                        f"min_temperature_factor {self.min_temperature_factor} × {ref:.1f} K",
                    )
        return thermo, None


def thermo_snapshot(state: RolloutState, probe_cutoff_A: float = 3.5) -> dict:
    """Per-replica NumPy arrays: temperature_K, kinetic_energy_eV, momentum_amu_A_per_ps,
    min_distance_A (within ``probe_cutoff_A``, else inf); also ``_finite`` and ``_pair``
    (closest pair, replica-local atom indices) for the guard."""
    n_rep = state.n_replicas
    vel, m, b = state.velocities, state.masses, state.batch
    temp = physics.kinetic_temperature(vel, m, b).cpu().numpy()
    ke = physics.kinetic_energy(vel, m, b).cpu().numpy()
    mom = physics.net_momentum(vel, m, b).norm(dim=-1).cpu().numpy()
    ok_atom = torch.isfinite(state.positions).all(-1) & torch.isfinite(vel).all(-1)
    finite = torch.zeros(n_rep, dtype=torch.long, device=vel.device)
    finite = finite.index_add_(0, b, (~ok_atom).long()).eq(0).cpu().numpy()
    dmin = np.full(n_rep, np.nan)
    pair = [(-1, -1)] * n_rep
    if finite.all():
        dmin[:] = np.inf
        edge_index, shifts = neighbour_list(state.positions, state.cell, probe_cutoff_A, b)
        if edge_index.shape[1]:
            vec = edge_vectors(state.positions, state.cell, edge_index, shifts, b)
            dist = vec.norm(dim=-1)
            graph = b[edge_index[1]]
            ptr = state.ptr.tolist()
            for r in range(n_rep):
                sel = (graph == r).nonzero().squeeze(-1)
                if sel.numel():
                    k = sel[dist[sel].argmin()]
                    dmin[r] = float(dist[k])
                    pair[r] = (
                        int(edge_index[1, k]) - ptr[r],
                        int(edge_index[0, k]) - ptr[r],
                    )
    return {
        "temperature_K": temp,
        "kinetic_energy_eV": ke,
        "momentum_amu_A_per_ps": mom,
        "min_distance_A": dmin,
        "_finite": finite,
        "_pair": pair,
    }


class RolloutUnstable(RuntimeError):
    """Raised by a rollout with ``on_unstable="raise"``; ``step``, ``replica``, ``cause`` and
    the partial ``result`` are attributes."""

    def __init__(self, message: str, step: int, replica: int, cause: str, result=None):
        super().__init__(message)
        self.step, self.replica, self.cause, self.result = step, replica, cause, result


class RolloutStopped(RuntimeWarning):
    """Warned by a rollout the guard stopped (``on_unstable="stop"``); the command line, which
    prints the reason itself, silences it so that the message appears once."""


class NoveltyWarning(UserWarning):
    """Warned once by a rollout whose atoms leave the model's training states
    (:mod:`equignnmd.novelty`): the message names the replica, the atoms and where they are."""
