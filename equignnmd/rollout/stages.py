"""One rollout step: an ordered list of stages, each a function of the state (state in, out).

:func:`step` runs ``stages`` in order on a :class:`~equignnmd.rollout.state.RolloutState` and
counts the stride; it holds no loop logic of its own, so a new operation is a new stage, put
where it belongs in the list, before or after the model step. The standard list
(:func:`standard_stages`) is

    ModelStep → RemoveMomentum → Thermostat → RemoveMomentum

(momentum removal only with ``remove_momentum``, the thermostat only for NVT), as ASE's
``Bussi`` is ``scale_velocities()`` then ``super().step()``. With ``split`` the thermostat acts
in two half-strides around the deterministic part (O–model–O, as FlashMD and BAOAB do), and an
:class:`EnergyRescale` stage, when there is one, sits inside that deterministic part:

    Thermostat(½) → RemoveMomentum → ModelStep → RemoveMomentum → EnergyRescale
        → Thermostat(½) → RemoveMomentum A stage is an immutable object
with

* ``init(state) -> state``: once, on a run's first state (default: nothing); a stage that
  needs a small state of its own (a reference energy, a label held fixed) stores it here under
  its ``name`` in ``state.info``, as a frozen record (:class:`ModelRecord`,
  :class:`ThermostatRecord`, :class:`EnergyRecord`; :meth:`RolloutState.with_info`);
* ``__call__(model, state, dt_fs) -> state``: every stride.

Randomness comes from the replicas' own streams in ``state.generators``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import torch

from .. import physics
from ..graph import VerletList, wrap_positions
from ..thermostats import make_thermostat
from ..units import fs_to_ps
from .state import RolloutState

__all__ = [
    "ENERGY_THERMO",
    "EnergyRecord",
    "EnergyRescale",
    "ModelRecord",
    "NoveltyMonitor",
    "NoveltyRecord",
    "ModelStep",
    "RemoveMomentum",
    "Stage",
    "Thermostat",
    "ThermostatRecord",
    "add_thermostat_work",
    "finite_difference",
    "init_stages",
    "make_batch",
    "model_temperature",
    "energy_thermo",
    "standard_stages",
    "step",
    "thermostat_of",
    "thermostat_work",
]


@dataclass(frozen=True)
class ModelRecord:
    """:class:`ModelStep`'s state: the model's ``temperature_K`` label (R,) K, whether the last
    step's velocities were ``finite_difference`` s (disp / Δt), and the run's Verlet list
    (``neighbours``; None where the model searches itself)."""

    temperature_K: torch.Tensor
    finite_difference: bool = False
    neighbours: VerletList | None = None


@dataclass(frozen=True)
class ThermostatRecord:
    """:class:`Thermostat`'s state: the kinetic energy put in so far, ``work_eV`` (R,) eV
    (LAMMPS's ``ecouple``)."""

    work_eV: torch.Tensor


@dataclass(frozen=True)
class EnergyRecord:
    """:class:`EnergyRescale`'s state, all (R,): ``initial_eV`` (E₀), ``potential_eV`` (U of
    the current positions), ``total_eV`` (K + U after the stage), ``target_eV`` (E₀ + W),
    ``scale`` (α of the last stride), ``clamped`` (strides whose kinetic energy was clamped
    to 0, a count)."""

    initial_eV: torch.Tensor
    potential_eV: torch.Tensor
    total_eV: torch.Tensor
    target_eV: torch.Tensor
    scale: torch.Tensor
    clamped: torch.Tensor


@dataclass(frozen=True)
class NoveltyRecord:
    """:class:`NoveltyMonitor`'s state: ``fraction`` (R,) of each replica's atoms outside the
    model's training box, and ``outside`` (N,) bool, which atoms."""

    fraction: torch.Tensor
    outside: torch.Tensor


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
    temperature of the first state, held for the whole run (:class:`ModelRecord`,
    ``info["model"]``).

    Neighbour lists: for a model that reads a given list (``model.reads_given_edges``), the
    step keeps a :class:`~equignnmd.graph.VerletList` at ``model.cutoff + skin_A`` on the
    unwrapped positions across strides (``ModelRecord.neighbours``; the list rebuilds itself
    when an atom has moved more than ``skin_A / 2``, a new one is made when the cell or the
    atoms change: :meth:`VerletList.reuse`) and hands the model the pairs within its cutoff
    (:meth:`VerletList.wrapped_edges`): exactly the pairs of a fresh list, found without a
    neighbour search on most strides. ``skin_A = 0`` searches every stride.
    """

    set_point_K: Any = None
    skin_A: float = 1.0
    name: ClassVar[str] = "model"

    def init(self, state: RolloutState) -> RolloutState:
        label = physics.temperature_label(
            state.velocities, state.masses, state.batch, self.set_point_K
        )
        return state.with_info(self.name, ModelRecord(label))

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        record: ModelRecord = state.info[self.name]
        batch = make_batch(state, dt_fs, record.temperature_K, model.dtype)
        if self.skin_A > 0 and getattr(model, "reads_given_edges", False):
            nl = VerletList.reuse(
                record.neighbours, model.cutoff, self.skin_A, state.unwrapped, state.cell,
                state.batch,
            )  # fmt: skip
            batch.edge_index, shifts = nl.wrapped_edges(state.unwrapped, state.positions)
            batch.shifts = shifts.to(model.dtype)
            batch.cutoff = float(model.cutoff)
            record = replace(record, neighbours=nl)
        batch = batch.to(model.device)
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
        return new.with_info(self.name, replace(record, finite_difference=fd))


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
    :func:`equignnmd.thermostats.make_thermostat`), drawing from the replicas' streams.

    Every call adds the (internal) kinetic energy it put in to ``info["thermostat"]["work_eV"]``
    ((R,) eV, summed over the run): the total energy of an NVT run changes by exactly that much
    (LAMMPS calls it ``ecouple``), which is what :class:`EnergyRescale` conserves against.
    """

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
        fraction: float = 1.0,
    ) -> Thermostat | None:
        """``kind`` none | csvr | langevin; None for NVE. The update covers ``fraction`` of
        the stride ``dt_fs`` (½ for the halves of a split step). τ (``tau_fs``, default 100
        whole strides) is CSVR's time constant and Langevin's damping time: its friction is
        1/τ unless ``friction_per_ps`` is given (as LAMMPS' ``fix langevin`` damp and the
        reference runs of ``fidelity`` and ``evaluate`` take τ)."""
        if kind is not None and kind.lower() not in ("none", "nve") and dt_fs is not None:
            if tau_fs is None:
                tau_fs = 100.0 * dt_fs
            if friction_per_ps is None:
                friction_per_ps = 1.0 / fs_to_ps(tau_fs)
        dt = None if dt_fs is None else dt_fs * fraction
        update = make_thermostat(kind, target_K, dt, tau_fs, friction_per_ps)
        return None if update is None else cls(update)

    def init(self, state: RolloutState) -> RolloutState:
        zero = torch.zeros(state.n_replicas, dtype=torch.float64, device=state.positions.device)
        return state.with_info(self.name, ThermostatRecord(zero))

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        vel = self.update(state.velocities, state.masses, state.batch, state.generators)
        before = physics.internal_kinetic_energy(state.velocities, state.masses, state.batch)
        after = physics.internal_kinetic_energy(vel, state.masses, state.batch)
        return add_thermostat_work(replace(state, velocities=vel), after - before)


