"""The state of R periodic systems advanced together, and how a run's first state is made.

:class:`RolloutState` holds tensors only (metal units, float64 on one device); every stage of
a step takes one and returns a new one (:mod:`equignnmd.rollout.stages`). :func:`init_state`
makes the first: structures × replicas, one random stream per replica, Maxwell–Boltzmann
velocities where a structure has none, net momentum removed.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
import torch

from .. import physics
from ..graph import check_box, edge_vectors, neighbour_list, wrap_positions
from ..io import read_structure
from ..thermostats import maxwell_boltzmann
from ..units import velocity_from_ase, velocity_to_ase

__all__ = ["InitRecord", "RolloutState", "check_structures", "init_state", "make_generators"]


@dataclass(frozen=True)
class InitRecord:
    """How a run's first velocities were set: the ``seed`` of the replicas' streams and the
    replicas given Maxwell–Boltzmann velocities (``maxwell_boltzmann_replicas``)."""

    seed: int | None
    maxwell_boltzmann_replicas: list[int]


@dataclass
class RolloutState:
    """R periodic systems stepped together (float64 on the model's device; metal units).

    ``positions`` (N, 3) wrapped into the cell, ``unwrapped`` (N, 3) the running sum of
    displacements (for MSD etc.; unwrapped − positions is a whole lattice vector), ``velocities``
    (N, 3) Å/ps, ``cell`` (R, 3, 3) rows are lattice vectors, ``species`` (N,) atomic numbers,
    ``masses`` (N,) amu, ``batch`` (N,) replica index of every atom (sorted), ``step`` strides
    taken so far.

    ``generators``: one ``torch.Generator`` per replica (thermostat noise), or ``None`` (torch's
    global stream). The streams advance as stages draw from them, and a state shares them with
    the states stepped from it.

    ``info``: small per-run records by name, each a frozen record: a stage's own state under
    the stage's name (``info["model"].temperature_K``, the model's temperature label, (R,) K;
    :mod:`equignnmd.rollout.stages`) and how the first velocities were set (``info["init"]``,
    an :class:`InitRecord`). A stage returns a new ``info`` through :meth:`with_info`; it never
    changes the old one in place.
    """

    positions: torch.Tensor
    unwrapped: torch.Tensor
    velocities: torch.Tensor
    cell: torch.Tensor
    species: torch.Tensor
    masses: torch.Tensor
    batch: torch.Tensor
    step: int = 0
    generators: list[torch.Generator] | None = None
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

    _TENSORS: ClassVar[tuple[str, ...]] = (
        "positions",
        "unwrapped",
        "velocities",
        "cell",
        "species",
        "masses",
        "batch",
    )

    @property
    def n_replicas(self) -> int:
        return int(self.cell.shape[0])

    @property
    def ptr(self) -> torch.Tensor:
        counts = torch.bincount(self.batch, minlength=self.n_replicas)
        return torch.cat([counts.new_zeros(1), counts.cumsum(0)])

    def replica_slice(self, r: int) -> slice:
        ptr = self.ptr.tolist()
        return slice(ptr[r], ptr[r + 1])

    def to(self, device) -> RolloutState:
        """The same state on ``device`` (generators and ``info`` are kept as they are)."""
        return replace(self, **{k: getattr(self, k).to(device) for k in self._TENSORS})

    def with_info(self, key: str, record: Any) -> RolloutState:
        """A copy whose ``info[key]`` is ``record`` (the old ``info`` is untouched)."""
        return replace(self, info={**self.info, key: record})

    def select(self, replicas: Sequence[int]) -> RolloutState:
        """A new state of copies of ``replicas`` (in that order, repeats allowed), step 0,
        no generators, empty ``info``."""
        ptr = self.ptr.tolist()
        device = self.positions.device
        atoms = torch.cat(
            [torch.arange(ptr[r], ptr[r + 1], device=device) for r in replicas]
        )  # one range per replica, not per atom
        counts = torch.as_tensor([ptr[r + 1] - ptr[r] for r in replicas], device=device)
        return RolloutState(
            positions=self.positions[atoms],
            unwrapped=self.unwrapped[atoms],
            velocities=self.velocities[atoms],
            cell=self.cell[list(replicas)],
            species=self.species[atoms],
            masses=self.masses[atoms],
            batch=torch.arange(len(replicas), device=device).repeat_interleave(counts),
        )

    @classmethod
    def from_arrays(
        cls,
        positions: Sequence,
        velocities: Sequence,
        cells: Sequence,
        species: Sequence,
        masses: Sequence,
        device=None,
        step: int = 0,
    ) -> RolloutState:
        """From per-replica arrays (metal units); ``positions`` need not be wrapped."""
        f64 = dict(dtype=torch.float64, device=device)
        pos = [torch.as_tensor(np.asarray(p, float), **f64).reshape(-1, 3) for p in positions]
        unwrapped = torch.cat(pos)
        cell = torch.stack([torch.as_tensor(np.asarray(c, float), **f64) for c in cells])
        counts = torch.as_tensor([p.shape[0] for p in pos], device=device)
        batch = torch.arange(len(pos), device=device).repeat_interleave(counts)
        return cls(
            positions=wrap_positions(unwrapped, cell, batch),
            unwrapped=unwrapped,
            velocities=torch.cat(
                [torch.as_tensor(np.asarray(v, float), **f64).reshape(-1, 3) for v in velocities]
            ),
            cell=cell,
            species=torch.cat(
                [torch.as_tensor(np.asarray(z), dtype=torch.long, device=device) for z in species]
            ),
            masses=torch.cat([torch.as_tensor(np.asarray(m, float), **f64) for m in masses]),
            batch=batch,
            step=step,
        )

    @classmethod
    def from_atoms(cls, atoms_list, device=None) -> RolloutState:
        """From ``ase.Atoms`` (velocities converted from ASE units; zeros if none are set)."""
        return cls.from_arrays(
            [a.positions for a in atoms_list],
            [velocity_from_ase(a.get_velocities()) for a in atoms_list],
            [a.cell.array for a in atoms_list],
            [a.numbers for a in atoms_list],
            [a.get_masses() for a in atoms_list],
            device=device,
        )

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the run exactly (a restart file's ``state``): the
        tensors, ``step``, the generators' states (so the thermostat draws continue the same
        streams) and ``info`` (the stages' own state, the Verlet list included)."""
        return {
            **{k: getattr(self, k) for k in self._TENSORS},
            "step": self.step,
            "generators": None
            if self.generators is None
            else [(str(g.device), g.get_state()) for g in self.generators],
            "info": self.info,
        }

    @classmethod
    def from_state_dict(cls, values: dict[str, Any], device=None) -> RolloutState:
        """The state :meth:`state_dict` saved, on ``device`` (default: where it was)."""
        gens = None
        if values["generators"] is not None:
            gens = []
            for where, rng_state in values["generators"]:
                g = torch.Generator(device=device if device is not None else where)
                g.set_state(rng_state.cpu())
                gens.append(g)
        state = cls(
            **{k: values[k] for k in cls._TENSORS},
            step=int(values["step"]),
            generators=gens,
            info=values["info"],
        )
        return state.to(device) if device is not None else state

    def to_atoms(self, r: int = 0, unwrapped: bool = False):
        """Replica ``r`` as ``ase.Atoms`` (ASE velocity units; ``info['step']``)."""
        import ase

        s = self.replica_slice(r)
        pos = (self.unwrapped if unwrapped else self.positions)[s]
        atoms = ase.Atoms(
            numbers=self.species[s].cpu().numpy(),
            positions=pos.detach().cpu().numpy(),
            cell=self.cell[r].cpu().numpy(),
            pbc=True,
        )
        atoms.set_masses(self.masses[s].cpu().numpy())
        atoms.set_velocities(velocity_to_ase(self.velocities[s].detach().cpu().numpy()))
        atoms.info["step"] = self.step
        return atoms


