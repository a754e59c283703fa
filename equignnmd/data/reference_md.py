"""Reference MD started from a given state (the yardstick for rollouts), under a dataset's
own reference: a LAMMPS potential or an ASE calculator.

Same positions, velocities and cell as the surrogate's start, the same kind of thermostat
(``none`` → NVE, ``csvr`` → ``fix temp/csvr`` / ASE ``Bussi``, ``langevin`` → ``fix
langevin`` / ASE ``Langevin``), velocity Verlet at ``md_timestep_fs`` (1 fs), frames recorded
every ``stride_fs`` so the two trajectories can be compared frame by frame.

:func:`dataset_reference` reads a dataset's reference from its ``dataset.json``,
:func:`dataset_material` its crystal, :func:`dataset_reference_material` both (from a
checkpoint's record of its training data too);
:func:`reference_md` starts the driver of a reference (:class:`~.lammps_md.LammpsMD` or
:class:`~.calculator_md.AseMD`, one interface).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from ase.data import chemical_symbols

from .._lammps import resolve_potential
from ..calculator import AseCalculator, dataset_calculator
from ..lammps_potential import LammpsPotential, dataset_potential, recorded_elements
from ..materials import ALUMINIUM, Composition, Material, alloy_material, element_material
from .calculator_md import AseMD
from .lammps_md import LammpsMD, MDSettings

ENSEMBLE = {"none": "nve", "nve": "nve", "csvr": "csvr", "langevin": "langevin"}

Reference = LammpsPotential | AseCalculator
"""A dataset's reference: a LAMMPS potential or an ASE calculator."""

TIMING_WARMUP_STEPS = 2
"""Steps run before the timed ones (:func:`time_reference`): the first neighbour lists and
caches are built there."""
TIMING_TARGET_S = 3.0
"""The timed steps of :func:`time_reference` are chosen to take about this long, s."""
TIMING_MAX_STEPS = 50
"""At most this many timed steps (a cheap potential is timed in well under a second)."""


@dataclass(frozen=True)
class ReferenceTiming:
    """The measured cost of a reference on one box, one process (one MPI rank)."""

    reference: str
    """what was timed (its description)"""
    atoms: int
    steps: int
    """timed MD steps (after :data:`TIMING_WARMUP_STEPS`)"""
    wall_s: float
    """wall time of the timed steps, s"""

    @property
    def s_per_atom_step(self) -> float:
        """Seconds per atom per MD step."""
        return self.wall_s / (self.steps * self.atoms)

    @property
    def atom_steps_per_s(self) -> float:
        return 1.0 / self.s_per_atom_step


def time_reference(
    settings: MDSettings,
    target_s: float = TIMING_TARGET_S,
    max_steps: int = TIMING_MAX_STEPS,
    state: dict | None = None,
) -> ReferenceTiming:
    """Time the MD of ``settings`` (the box it builds under its reference, or ``state``:
    positions Å, velocities Å/ps, cell; through :func:`reference_md`, serial):
    :data:`TIMING_WARMUP_STEPS` steps, whose wall time sets the number of timed steps (about
    ``target_s`` s of them, 1 to ``max_steps``), then those. The set-up (the box, the
    potential's files, ``run 0``) is not counted. Bounded: about ``target_s`` s plus the
    warm-up's two steps. Nothing is written."""
    with reference_md(settings, state=state) as md:
        atoms, reference = len(md.species()), md.potential.description
        t0 = time.perf_counter()
        md.run(TIMING_WARMUP_STEPS)
        per_step = max((time.perf_counter() - t0) / TIMING_WARMUP_STEPS, 1e-9)
        steps = max(1, min(max_steps, math.floor(target_s / per_step)))
        t0 = time.perf_counter()
        md.run(steps)
        wall = time.perf_counter() - t0
    return ReferenceTiming(reference, atoms, steps, max(wall, 1e-9))