def thermostat_work(state: RolloutState) -> torch.Tensor:
    """(R,) eV: the kinetic energy the thermostat stages have put in so far (0 without)."""
    record = state.info.get(Thermostat.name)
    if record is None:
        return torch.zeros(state.n_replicas, dtype=torch.float64, device=state.positions.device)
    return record.work_eV


def add_thermostat_work(state: RolloutState, work_eV: torch.Tensor) -> RolloutState:
    """``state`` with (R,) eV more thermostat work: what a thermostat stage, or anything else
    that changes the velocities outside the model (a LAMMPS thermostat), put in."""
    return state.with_info(Thermostat.name, ThermostatRecord(thermostat_work(state) + work_eV))


@dataclass(frozen=True)
class EnergyRescale(Stage):
    """Conserve the total energy: after the model step, scale every replica's internal
    velocities by one factor α so that K + U = E₀ + W (FlashMD's rescaling).

    K is the kinetic energy of the motion relative to the centre of mass (a uniform
    translation carries no physics and the rollout removes it), U the potential energy of
    the new positions from ``source`` (an energy source of :mod:`equignnmd.potential`), E₀ the
    total energy of the first state and W the thermostat's work so far
    (:func:`thermostat_work`; 0 in NVE). The centre-of-mass motion and the direction of
    every velocity are kept; only the kinetic energy relative to the centre of mass changes.
    Where the kinetic energy needed, E₀ + W − U, is negative (the model put the atoms higher
    than the total energy allows), it is clamped to zero, i.e. the internal motion stops,
    and ``info["energy"]["clamped"]`` counts it per replica.

    With ``rescale=False`` the stage only measures (U, K + U), every stride.

    ``info["energy"]``: an :class:`EnergyRecord`.
    """

    source: Callable
    rescale: bool = True
    name: ClassVar[str] = "energy"

    @property
    def description(self) -> str:
        what = "rescale to conserve" if self.rescale else "measure"
        return f"{what} K + U, U from {getattr(self.source, 'description', 'a callable')}"

    def potential(self, state: RolloutState) -> torch.Tensor:
        return self.source(state.positions, state.cell, state.species, state.batch).to(
            dtype=torch.float64, device=state.positions.device
        )

    def init(self, state: RolloutState) -> RolloutState:
        u = self.potential(state)
        total = physics.internal_kinetic_energy(state.velocities, state.masses, state.batch) + u
        n = state.n_replicas
        return state.with_info(
            self.name,
            EnergyRecord(
                initial_eV=total,
                potential_eV=u,
                total_eV=total,
                target_eV=total,
                scale=torch.ones(n, dtype=torch.float64, device=u.device),
                clamped=torch.zeros(n, dtype=torch.long, device=u.device),
            ),
        )

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        record: EnergyRecord = state.info[self.name]
        u = self.potential(state)
        target = record.initial_eV + thermostat_work(state)
        vel, clamped = state.velocities, record.clamped
        alpha = torch.ones_like(u)
        if self.rescale:
            k_int = physics.internal_kinetic_energy(vel, state.masses, state.batch)
            need = target - u
            low = need < 0
            clamped = clamped + low.long()
            need = need.clamp_min(0.0)
            alpha = torch.where(
                k_int > 0, torch.sqrt(need / k_int.clamp_min(1e-300)), torch.ones_like(need)
            )
            com = vel - physics.remove_net_momentum(vel, state.masses, state.batch)
            vel = com + alpha[state.batch].unsqueeze(-1) * (vel - com)
        total = physics.internal_kinetic_energy(vel, state.masses, state.batch) + u
        new = replace(state, velocities=vel)
        return new.with_info(
            self.name,
            replace(
                record, potential_eV=u, total_eV=total, target_eV=target, scale=alpha,
                clamped=clamped,
            ),
        )  # fmt: skip