def make_generators(n: int, seed: int | None, device=None) -> list[torch.Generator]:
    """One generator per replica, replica r seeded with ``seed + r`` (random seed if None)."""
    if seed is None:
        seed = int(torch.randint(0, 2**31 - 1, ()).item())
    gens = []
    for r in range(n):
        g = torch.Generator(device=device if device is not None else "cpu")
        g.manual_seed(int(seed) + r)
        gens.append(g)
    return gens


def _read(structures, device, given: Sequence[str] | None = None) -> tuple[RolloutState, list[str]]:
    """Structures as one state (replica k = structure k) and how errors name each (by default;
    ``given`` names are used for the errors raised here)."""
    import ase

    if isinstance(structures, RolloutState):
        state = replace(structures, step=0, generators=None, info={})
        state = state.to(device) if device is not None else state
        return state, [f"structure {k}" for k in range(state.n_replicas)]
    if isinstance(structures, (str, os.PathLike, ase.Atoms)):
        structures = [structures]
    atoms_list, names = [], []
    for k, s in enumerate(structures):
        atoms_list.append(read_structure(s))
        named = isinstance(s, (str, os.PathLike))
        names.append(f"structure {k}" + (f" (file {os.fspath(s)})" if named else ""))
    if not atoms_list:
        raise ValueError("no structures given")
    for atoms, name in zip(atoms_list, given or names):  # wrapping into the cell needs one
        _check_cell(atoms.cell.array, name)
    return RolloutState.from_atoms(atoms_list, device=device), names


