"""One rollout step: an ordered list of stages, each a function of the state (state in, out).

:func:`step` runs ``stages`` in order on a :class:`~equignnmd.rollout.state.RolloutState` and
counts the stride; it holds no loop logic of its own, so a new operation is a new stage, put
where it belongs in the list, before or after the model step. The standard list
(:func:`standard_stages`) is

    ModelStep → RemoveMomentum → Thermostat → RemoveMomentum

(momentum removal only with ``remove_momentum``, the thermostat only for NVT), as ASE's
``Bussi`` is ``scale_velocities()`` then ``super().step()``. A stage is an immutable object
with

* ``init(state) -> state``: once, on a run's first state (default: nothing); a stage that
  needs a small state of its own (a reference energy, a label held fixed) stores it here under
  its ``name`` in ``state.info`` (:meth:`RolloutState.with_info`);
* ``__call__(model, state, dt_fs) -> state``: every stride.

Randomness comes from the replicas' own streams in ``state.generators``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from .. import physics
from ..graph import wrap_positions
from ..thermostats import make_thermostat
from ..units import fs_to_ps
from .state import RolloutState

__all__ = [
    "ModelStep",
    "RemoveMomentum",
    "Stage",
    "Thermostat",
    "advance",
    "finite_difference",
    "init_stages",
    "make_batch",
    "model_temperature",
    "standard_stages",
    "step",
    "thermostat_of",
]


class Stage:
    """Base of the stages of a step (module doc). Subclasses set ``name`` and ``__call__``."""

    name: ClassVar[str] = "stage"

    def init(self, state: RolloutState) -> RolloutState:
        return state

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        raise NotImplementedError


def make_batch(state: RolloutState, dt_fs: float, temperature_K, dtype: torch.dtype):
    """The PyG batch a model reads (fields of :mod:`equignnmd.models.base`), in ``dtype``."""
    from torch_geometric.data import Batch

    n_rep = state.n_replicas
    device = state.positions.device
    temp = torch.as_tensor(temperature_K, dtype=dtype, device=device).reshape(-1)
    return Batch(
        pos=state.positions.to(dtype),
        vel=state.velocities.to(dtype),
        species=state.species,
        mass=state.masses.to(dtype),
        cell=state.cell.to(dtype),
        dt_fs=torch.full((n_rep,), float(dt_fs), dtype=dtype, device=device),
        temperature_K=temp.expand(n_rep).clone() if temp.numel() == 1 else temp,
        batch=state.batch,
        ptr=state.ptr,
    )


@dataclass(frozen=True)
class ModelStep(Stage):
    """The model's stride: positions += displacement (wrapped; the unwrapped copy keeps the
    sum), velocities = the predicted ones, or displacement / Δt for a position-only model
    (finite differences, flagged in ``info["model"]["finite_difference"]``).

    ``init`` fixes the model's temperature label, :func:`equignnmd.physics.temperature_label`:
    ``set_point_K`` (scalar or (R,), K) where there is a thermostat, else the kinetic
    temperature of the first state, held for the whole run (``info["model"]["temperature_K"]``).
    """

    set_point_K: Any = None
    name: ClassVar[str] = "model"

    def init(self, state: RolloutState) -> RolloutState:
        label = physics.temperature_label(
            state.velocities, state.masses, state.batch, self.set_point_K
        )
        return state.with_info(self.name, temperature_K=label, finite_difference=False)

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        label = model_temperature(state)
        batch = make_batch(state, dt_fs, label, model.dtype).to(model.device)
        pred = model(model.prepare(batch))
        device = state.positions.device
        disp = pred.displacement.to(device=device, dtype=torch.float64)
        fd = pred.velocity is None
        if fd:
            vel = disp / fs_to_ps(float(dt_fs))
        else:
            vel = pred.velocity.to(device=device, dtype=torch.float64)
        new = replace(
            state,
            positions=wrap_positions(state.positions + disp, state.cell, state.batch),
            unwrapped=state.unwrapped + disp,
            velocities=vel,
        )
        return new.with_info(self.name, finite_difference=fd)


@dataclass(frozen=True)
class RemoveMomentum(Stage):
    """Subtract every replica's centre-of-mass velocity."""

    name: ClassVar[str] = "remove_momentum"

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        vel = physics.remove_net_momentum(state.velocities, state.masses, state.batch)
        return replace(state, velocities=vel)


