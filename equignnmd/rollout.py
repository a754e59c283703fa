"""Autoregressive rollouts: a surrogate model advances R replicas together, one stride per call.

One step (:func:`advance`, under ``torch.inference_mode()``):

1. the state becomes a PyG batch (:func:`make_batch`; ``model.prepare`` fills descriptors for
   models that need them; the models build their own neighbour lists);
2. the model predicts each atom's displacement over the stride Δt and its new velocity;
   positions += displacement (wrapped back into the cell; the unwrapped copy keeps the sum);
   velocities = predicted velocities, or displacement / Δt for a position-only model (finite
   differences, recorded in the result and the run metadata);
3. net momentum removed (if ``remove_momentum``), thermostat (none | csvr | langevin), net
   momentum removed again.

Ensembles: NVE (``thermostat="none"``) feeds the model each replica's initial kinetic
temperature as its temperature label; NVT (``"csvr"``, τ = 100 × stride by default, or
``"langevin"``) feeds the set point. Structures without velocities (all zero) start from
Maxwell–Boltzmann velocities at ``temperature_K`` with zero net momentum; without a positive
``temperature_K`` they are refused (``ValueError``), as in :class:`~equignnmd.ase_md.SurrogateMD`.

Replica r uses its own random stream seeded with ``seed + r`` (initial velocities and thermostat
noise), so a replica follows the same trajectory in a batch as when run alone with that seed.

Stability guard after every step, per replica: non-finite positions or velocities; a pair closer
than ``min_distance_A``; kinetic temperature above ``max_temperature_factor`` × the reference
(set point, or initial temperature for NVE) or, when ``min_temperature_factor`` is set, below
that fraction of it (a model that drains the kinetic energy freezes the system). The rollout
stops (or raises :class:`RolloutUnstable` with ``on_unstable="raise"``) with a message naming
the step, replica and cause; files written so far stay readable (every frame and thermo row is
flushed).

Outputs in ``out_dir``: ``replica_000.extxyz`` (or ``.lammpstrj``) per replica every
``write_every`` steps (see :mod:`equignnmd.io`), ``thermo.csv`` every ``thermo_every`` steps
(step, time_ps, replica, temperature_K, kinetic_energy_eV, momentum_amu_A_per_ps,
min_distance_A, wall_s, ns_per_day), and ``rollout.json`` (settings and how the run ended).
Temperatures use 3N − 3 degrees of freedom when momentum is removed, 3N otherwise.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import thermostats as th
from .graph import check_box, edge_vectors, neighbour_list, wrap_positions
from .io import TRAJECTORY_SUFFIX, image_flags, open_writer, read_structure
from .units import velocity_from_ase, velocity_to_ase

__all__ = [
    "RolloutResult",
    "RolloutState",
    "RolloutUnstable",
    "Rollout",
    "StabilityGuard",
    "advance",
    "make_batch",
    "make_generators",
    "run_rollout",
    "thermo_snapshot",
]

THERMO_COLUMNS = (
    "step",
    "time_ps",
    "replica",
    "temperature_K",
    "kinetic_energy_eV",
    "momentum_amu_A_per_ps",
    "min_distance_A",
    "wall_s",
    "ns_per_day",
)


# ------------------------------------------------------------------------------------ state
@dataclass
class RolloutState:
    """R periodic systems stepped together (float64 on the model's device; metal units).

    ``positions`` (N, 3) wrapped into the cell, ``unwrapped`` (N, 3) the running sum of
    displacements (for MSD etc.; unwrapped − positions is a whole lattice vector), ``velocities``
    (N, 3) Å/ps, ``cell`` (R, 3, 3) rows are lattice vectors, ``species`` (N,) atomic numbers,
    ``masses`` (N,) amu, ``batch`` (N,) replica index of every atom (sorted), ``step`` strides
    taken so far.
    """

    positions: torch.Tensor
    unwrapped: torch.Tensor
    velocities: torch.Tensor
    cell: torch.Tensor
    species: torch.Tensor
    masses: torch.Tensor
    batch: torch.Tensor
    step: int = 0

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
        batch = torch.cat(
            [
                torch.full((p.shape[0],), r, dtype=torch.long, device=device)
                for r, p in enumerate(pos)
            ]
        )
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


def make_batch(state: RolloutState, dt_fs: float, temperature_K, dtype: torch.dtype):
    """The PyG batch a model reads (fields of :mod:`equignnmd.models.base`), in ``dtype``."""
    from torch_geometric.data import Batch

    n_rep = state.n_replicas
    temp = torch.as_tensor(temperature_K, dtype=dtype, device=state.positions.device).reshape(-1)
    return Batch(
        pos=state.positions.to(dtype),
        vel=state.velocities.to(dtype),
        species=state.species,
        mass=state.masses.to(dtype),
        cell=state.cell.to(dtype),
        dt_fs=torch.full((n_rep,), float(dt_fs), dtype=dtype, device=state.positions.device),
        temperature_K=temp.expand(n_rep).clone() if temp.numel() == 1 else temp,
        batch=state.batch,
        ptr=state.ptr,
    )


# ------------------------------------------------------------------------------------ one step
@torch.inference_mode()
def advance(
    model,
    state: RolloutState,
    dt_fs: float,
    temperature_K,
    thermostat: Callable | None = None,
    generator=None,
    remove_momentum: bool = True,
) -> tuple[RolloutState, bool]:
    """One stride for every replica; returns ``(new_state, finite_difference_velocities)``.

    ``temperature_K`` (scalar or (R,)) is the model's temperature label; ``thermostat`` a
    callable from :func:`equignnmd.thermostats.make_thermostat` (or None for NVE);
    ``generator`` one ``torch.Generator`` or one per replica.
    """
    batch = make_batch(state, dt_fs, temperature_K, model.dtype)
    batch = batch.to(model.device)
    batch = model.prepare(batch)
    pred = model(batch)
    device = state.positions.device
    disp = pred.displacement.to(device=device, dtype=torch.float64)
    finite_difference = pred.velocity is None
    if finite_difference:
        vel = disp / (float(dt_fs) / 1000.0)
    else:
        vel = pred.velocity.to(device=device, dtype=torch.float64)
    positions = wrap_positions(state.positions + disp, state.cell, state.batch)
    if remove_momentum:
        vel = th.remove_net_momentum(vel, state.masses, state.batch)
    if thermostat is not None:
        vel = thermostat(vel, state.masses, state.batch, generator)
        if remove_momentum:
            vel = th.remove_net_momentum(vel, state.masses, state.batch)
    new = replace(
        state,
        positions=positions,
        unwrapped=state.unwrapped + disp,
        velocities=vel,
        step=state.step + 1,
    )
    return new, finite_difference


# ------------------------------------------------------------------------------------ guard
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

    def check(self, state: RolloutState, dof=None):
        thermo = thermo_snapshot(state, dof=dof, probe_cutoff_A=self.probe_cutoff_A)
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


def thermo_snapshot(state: RolloutState, dof=None, probe_cutoff_A: float = 3.5) -> dict:
    """Per-replica NumPy arrays: temperature_K, kinetic_energy_eV, momentum_amu_A_per_ps,
    min_distance_A (within ``probe_cutoff_A``, else inf); also ``_finite`` and ``_pair``
    (closest pair, replica-local atom indices) for the guard."""
    n_rep = state.n_replicas
    vel, m, b = state.velocities, state.masses, state.batch
    temp = th.kinetic_temperature(vel, m, b, dof=dof).cpu().numpy()
    ke = th.kinetic_energy(vel, m, b).cpu().numpy()
    mom = th.net_momentum(vel, m, b).norm(dim=-1).cpu().numpy()
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


# ------------------------------------------------------------------------------------ result
@dataclass
class RolloutResult:
    """Per-step thermo arrays (rows: step 0 … last step; columns: replicas) and how it ended."""

    step: np.ndarray
    time_ps: np.ndarray
    temperature_K: np.ndarray
    kinetic_energy_eV: np.ndarray
    momentum_amu_A_per_ps: np.ndarray
    min_distance_A: np.ndarray
    wall_s: np.ndarray
    stopped_reason: str | None
    stopped_step: int | None = None
    stopped_replica: int | None = None
    finite_difference_velocities: bool = False
    final_state: RolloutState | None = None
    files: dict = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        return self.stopped_reason is None

    @property
    def steps_per_s(self) -> float:
        n = len(self.step) - 1
        return n / self.wall_s[-1] if n > 0 and self.wall_s[-1] > 0 else float("nan")

    @property
    def ns_per_day(self) -> float:
        """Simulated ns per day of wall time, per replica (R replicas advance together)."""
        if len(self.step) < 2 or self.wall_s[-1] <= 0:
            return float("nan")
        return (self.time_ps[-1] - self.time_ps[0]) * 1e-3 / self.wall_s[-1] * 86400.0


# ------------------------------------------------------------------------------------ engine
def _as_list(structures) -> list:
    import ase

    if isinstance(structures, (str, Path, ase.Atoms)):
        return [structures]
    return list(structures)


class Rollout:
    """An autoregressive rollout of ``model`` for one or several structures × ``replicas``.

    Args:
        model: a :class:`~equignnmd.models.base.SurrogateModel` (eval mode is set).
        structures: ``ase.Atoms``, a path (:func:`~equignnmd.io.read_structure`), or a list;
            each is repeated ``replicas`` times (replica index = structure × replicas + copy).
        dt_fs: stride, fs. temperature_K: set point (scalar or one per replica); for NVE only
            used to draw initial velocities for structures that have none (required, > 0 K,
            when a structure has none: a ``ValueError`` otherwise).
        thermostat: "none" (NVE) | "csvr" | "langevin"; tau_fs (csvr, default 100 × dt_fs);
            friction_per_ps (langevin, default 1000 / (100 × dt_fs)).
        seed: replica r draws from a generator seeded ``seed + r``.
        out_dir: where files go (None: nothing written); fmt "extxyz" | "lammps-dump";
            write_every (frames, 0 = never), thermo_every (CSV rows; default write_every or 1).
        observers: callables ``fn(state, thermo)`` called after every step, or
            ``(fn, interval)``; ``thermo`` holds step, time_ps and per-replica arrays.
        min_distance_A, max_temperature_factor, min_temperature_factor: stability guard (see
            :class:`StabilityGuard`; the lower bound is off by default);
            on_unstable: "stop" (warn, return) or "raise" (:class:`RolloutUnstable`).
        remove_momentum: remove each replica's net momentum every step (dof 3N − 3).
        resample_velocities: draw Maxwell–Boltzmann velocities at ``temperature_K`` for every
            replica even where the structure has velocities (replicas of one structure with
            given velocities otherwise start identical and, in NVE, stay identical).
    """

    def __init__(
        self,
        model,
        structures,
        dt_fs: float,
        temperature_K=None,
        thermostat: str = "none",
        tau_fs: float | None = None,
        friction_per_ps: float | None = None,
        replicas: int = 1,
        seed: int | None = 0,
        out_dir: str | Path | None = None,
        fmt: str = "extxyz",
        write_every: int = 10,
        thermo_every: int | None = None,
        observers: Sequence = (),
        min_distance_A: float = 1.5,
        max_temperature_factor: float | None = 3.0,
        min_temperature_factor: float | None = None,
        remove_momentum: bool = True,
        progress: bool = True,
        on_unstable: str = "stop",
        resample_velocities: bool = False,
    ):
        if dt_fs <= 0:
            raise ValueError(f"dt_fs must be > 0 fs, got {dt_fs}")
        if on_unstable not in ("stop", "raise"):
            raise ValueError(f"on_unstable must be 'stop' or 'raise', got {on_unstable!r}")
        if fmt not in TRAJECTORY_SUFFIX:
            raise ValueError(
                f"unknown trajectory format {fmt!r}; expected {list(TRAJECTORY_SUFFIX)}"
            )
        self.model = model.eval()
        self.dt_fs = float(dt_fs)
        self.thermostat_name = (thermostat or "none").lower()
        self.nvt = self.thermostat_name not in ("none", "nve")
        if self.nvt and temperature_K is None:
            raise ValueError(f"thermostat {thermostat!r} needs temperature_K (the set point)")
        self.remove_momentum = bool(remove_momentum)
        self.progress = progress
        self.on_unstable = on_unstable
        self.fmt = fmt
        self.write_every = int(write_every)
        self.thermo_every = int(thermo_every or (self.write_every or 1))
        self.observers = [o if isinstance(o, tuple) else (o, 1) for o in observers]
        device = model.device

        atoms_list, names = [], []
        for k, s in enumerate(_as_list(structures)):
            atoms = read_structure(s)
            where = f"structure {k}" + (f" ({s})" if isinstance(s, (str, Path)) else "")
            check_box(atoms.cell.array, model.cutoff, where=where)
            atoms_list += [atoms.copy() for _ in range(int(replicas))]
            names += [where] * int(replicas)
        if not atoms_list:
            raise ValueError("no structures given")
        n_rep = len(atoms_list)
        state = RolloutState.from_atoms(atoms_list, device=device)
        self.generators = make_generators(n_rep, seed, device)
        self.seed = seed

        # Initial velocities: MB at the requested temperature where a structure has none.
        set_point = None
        if temperature_K is not None:
            set_point = torch.as_tensor(temperature_K, dtype=torch.float64, device=device)
            set_point = (
                set_point.reshape(-1).expand(n_rep).clone() if set_point.numel() == 1 else set_point
            )
            if set_point.numel() != n_rep:
                raise ValueError(
                    f"temperature_K: expected 1 or {n_rep} values, got {set_point.numel()}"
                )
        self.dof = (
            None if self.remove_momentum else 3 * torch.bincount(state.batch).to(torch.float64)
        )
        vel = state.velocities.clone()
        self.initialised_velocities = []
        for r in range(n_rep):
            s = state.replica_slice(r)
            given = not bool((vel[s] == 0).all())
            if given and not resample_velocities:
                continue
            if set_point is None or float(set_point[r]) <= 0:
                # From rest, an NVE run would label itself 0 K and switch its temperature
                # guard off; as in SurrogateMD, ask for a temperature instead of guessing.
                what = "is to be resampled" if given else "has no velocities"
                raise ValueError(
                    f"{names[r]} {what}: give temperature_K to draw Maxwell–Boltzmann velocities"
                    + ("" if set_point is None else f" (got {float(set_point[r]):g} K)")
                )
            vel[s] = th.maxwell_boltzmann(state.masses[s], float(set_point[r]), self.generators[r])
            self.initialised_velocities.append(r)
        if self.remove_momentum:
            vel = th.remove_net_momentum(vel, state.masses, state.batch)
        self.state = replace(state, velocities=vel)
        initial_T = th.kinetic_temperature(vel, state.masses, state.batch, dof=self.dof)
        # temperature label for the model and guard reference
        self.model_temperature = set_point if self.nvt else initial_T
        self.thermostat = th.make_thermostat(
            self.thermostat_name,
            set_point,
            self.dt_fs,
            tau_fs=tau_fs,
            friction_per_ps=friction_per_ps,
            dof=self.dof,
        )
        self.guard = StabilityGuard(
            min_distance_A=min_distance_A,
            max_temperature_factor=max_temperature_factor,
            min_temperature_factor=min_temperature_factor,
            probe_cutoff_A=max(3.5, float(min_distance_A) + 0.5),
            reference_K=self.model_temperature.detach().cpu(),
        )

        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.writers = []
        self.thermo_file = None
        self.files: dict = {}
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            suffix = TRAJECTORY_SUFFIX[fmt]
            if self.write_every > 0:
                for r in range(n_rep):
                    path = self.out_dir / f"replica_{r:03d}{suffix}"
                    self.writers.append(open_writer(path, fmt))
                self.files["trajectories"] = [str(w.path) for w in self.writers]
            self.files["thermo"] = str(self.out_dir / "thermo.csv")
            self.thermo_file = open(self.files["thermo"], "w")  # noqa: SIM115 - kept open
            self.thermo_file.write(",".join(THERMO_COLUMNS) + "\n")
            self.thermo_file.flush()
            self.files["metadata"] = str(self.out_dir / "rollout.json")

        self.finite_difference = not bool(getattr(model, "predicts_velocity", True))
        self._rows: list[tuple] = []
        self._wall_offset = 0.0
        self.stopped: tuple | None = None
        self._write_metadata()

    # ------------------------------------------------------------------ outputs
    def _write_metadata(self, extra: dict | None = None) -> None:
        if self.out_dir is None:
            return
        meta = {
            "arch": getattr(self.model, "arch", type(self.model).__name__),
            "model_dtype": str(self.model.dtype).replace("torch.", ""),
            "dt_fs": self.dt_fs,
            "thermostat": getattr(self.thermostat, "description", self.thermostat_name),
            "model_temperature_K": self.model_temperature.detach().cpu().tolist(),
            "replicas": self.state.n_replicas,
            "atoms_per_replica": torch.bincount(self.state.batch).tolist(),
            "seed": self.seed,
            "remove_momentum": self.remove_momentum,
            "maxwell_boltzmann_initialised_replicas": self.initialised_velocities,
            "velocities": "finite differences disp/dt (model predicts positions only)"
            if self.finite_difference
            else "predicted by the model",
            "format": self.fmt,
            "write_every": self.write_every,
            "thermo_every": self.thermo_every,
            "min_distance_A": self.guard.min_distance_A,
            "max_temperature_factor": self.guard.max_temperature_factor,
            "min_temperature_factor": self.guard.min_temperature_factor,
            "files": self.files,
        }
        meta.update(extra or {})
        # rewritten as the run goes (finite differences seen, how it ended): a reader or a
        # kill mid-write must find the previous version, never half a file
        path = Path(self.files["metadata"])
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)

    def _write_frames(self, state: RolloutState, thermo: dict, info: dict | None = None) -> None:
        pos = state.positions.detach().cpu().numpy()
        unw = state.unwrapped.detach().cpu().numpy()
        vel = state.velocities.detach().cpu().numpy()
        cell = state.cell.cpu().numpy()
        species = state.species.cpu().numpy()
        masses = state.masses.cpu().numpy()
        ptr = state.ptr.tolist()
        for r, writer in enumerate(self.writers):
            s = slice(ptr[r], ptr[r + 1])
            finite = np.isfinite(pos[s]).all() and np.isfinite(vel[s]).all()
            image = image_flags(unw[s], pos[s], cell[r]) if np.isfinite(unw[s]).all() else None
            if not finite:
                continue
            writer.write(
                pos[s],
                vel[s],
                cell[r],
                species[s],
                masses=masses[s],
                image=image,
                step=state.step,
                time_fs=state.step * self.dt_fs,
                temperature_K=float(thermo["temperature_K"][r]),
                info={"replica": r, **(info or {})},
            )

    def _log_thermo(self, state: RolloutState, thermo: dict, wall: float, ns_day: float) -> None:
        time_ps = state.step * self.dt_fs / 1000.0
        lines = []
        for r in range(state.n_replicas):
            row = (
                state.step,
                time_ps,
                r,
                thermo["temperature_K"][r],
                thermo["kinetic_energy_eV"][r],
                thermo["momentum_amu_A_per_ps"][r],
                thermo["min_distance_A"][r],
                wall,
                ns_day,
            )
            lines.append("{},{:.6f},{},{:.6g},{:.8g},{:.6g},{:.6g},{:.4f},{:.6g}".format(*row))
        if self.thermo_file is not None:
            self.thermo_file.write("\n".join(lines) + "\n")
            self.thermo_file.flush()

    def _record(self, state, thermo, wall) -> None:
        self._rows.append(
            (
                state.step,
                state.step * self.dt_fs / 1000.0,
                thermo["temperature_K"].copy(),
                thermo["kinetic_energy_eV"].copy(),
                thermo["momentum_amu_A_per_ps"].copy(),
                thermo["min_distance_A"].copy(),
                wall,
            )
        )

    # ------------------------------------------------------------------ running
    def run(self, steps: int) -> RolloutResult:
        """Advance ``steps`` strides (continuing from the current state); see the class doc."""
        from tqdm.auto import tqdm

        steps = int(steps)
        state = self.state
        if self.stopped is not None:
            raise RuntimeError(f"this rollout already stopped: {self.stopped[3]}")
        t0 = time.perf_counter()
        start_step = state.step
        first = not self._rows
        if first:
            thermo, problem = self.guard.check(state, dof=self.dof)
            self._record(state, thermo, 0.0)
            if problem is not None:
                return self._stop(state, problem, thermo)
            self._emit(state, thermo, 0.0, 0.0)
        bar = tqdm(total=steps, disable=not self.progress, unit="step", dynamic_ncols=True)
        problem = None
        try:
            with torch.inference_mode():
                for _ in range(steps):
                    state, fd = advance(
                        self.model,
                        state,
                        self.dt_fs,
                        self.model_temperature,
                        self.thermostat,
                        self.generators,
                        self.remove_momentum,
                    )
                    if fd and not self.finite_difference:
                        self.finite_difference = True
                        self._write_metadata()
                    if fd and state.step == start_step + 1:
                        warnings.warn(
                            "model predicts displacements only: velocities are finite "
                            "differences disp/dt",
                            stacklevel=2,
                        )
                    thermo, problem = self.guard.check(state, dof=self.dof)
                    wall = self._wall_offset + time.perf_counter() - t0
                    elapsed = time.perf_counter() - t0
                    ns_day = (
                        (state.step - start_step) * self.dt_fs * 1e-6 / elapsed * 86400.0
                        if elapsed > 0
                        else 0.0
                    )
                    self._record(state, thermo, wall)
                    self.state = state
                    if problem is not None:
                        break
                    self._emit(state, thermo, wall, ns_day)
                    bar.update(1)
                    if state.step % self.thermo_every == 0:
                        bar.set_postfix(
                            ns_day=f"{ns_day:.3g}",
                            T=f"{float(np.mean(thermo['temperature_K'])):.0f}K",
                            refresh=False,
                        )
        finally:
            bar.close()
            self._wall_offset += time.perf_counter() - t0
        if problem is not None:
            return self._stop(state, problem, thermo, ns_day, wall)
        self._write_metadata({"stopped_reason": None, "steps_done": state.step})
        return self.result()

    def _emit(self, state, thermo, wall, ns_day, force: bool = False, info=None) -> None:
        if self.writers and (force or (self.write_every and state.step % self.write_every == 0)):
            self._write_frames(state, thermo, info)
        if force or state.step % self.thermo_every == 0:
            self._log_thermo(state, thermo, wall, ns_day)
        pub = None
        for fn, interval in self.observers:
            if interval > 0 and state.step % interval == 0:
                if pub is None:
                    pub = {
                        "step": state.step,
                        "time_ps": state.step * self.dt_fs / 1000.0,
                        **{k: v for k, v in thermo.items() if not k.startswith("_")},
                    }
                fn(state, pub)

    def _stop(self, state, problem, thermo, ns_day=0.0, wall=0.0) -> RolloutResult:
        replica, cause = problem
        t_ps = state.step * self.dt_fs / 1000.0
        message = (
            f"rollout unstable at step {state.step} (t = {t_ps:.4f} ps), replica {replica}: {cause}"
        )
        self.stopped = (state.step, replica, cause, message)
        # Keep the offending frame when it is finite (useful to look at); thermo row always.
        self._emit(state, thermo, wall, ns_day, force=True, info={"unstable": cause})
        if self.out_dir is not None:
            message += f"; output so far is in {self.out_dir}"
        self._write_metadata(
            {"stopped_reason": message, "stopped_step": state.step, "stopped_replica": replica}
        )
        result = self.result()
        if self.on_unstable == "raise":
            self.close()
            raise RolloutUnstable(message, state.step, replica, cause, result)
        warnings.warn(message, RuntimeWarning, stacklevel=3)
        return result

    def result(self) -> RolloutResult:
        rows = self._rows
        stopped = self.stopped
        return RolloutResult(
            step=np.array([r[0] for r in rows], dtype=np.int64),
            time_ps=np.array([r[1] for r in rows]),
            temperature_K=np.stack([r[2] for r in rows]),
            kinetic_energy_eV=np.stack([r[3] for r in rows]),
            momentum_amu_A_per_ps=np.stack([r[4] for r in rows]),
            min_distance_A=np.stack([r[5] for r in rows]),
            wall_s=np.array([r[6] for r in rows]),
            stopped_reason=stopped[3] if stopped else None,
            stopped_step=stopped[0] if stopped else None,
            stopped_replica=stopped[1] if stopped else None,
            finite_difference_velocities=self.finite_difference,
            final_state=self.state,
            files=dict(self.files),
        )

    def close(self) -> None:
        for w in self.writers:
            w.close()
        if self.thermo_file is not None and not self.thermo_file.closed:
            self.thermo_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run_rollout(
    model,
    structures,
    dt_fs: float,
    steps: int,
    temperature_K=None,
    thermostat: str = "none",
    tau_fs: float | None = None,
    replicas: int = 1,
    seed: int | None = 0,
    write_every: int = 10,
    out_dir: str | Path | None = None,
    fmt: str = "extxyz",
    observers: Sequence = (),
    **kwargs,
) -> RolloutResult:
    """Build a :class:`Rollout`, run ``steps`` strides, close its files, return the result.

    Extra keyword arguments go to :class:`Rollout` (friction_per_ps, thermo_every,
    min_distance_A, max_temperature_factor, min_temperature_factor, remove_momentum, progress,
    on_unstable, resample_velocities).
    """
    with Rollout(
        model,
        structures,
        dt_fs,
        temperature_K=temperature_K,
        thermostat=thermostat,
        tau_fs=tau_fs,
        replicas=replicas,
        seed=seed,
        out_dir=out_dir,
        fmt=fmt,
        write_every=write_every,
        observers=observers,
        **kwargs,
    ) as ro:
        return ro.run(steps)