def _symbols(numbers) -> str:
    from ase.data import chemical_symbols

    return ", ".join(
        f"{chemical_symbols[z] if 0 < z < len(chemical_symbols) else '?'} ({z})" for z in numbers
    )


def _check_cell(cell: np.ndarray, name: str) -> None:
    """A finite 3-D box, or a ``ValueError`` naming ``name`` and the field ``cell``."""
    cell = np.asarray(cell, float)
    if not np.all(np.isfinite(cell)):
        raise ValueError(
            f"{name}: field 'cell' has NaN or inf ({cell.tolist()}); expected a finite periodic "
            "box, Å"
        )
    if abs(float(np.linalg.det(cell))) < 1e-9:
        raise ValueError(
            f"{name}: field 'cell' is {cell.tolist()} (zero volume); expected a 3-D periodic box "
            '(for extxyz: a Lattice="..." entry in the comment line)'
        )


def check_structures(
    state: RolloutState,
    names: Sequence[str],
    cutoff_A: float | None = None,
    species: Sequence[int] | None = None,
    min_distance_A: float | None = None,
) -> None:
    """Refuse structures a model cannot start from, before anything runs or is written.

    Checked per replica, vectorised over atoms: finite ``positions`` (Å), ``velocities``
    (Å/ps) and ``cell``; a 3-D ``cell`` (non-zero volume); ``masses`` finite and > 0;
    ``species`` among ``species`` (the atomic numbers the model was trained on,
    ``model.stats.species``) when given; every perpendicular width of the cell ≥ 2 ×
    ``cutoff_A`` (the model's cutoff, :func:`~equignnmd.graph.check_box`) when given; no
    pair of atoms (periodic images included) closer than ``min_distance_A`` (Å, the stability
    guard's pair threshold, ``RolloutConfig.min_distance_A``) when given and > 0, found with
    the package's neighbour list (:func:`~equignnmd.graph.neighbour_list`, vesin).

    Raises:
        ValueError: naming the structure (``names[r]``, e.g. its file), the field and what was
            expected.
    """
    ptr = state.ptr.tolist()
    for name, value, what in (
        ("positions", state.unwrapped, "finite positions, Å"),
        ("velocities", state.velocities, "finite velocities (ASE units in the file; Å/ps inside)"),
        ("masses", state.masses, "finite masses > 0, amu"),
    ):
        flat = value.reshape(value.shape[0], -1)
        bad = ~torch.isfinite(flat).all(dim=1)
        if name == "masses":
            bad |= ~(flat > 0).all(dim=1)
        if bool(bad.any()):
            first = int(torch.nonzero(bad)[0, 0])
            r = int(state.batch[first])
            count = int(bad[ptr[r] : ptr[r + 1]].sum())
            shown = value[first].detach().cpu().reshape(-1).tolist()
            raise ValueError(
                f"{names[r]}: field '{name}' has NaN, inf or invalid values at {count} atom(s), "
                f"the first atom index {first - ptr[r]} ({shown}); expected {what}"
            )
    cells = state.cell.detach().cpu().numpy()
    for r in range(state.n_replicas):  # one 3 × 3 check per replica
        _check_cell(cells[r], names[r])
    if species is not None:
        known = torch.as_tensor([int(z) for z in species], dtype=state.species.dtype)
        unknown = ~torch.isin(state.species, known.to(state.species.device))
        if bool(unknown.any()):
            r = int(state.batch[int(torch.nonzero(unknown)[0, 0])])
            found = torch.unique(state.species[ptr[r] : ptr[r + 1]][unknown[ptr[r] : ptr[r + 1]]])
            raise ValueError(
                f"{names[r]}: field 'species' has {_symbols(found.tolist())}, which the model "
                f"was not trained on; expected only {_symbols(known.tolist())} (the model's "
                "species, model.stats.species)"
            )
    if cutoff_A is not None:
        for r in range(state.n_replicas):
            check_box(cells[r], cutoff_A, where=names[r], cutoff_source="the model's cutoff")
    if min_distance_A:
        _check_pairs(state, names, float(min_distance_A))