def dataset_reference(meta: dict, where: str = "dataset.json") -> Reference:
    """The reference a dataset was generated with (``dataset.json`` as a dict): its ASE
    calculator (field ``calculator``) where it has one, else its LAMMPS potential
    (:func:`~equignnmd.lammps_potential.dataset_potential`: the ``lammps_potential`` record,
    or the EAM file ``potential`` of an older dataset). ValueError naming ``where`` when it
    has neither (a converted dataset)."""
    calculator = dataset_calculator(meta, where)
    return calculator if calculator is not None else dataset_potential(meta, where)


def dataset_material(meta: dict, where: str = "dataset.json") -> Material:
    """The crystal of a dataset (``dataset.json`` as a dict): its ``material`` record's
    element, mass, lattice, lattice constant and hcp c/a, or an alloy's composition
    (:func:`~equignnmd.materials.alloy_material`). What the record lacks takes the package's
    value (:func:`~equignnmd.materials.element_material`: the standard mass, the tabulated or
    guessed lattice constant, fcc); a dataset from before the record is one of its
    recorded elements (:func:`~equignnmd.lammps_potential.recorded_elements`: Al for the
    oldest). Units: amu, Å."""
    record = meta.get("material") or {}
    elements = list(recorded_elements(meta))
    lattice = str(record.get("lattice") or "fcc")
    lattice_A = record.get("lattice_A")
    lattice_A = None if lattice_A is None else float(lattice_A)
    c_over_a = record.get("c_over_a")
    composition = record.get("composition")
    if len(elements) > 1:
        fractions = [float((composition or {}).get(e, 0.0)) for e in elements]
        if not composition or min(fractions) <= 0:
            raise ValueError(
                f"{where}: the material record names elements {elements} without their "
                "'composition'; expected {element: atom fraction} as equignnmd generate "
                "writes it"
            )
        return alloy_material(elements, fractions, lattice, lattice_A, c_over_a, where)
    masses = record.get("masses_amu") or [None]
    return element_material(elements[0], lattice, lattice_A, masses[0], c_over_a, where)


def dataset_reference_material(
    meta: dict, where: str = "dataset.json", species=None
) -> tuple[Reference, Material]:
    """A dataset's reference (:func:`dataset_reference`) and crystal
    (:func:`dataset_material`) from its ``dataset.json`` dict, or from the record a
    checkpoint keeps of its training data (``model.data_summary["dataset_meta"]``, which may
    name only the potential's file). ``species`` (atomic numbers: a checkpoint's
    ``stats.species``) stand in for the elements where ``meta`` records none, so that a
    checkpoint of another element than Al is not read as Al."""
    if species is not None and not (meta.get("material") or {}).get("elements"):
        symbols = [chemical_symbols[int(z)] for z in sorted({int(z) for z in species})]
        record = {**(meta.get("material") or {}), "elements": symbols}
        if len(symbols) > 1:
            raise ValueError(
                f"{where}: no material record, and species {symbols} without a composition; "
                "expected the record equignnmd generate writes"
            )
        meta = {**meta, "material": record}
    return dataset_reference(meta, where), dataset_material(meta, where)


def checkpoint_reference_material(
    checkpoint: dict, where: str = "checkpoint"
) -> tuple[Reference, Material] | None:
    """The reference and crystal a checkpoint's training data came from (a
    :func:`~equignnmd.checkpoint.read_checkpoint` dict: ``data_summary["dataset_meta"]``, its
    ``stats.species`` naming the element where the record does not), or None where it records
    no reference (a checkpoint from before the record, or trained on converted data)."""
    meta = (checkpoint.get("data_summary") or {}).get("dataset_meta") or {}
    if not any(meta.get(k) for k in ("lammps_potential", "potential", "calculator")):
        return None
    species = (checkpoint.get("stats") or {}).get("species")
    return dataset_reference_material(meta, where, species)


def reference_md(settings: MDSettings, comm=None, state: dict | None = None, cmdargs=None):
    """The MD driver of ``settings.potential``: :class:`~.calculator_md.AseMD` for an
    :class:`~equignnmd.calculator.AseCalculator`, else :class:`~.lammps_md.LammpsMD`."""
    if isinstance(settings.potential, AseCalculator):
        return AseMD(settings, comm=comm, state=state, cmdargs=cmdargs)
    return LammpsMD(settings, comm=comm, state=state, cmdargs=cmdargs)