@dataclass(frozen=True)
class NoveltyMonitor(Stage):
    """Measure, do not change: the atoms whose local densities leave the model's training box
    (:class:`equignnmd.novelty.NoveltyBox`), every stride, into ``info["novelty"]`` (a
    :class:`NoveltyRecord`). It goes last, on the positions the stride ends with."""

    box: Any
    name: ClassVar[str] = "novelty"

    def measure(self, state: RolloutState) -> RolloutState:
        out = self.box.outside(state.positions, state.cell, state.batch)
        counts = torch.zeros(state.n_replicas, dtype=torch.float64, device=out.device)
        counts = counts.index_add_(0, state.batch, out.to(torch.float64))
        sizes = torch.bincount(state.batch, minlength=state.n_replicas).to(torch.float64)
        return state.with_info(self.name, NoveltyRecord(counts / sizes, out))

    def init(self, state: RolloutState) -> RolloutState:
        return self.measure(state)

    def __call__(self, model, state: RolloutState, dt_fs: float) -> RolloutState:
        return self.measure(state)


ENERGY_THERMO = ("potential_energy_eV", "total_energy_eV", "thermostat_work_eV", "energy_clamped")
"""The thermo fields of a run with an :class:`EnergyRescale` stage (per replica)."""


def energy_thermo(state: RolloutState) -> dict:
    """:data:`ENERGY_THERMO` of ``state`` as (R,) NumPy arrays, or {} without an energy stage.

    ``total_energy_eV`` is K + U of the state as it leaves the step (after any thermostat
    half-step that follows the energy stage), so that total − thermostat work is the
    conserved quantity of an NVT run."""
    record = state.info.get(EnergyRescale.name)
    if record is None:
        return {}
    # U is that of the current positions (stages after this one change velocities only)
    k = physics.internal_kinetic_energy(state.velocities, state.masses, state.batch)
    return {
        "potential_energy_eV": record.potential_eV.cpu().numpy().copy(),
        "total_energy_eV": (k + record.potential_eV).cpu().numpy(),
        "thermostat_work_eV": thermostat_work(state).cpu().numpy().copy(),
        "energy_clamped": record.clamped.cpu().numpy().copy(),
    }