def _check_pairs(state: RolloutState, names: Sequence[str], min_distance_A: float) -> None:
    """A ``ValueError`` naming the structure, the closest pair and its distance (Å) when two
    atoms of a replica are closer than ``min_distance_A``; one neighbour search per replica."""
    edge_index, shifts = neighbour_list(state.unwrapped, state.cell, min_distance_A, state.batch)
    if not edge_index.shape[1]:
        return
    dist = edge_vectors(state.unwrapped, state.cell, edge_index, shifts, state.batch).norm(dim=-1)
    close = dist < min_distance_A
    if not bool(close.any()):
        return
    graph = state.batch[edge_index[1]]
    r = int(graph[close].min())
    mine = close & (graph == r)
    k = int(torch.nonzero(mine)[dist[mine].argmin()])  # the closest pair of the first replica
    lo = int(state.ptr[r])
    i, j = sorted((int(edge_index[1, k]) - lo, int(edge_index[0, k]) - lo))
    pairs = int(mine.sum()) // 2  # a full list holds every pair twice
    raise ValueError(
        f"{names[r]}: field 'positions' has atoms {i} and {j} {float(dist[k]):.3f} Å apart "
        f"({pairs} pair(s) closer than {min_distance_A:g} Å); expected every pair of atoms, "
        f"periodic images included, at least min_distance_A = {min_distance_A:g} Å apart (the "
        "stability guard's pair threshold, --min-distance; the guard would stop the run at "
        "step 0)"
    )


def init_state(
    structures,
    temperature_K=None,
    *,
    replicas: int = 1,
    seed: int | None = 0,
    device=None,
    remove_momentum: bool = True,
    resample_velocities: bool = False,
    cutoff_A: float | None = None,
    names: Sequence[str] | None = None,
    species: Sequence[int] | None = None,
    min_distance_A: float | None = None,
) -> RolloutState:
    """The first state of a run.

    Args:
        structures: ``ase.Atoms``, a structure file (:func:`~equignnmd.io.read_structure`),
            a list of those, or a :class:`RolloutState` of metal-unit arrays
            (:meth:`RolloutState.from_arrays`). Each is repeated ``replicas`` times (replica
            index = structure × replicas + copy).
        temperature_K: K, scalar or one value per replica. Where a replica has no velocities
            (all zero), or with ``resample_velocities``, Maxwell–Boltzmann velocities at this
            temperature are drawn from the replica's stream; a ``ValueError`` naming the
            structure when it is missing or not > 0 there.
        seed: replica r draws from a generator seeded ``seed + r`` (random if ``None``).
        device: where the tensors live (the model's device).
        remove_momentum: remove every replica's net momentum (given velocities too).
        cutoff_A: if given, refuse a box thinner than 2 × cutoff (:func:`graph.check_box`).
        names: how errors name each structure (default "structure k" and its file).
        species: if given, the atomic numbers allowed (the model's ``stats.species``).
        min_distance_A: if given, refuse a pair of atoms closer than this, Å (the guard's).

    Every structure is checked first (:func:`check_structures`: finite positions, velocities
    and cell, masses > 0, known species, box ≥ 2 × cutoff, no pair closer than
    ``min_distance_A``); a ``ValueError`` names the structure, the field and what was
    expected.

    ``info["init"]`` is an :class:`InitRecord` (the seed, the replicas drawn).
    """
    base, default_names = _read(structures, device, names)
    names = list(names) if names is not None else default_names
    copies = int(replicas)
    check_structures(base, names, cutoff_A=cutoff_A, species=species, min_distance_A=min_distance_A)
    order = [k for k in range(base.n_replicas) for _ in range(copies)]
    state = base.select(order) if copies != 1 else base
    names = [names[k] for k in order]
    n_rep = state.n_replicas
    generators = make_generators(n_rep, seed, device)

    set_point = None
    if temperature_K is not None:
        set_point = torch.as_tensor(temperature_K, dtype=torch.float64).reshape(-1)
        if set_point.numel() not in (1, n_rep):
            raise ValueError(
                f"temperature_K: expected 1 or {n_rep} values (one per replica), "
                f"got {set_point.numel()}"
            )
        set_point = set_point.expand(n_rep)
    vel = state.velocities.clone()
    drawn = []
    for r in range(n_rep):  # per-replica bookkeeping; the draws use each replica's stream
        s = state.replica_slice(r)
        given = not bool((vel[s] == 0).all())
        if given and not resample_velocities:
            continue
        if set_point is None or float(set_point[r]) <= 0:
            # From rest, an NVE run would label itself 0 K and switch its temperature guard
            # off: ask for a temperature instead of guessing.
            what = "is to be resampled" if given else "has no velocities"
            raise ValueError(
                f"{names[r]} {what}: give temperature_K to draw Maxwell–Boltzmann velocities"
                + ("" if set_point is None else f" (got {float(set_point[r]):g} K)")
                + " (on the command line: --temperature K)"
            )
        vel[s] = maxwell_boltzmann(state.masses[s], float(set_point[r]), generators[r])
        drawn.append(r)
    if remove_momentum:
        vel = physics.remove_net_momentum(vel, state.masses, state.batch)
    state = replace(state, velocities=vel, generators=generators)
    return state.with_info("init", InitRecord(seed, drawn))