@dataclass(frozen=True)
class Thermostat(Stage):
    """A velocity update ``update(vel, masses, batch, generators) -> vel`` (one of
    :func:`equignnmd.thermostats.make_thermostat`), drawing from the replicas' streams."""

    update: Callable
    name: ClassVar[str] = "thermostat"

    @property
    def description(self) -> str:
        return getattr(self.update, "description", "thermostat")

    @classmethod
    def make(
        cls,
        kind: str | None,
        target_K=None,
        dt_fs: float | None = None,
        tau_fs: float | None = None,
        friction_per_ps: float | None = None,
    ) -> Thermostat | None:
        """``kind`` none | csvr | langevin (defaults of :func:`make_thermostat`); None for NVE."""
        update = make_thermostat(kind, target_K, dt_fs, tau_fs, friction_per_ps)
        return None if update is None else cls(update)

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        vel = self.update(state.velocities, state.masses, state.batch, state.generators)
        return replace(state, velocities=vel)


def thermostat_of(stages: Sequence[Stage]) -> Thermostat | None:
    """The first :class:`Thermostat` among ``stages`` (None for NVE)."""
    return next((s for s in stages if isinstance(s, Thermostat)), None)


def standard_stages(
    thermostat: Thermostat | None = None,
    remove_momentum: bool = True,
    set_point_K=None,
) -> list[Stage]:
    """ModelStep(set_point_K) → [RemoveMomentum] → [thermostat → [RemoveMomentum]].

    ``set_point_K`` is the model's temperature label where there is a thermostat (None for
    NVE: the first state's kinetic temperature). Momentum is removed again after a thermostat
    whose noise carries momentum (Langevin).
    """
    stages: list[Stage] = [ModelStep(set_point_K=set_point_K)]
    if remove_momentum:
        stages.append(RemoveMomentum())
    if thermostat is not None:
        stages.append(thermostat)
        if remove_momentum:
            stages.append(RemoveMomentum())
    return stages


def init_stages(stages: Sequence[Stage], state: RolloutState) -> RolloutState:
    """Every stage's ``init`` in order, on a run's first state."""
    for stage in stages:
        state = stage.init(state)
    return state


@torch.inference_mode()
def step(model, state: RolloutState, dt_fs: float, stages: Sequence[Stage]) -> RolloutState:
    """One stride Δt = ``dt_fs`` for every replica: ``stages`` in order, then ``step + 1``."""
    for stage in stages:
        state = stage(model, state, dt_fs)
    return replace(state, step=state.step + 1)


def model_temperature(state: RolloutState) -> torch.Tensor:
    """(R,) K: the temperature label :class:`ModelStep` gives the model (set by its init)."""
    try:
        return state.info[ModelStep.name]["temperature_K"]
    except KeyError:
        raise ValueError(
            "this state has no temperature label: run init_stages(stages, state) on a run's "
            "first state before stepping it"
        ) from None


def finite_difference(state: RolloutState) -> bool:
    """Whether the last model step's velocities were finite differences disp / Δt."""
    return bool(state.info.get(ModelStep.name, {}).get("finite_difference", False))


def advance(
    model,
    state: RolloutState,
    dt_fs: float,
    temperature_K,
    thermostat: Callable | None = None,
    generator=None,
    remove_momentum: bool = True,
) -> tuple[RolloutState, bool]:
    """One stride with the standard stages; returns ``(new_state, finite_difference)``.

    The older one-call form of :func:`step` (benchmarks use it): ``temperature_K`` (scalar or
    (R,)) is the model's label; ``thermostat`` a callable from
    :func:`equignnmd.thermostats.make_thermostat` or None (NVE); ``generator`` one
    ``torch.Generator`` or one per replica (default: ``state.generators``).
    """
    stages = standard_stages(
        Thermostat(thermostat) if thermostat is not None else None,
        remove_momentum,
        set_point_K=temperature_K,
    )
    if generator is not None:
        state = replace(state, generators=generator)
    new = step(model, init_stages(stages, state), dt_fs, stages)
    return new, finite_difference(new)