def thermostat_of(stages: Sequence[Stage]) -> Thermostat | None:
    """The first :class:`Thermostat` among ``stages`` (None for NVE)."""
    return next((s for s in stages if isinstance(s, Thermostat)), None)


def standard_stages(
    thermostat: Thermostat | None = None,
    remove_momentum: bool = True,
    set_point_K=None,
    energy: EnergyRescale | None = None,
    split: bool = False,
    skin_A: float = 1.0,
    novelty: NoveltyMonitor | None = None,
) -> list[Stage]:
    """The stages of a stride (module doc).

    ``set_point_K`` is the model's temperature label where there is a thermostat (None for
    NVE: the first state's kinetic temperature). Momentum is removed again after a thermostat
    whose noise carries momentum (Langevin). ``energy`` is put right after the model step.
    With ``split``, ``thermostat`` must cover half a stride (``Thermostat.make(...,
    fraction=0.5)``) and acts before and after the deterministic part. ``skin_A``: the
    model step's neighbour-list skin (:class:`ModelStep`), Å. ``novelty`` goes last.
    """

    def thermo() -> list[Stage]:
        if thermostat is None:
            return []
        return [thermostat, RemoveMomentum()] if remove_momentum else [thermostat]

    stages: list[Stage] = thermo() if split else []
    stages.append(ModelStep(set_point_K=set_point_K, skin_A=skin_A))
    if remove_momentum:
        stages.append(RemoveMomentum())
    if energy is not None:
        stages.append(energy)
    stages += thermo()
    if novelty is not None:
        stages.append(novelty)
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
        return state.info[ModelStep.name].temperature_K
    except KeyError:
        raise ValueError(
            "this state has no temperature label: run init_stages(stages, state) on a run's "
            "first state before stepping it"
        ) from None


def finite_difference(state: RolloutState) -> bool:
    """Whether the last model step's velocities were finite differences disp / Δt."""
    record = state.info.get(ModelStep.name)
    return bool(record is not None and record.finite_difference)