def state_material(species, masses, where: str = "state") -> Material:
    """The :class:`~equignnmd.materials.Material` of a box of atomic numbers ``species``
    (N,) and masses ``masses`` (N,) amu, for a reference run from it: one element with its
    mass, or an alloy of the elements present (:meth:`Composition.of_species`). The lattice
    is irrelevant for a run from a state."""
    composition = Composition.of_species(species, masses, where)
    first = element_material(composition.elements[0], mass_amu=composition.masses_amu[0])
    if len(composition.elements) == 1:
        return first
    mean = float(np.dot(composition.fractions, composition.masses_amu))
    return Material(
        first.element, first.atomic_number, mean, first.lattice_A, composition=composition
    )


def lammps_reference(
    positions,
    velocities,
    cell,
    stride_fs: float,
    n_frames: int,
    temperature_K: float,
    thermostat: str = "csvr",
    tau_fs: float | None = None,
    potential: str | Path | Reference | None = None,
    material: Material = ALUMINIUM,
    md_timestep_fs: float = 1.0,
    seed: int = 4242,
    species=None,
) -> dict[str, np.ndarray]:
    """Run the reference from the given state; returns frames 0..n_frames (inclusive) every
    stride.

    Args:
        positions: (N, 3) Å (wrapped or unwrapped); velocities: (N, 3) Å/ps;
        cell: (3, 3) Å, LAMMPS-style lower-triangular rows.
        tau_fs: thermostat time constant (default 100 × stride, as in our rollouts).
        potential: a dataset's reference (:func:`dataset_reference`: a
            :class:`~equignnmd.lammps_potential.LammpsPotential` or an
            :class:`~equignnmd.calculator.AseCalculator`, which runs ASE dynamics), a
            potential file (path or shipped name) for ``material``'s elements, or None for
            the default Al EAM.
        material: the element(s) and their masses (:func:`state_material` of a trajectory).
        species: (N,) atomic numbers (default: every atom ``material``'s element).

    Returns:
        ``positions`` (F, N, 3) unwrapped Å, ``velocities`` (F, N, 3) Å/ps, ``cell``
        (F, 3, 3), ``time_fs`` (F,), ``temperature_K`` (F,), ``wall_s`` (MD time only).
    """
    if thermostat not in ENSEMBLE:
        raise ValueError(f"thermostat {thermostat!r}: expected one of {sorted(ENSEMBLE)}")
    ratio = stride_fs / md_timestep_fs
    if abs(ratio - round(ratio)) > 1e-9:
        raise ValueError(f"stride {stride_fs} fs must be a multiple of {md_timestep_fs} fs")
    reference = isinstance(potential, (LammpsPotential, AseCalculator))
    settings = MDSettings(
        potential=potential if reference else resolve_potential(potential),
        material=material,
        temperature_K=temperature_K,
        seed=seed,
        timestep_fs=md_timestep_fs,
        ensemble=ENSEMBLE[thermostat],
        tdamp_fs=tau_fs if tau_fs is not None else 100.0 * stride_fs,
        descriptors=False,
    )
    state = {"positions": positions, "velocities": velocities, "cell": cell, "species": species}
    frames = []
    wall = 0.0
    with reference_md(settings, state=state) as md:
        frames.append(md.frame())
        for _ in range(n_frames):
            t0 = time.perf_counter()
            md.run(int(round(ratio)))
            wall += time.perf_counter() - t0
            frames.append(md.frame())
    return {
        "positions": np.stack([f["positions"] for f in frames]),
        "velocities": np.stack([f["velocities"] for f in frames]),
        "cell": np.stack([f["cell"] for f in frames]),
        "time_fs": np.array([f["time_fs"] for f in frames]),
        "temperature_K": np.array([f["thermo"]["temperature_K"] for f in frames]),
        "wall_s": wall,
    }
