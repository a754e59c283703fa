"""A thin driver around an in-process LAMMPS simulation of a crystal or melt of one element
or a random substitutional alloy.

Used to generate reference data (``equignnmd generate``) and, later, to run reference MD from a
given state. Works serially and under ``mpirun`` (LAMMPS' own domain decomposition): every rank
calls the same methods, and :meth:`LammpsMD.frame` returns the gathered frame on rank 0 and
``None`` elsewhere. :func:`build_structure` gives the atoms of the box it builds without a
potential (the start of the ASE reference runs, :mod:`equignnmd.data.calculator_md`).

LAMMPS types are the potential's elements in its order
(:attr:`~equignnmd.lammps_potential.LammpsPotential.elements`); an alloy's atoms get their
types from :meth:`~equignnmd.materials.Composition.types` once the structure is built, a
state's from its ``species``.
"""

from __future__ import annotations

import ctypes
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import descriptors as desc
from .._lammps import import_lammps, new_lammps
from ..calculator import AseCalculator
from ..lammps_potential import LammpsPotential, detect_potential, verbatim_potential
from ..materials import ALUMINIUM, LATTICES, Material, atomic_number
from ..units import fs_to_ps

THERMO_KEYS = ("temp", "press", "vol", "pe", "ke", "etotal")
THERMO_NAMES = ("temperature_K", "pressure_bar", "volume_A3", "pe_eV", "ke_eV", "etotal_eV")
NKTV2P_METAL = 1.6021765e6
"""LAMMPS metal units: pressure (bar) × volume (Å³) / NKTV2P = energy (eV)."""

STRUCTURES = ("bulk", "vacancy", "divacancy", "interstitial", "slab", "liquid", "quench")
"""What :class:`LammpsMD` builds: the crystal of the material's lattice (``bulk``, strained
when ``strain`` is set), with one empty site near the box centre (``vacancy``), with two
nearest-neighbour empty sites (``divacancy``), with one extra atom at the interstitial site of
the central cell (``interstitial``: octahedral, tetrahedral in diamond), a free-standing film
of a low-index facet (``slab``, fcc and bcc), the melt (``liquid``: melted at ``melt_K``, then
held at the temperature) and a melt cooled linearly to the temperature over ``quench_ps``
(``quench``)."""

FACET_AXES = {
    (1, 0, 0): ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    (1, 1, 0): ((0, 0, 1), (1, -1, 0), (1, 1, 0)),
    (1, 1, 1): ((1, -1, 0), (1, 1, -2), (1, 1, 1)),
}
"""Lattice directions along x, y, z (z the surface normal) of the slab of each facet (the
cubic lattices whose :attr:`~equignnmd.materials.Lattice.slabs` is set: fcc, bcc)."""
RELAX_MIN_WIDTH_A = 10.0
"""The 0-K relaxation box (:func:`relax_lattice`) is at least this wide along every axis,
and 3 cells: a perfect crystal of a few cells, so its cost does not matter."""


def period(direction, lattice: str = "fcc") -> float:
    """Repeat distance of a cubic lattice along a reduced direction [u v w], units of a: the
    half vector is a lattice vector in fcc when u + v + w is even, in bcc when all are odd."""
    norm = math.sqrt(sum(v * v for v in direction))
    half = sum(direction) % 2 == 0 if lattice == "fcc" else all(v % 2 for v in direction)
    return norm / 2 if half else norm


def plane_spacing(miller, lattice: str = "fcc") -> float:
    """Spacing of the atomic (h k l) planes of a cubic lattice, units of a (fcc: 1/|hkl| when
    all are odd; bcc: when h + k + l is even; else half of it)."""
    norm = math.sqrt(sum(v * v for v in miller))
    whole = all(v % 2 for v in miller) if lattice == "fcc" else sum(miller) % 2 == 0
    return 1 / norm if whole else 1 / (2 * norm)


def slab_repeats(miller, cells: int, lattice: str = "fcc") -> tuple[int, int, int]:
    """Periods of the oriented cell along x, y, z closest to ``cells`` cubic cells each."""
    axes = FACET_AXES[tuple(miller)]
    return tuple(max(1, round(cells / period(v, lattice))) for v in axes)


def structure_atoms(structure: str, cells: int, miller=(1, 0, 0), lattice: str = "fcc") -> int:
    """Atoms :class:`LammpsMD` builds for ``structure`` (see :data:`STRUCTURES`) of
    ``lattice`` (:data:`equignnmd.materials.LATTICES`)."""
    per_cell = LATTICES[lattice].atoms_per_cell
    if structure == "slab":
        axes = FACET_AXES[tuple(miller)]
        cell_volume = math.prod(
            n * period(v, lattice) for n, v in zip(slab_repeats(miller, cells, lattice), axes)
        )
        return int(round(per_cell * cell_volume))
    extra = {"vacancy": -1, "divacancy": -2, "interstitial": 1}.get(structure, 0)
    return per_cell * cells**3 + extra


def lattice_command(material: Material, orient: str = "") -> str:
    """The LAMMPS ``lattice`` command of ``material``'s crystal: LAMMPS' own fcc, bcc and
    diamond (their site order, so FCC boxes are those of before); hcp as a custom lattice,
    the orthogonal cell a × √3a × c with the material's c/a."""
    lat, a = material.lattice, material.lattice_A
    if lat.name != "hcp":
        return f"lattice {lat.name} {a}" + (f" {orient}" if orient else "")
    _, b, c = (x / a for x in material.cell_A)
    basis = " ".join(f"basis {x:.12g} {y:.12g} {z:.12g}" for x, y, z in lat.basis)
    return f"lattice custom {a} a1 1 0 0 a2 0 {b:.12g} 0 a3 0 0 {c:.12g} {basis}"


def as_potential(potential, material: Material) -> LammpsPotential:
    """``potential`` as a :class:`LammpsPotential` of a box of ``material``: a file (path or
    shipped name) is detected for the material's elements; a record must map LAMMPS types to
    every element of the box (more are fine: a Cu box under an Al/Cu potential)."""
    pot = detect_potential(potential, material.elements)
    missing = [e for e in material.elements if e not in pot.elements]
    if missing:
        raise ValueError(
            f"potential {pot.description}: maps LAMMPS types to {', '.join(pot.elements)}; "
            f"expected every element of the box ({', '.join(material.elements)}), "
            f"{', '.join(missing)} included"
        )
    return pot


def type_commands(material: Material, potential: LammpsPotential) -> list[str]:
    """``mass`` of every LAMMPS type (the potential's elements, in order), amu."""
    return [f"mass {t} {material.mass_of(e)}" for t, e in enumerate(potential.elements, 1)]


def site_types(
    material: Material, potential: LammpsPotential, n_atoms: int, seed: int
) -> np.ndarray | None:
    """The LAMMPS type (1, 2, …) of each of the ``n_atoms`` atoms of a freshly built box of
    ``material`` (N,): an alloy's elements drawn with ``seed``
    (:meth:`~equignnmd.materials.Composition.types`), else the element's type; None where
    every atom is type 1, as ``create_atoms 1`` made them."""
    type_of = {e: t for t, e in enumerate(potential.elements, 1)}
    if material.composition is None:
        t = type_of[material.element]
        return None if t == 1 else np.full(n_atoms, t, dtype=np.int32)
    table = np.array([type_of[e] for e in material.composition.elements], dtype=np.int32)
    return table[material.composition.types(n_atoms, seed)]


def species_types(species, potential: LammpsPotential, where: str = "state") -> np.ndarray:
    """The LAMMPS type of each atom of atomic numbers ``species`` (N,) under ``potential``;
    ValueError naming the element the potential lacks."""
    zs = np.array([atomic_number(e) for e in potential.elements], dtype=np.int64)
    species = np.asarray(species, dtype=np.int64)
    found = species[:, None] == zs[None, :]
    if not found.any(axis=1).all():
        bad = sorted(set(species[~found.any(axis=1)].tolist()))
        raise ValueError(
            f"{where}: field 'species' holds atomic numbers {bad}; the potential "
            f"{potential.description} maps LAMMPS types to {', '.join(potential.elements)} "
            f"(atomic numbers {zs.tolist()}); expected a potential for every element"
        )
    return (np.argmax(found, axis=1) + 1).astype(np.int32)


def scatter_types(lmp, types: np.ndarray) -> None:
    """Set the type of atoms 1..N (by id) to ``types`` (N,) (every MPI rank passes all)."""
    flat = np.ascontiguousarray(types, dtype=np.int32)
    lmp.scatter_atoms("type", 0, 1, flat.ctypes.data_as(ctypes.POINTER(ctypes.c_int)))


def relax_lattice(
    potential: LammpsPotential | Path | str,
    material: Material,
    pressure_bar: float = 0.0,
    relax_c_over_a: bool = True,
    comm=None,
    seed: int = 0,
) -> tuple[Material, dict]:
    """The lattice constant (and hcp's c/a) at which ``material``'s perfect crystal is at
    ``pressure_bar`` at 0 K under ``potential``.

    A LAMMPS ``minimize`` (conjugate gradient) with ``fix box/relax``: ``iso`` for the cubic
    lattices (and for hcp with ``relax_c_over_a`` False: c/a kept); x, y and z for hcp, x and
    y coupled, so that c/a relaxes; started from
    ``material.lattice_A`` (and ``c_over_a``) and run twice (box/relax measures its strain
    from the box it starts with). The atoms sit on the lattice sites, where symmetry makes
    every force zero; an alloy's (its elements placed with ``seed``,
    :func:`site_types`) relax too. Returns the material with the relaxed values and a record:
    ``lattice_A`` and ``c_over_a`` (Å; None for the cubic lattices), ``pe_per_atom_eV``,
    ``pressure_bar`` (what is left), ``cells`` (x, y, z), ``atoms``."""
    pot = as_potential(potential, material)
    cells = relaxation_cells(material)
    p = pressure_bar
    hcp = material.structure == "hcp"
    aniso = hcp and relax_c_over_a
    relax = f"x {p} y {p} z {p} couple xy" if aniso else f"iso {p}"
    lmp = new_lammps(comm=comm)
    try:
        lmp.commands_list(
            [
                "units metal",
                "boundary p p p",
                "atom_style atomic",
                "atom_modify map array",
                lattice_command(material),
                f"region box block 0 {cells[0]} 0 {cells[1]} 0 {cells[2]}",
                f"create_box {len(pot.elements)} box",
                "create_atoms 1 box",
                *type_commands(material, pot),
            ]
        )
        types = site_types(material, pot, lmp.get_natoms(), seed)
        if types is not None:
            scatter_types(lmp, types)
        lmp.commands_list(
            [*pot.commands(), "thermo_style custom step pe press lx ly lz", "min_style cg"]
        )
        for _ in range(2):
            lmp.commands_list(
                [
                    f"fix eq_relax all box/relax {relax} vmax 0.001",
                    "minimize 0.0 1.0e-10 2000 20000",
                    "unfix eq_relax",
                ]
            )
        lmp.command("run 0")
        n = lmp.get_natoms()
        lengths = [float(lmp.get_thermo(k)) for k in ("lx", "ly", "lz")]
        pe, press = float(lmp.get_thermo("pe")), float(lmp.get_thermo("press"))
    finally:
        lmp.close()
    a = lengths[0] / cells[0]
    c_over_a = lengths[2] / cells[2] / a if hcp else None
    if not (math.isfinite(a) and a > 0 and math.isfinite(pe)):
        raise ValueError(
            f"0-K relaxation of {material.element} {material.structure} under "
            f"{pot.description}: a = {a} Å, energy {pe} eV; expected finite values (is the "
            "potential for this element and lattice?)"
        )
    record = {
        "lattice_A": a,
        "c_over_a": c_over_a,
        "pe_per_atom_eV": pe / n,
        "pressure_bar": press,
        "cells": cells,
        "atoms": int(n),
    }
    return replace(material, lattice_A=a, c_over_a=c_over_a), record


def relaxation_cells(material: Material) -> list[int]:
    """Conventional cells along x, y, z of the 0-K relaxation box (:func:`relax_lattice`):
    3, or more where 3 are narrower than :data:`RELAX_MIN_WIDTH_A`."""
    return [max(3, math.ceil(RELAX_MIN_WIDTH_A / w)) for w in material.cell_A]


@dataclass
class MDSettings:
    """One LAMMPS run. Units: metal (Å, ps, eV, amu, K, bar); times in fs."""

    potential: Path | str | LammpsPotential | AseCalculator
    """The potential: a :class:`~equignnmd.lammps_potential.LammpsPotential`, or a file
    (path or shipped name) detected for the material's elements (:class:`LammpsMD`); an
    :class:`~equignnmd.calculator.AseCalculator` for
    :class:`~equignnmd.data.calculator_md.AseMD`."""
    material: Material = ALUMINIUM
    """Element(s), masses, lattice and lattice constant of the crystal built when no state is
    given (the masses of a state's atoms too)."""
    cells: int = 4
    """Conventional cells along each axis."""
    temperature_K: float = 300.0
    seed: int = 12345
    timestep_fs: float = 1.0
    ensemble: str = "npt"  # npt | nvt (Nosé–Hoover) | csvr | langevin | nve
    tdamp_fs: float = 100.0
    pdamp_fs: float = 1000.0
    pressure_bar: float = 0.0
    descriptors: bool = True
    vacancies: int = 0
    """Lattice sites removed after the crystal is built (ids drawn with ``vacancy_seed``)."""
    vacancy_seed: int = 0
    velocity_scale: float = 2.0
    """Initial velocities are drawn at ``velocity_scale × T``: in a crystal started at the
    lattice sites, equipartition moves half the kinetic energy into potential energy."""
    structure: str = "bulk"
    """One of :data:`STRUCTURES`; ``bulk`` with no strain is exactly the old crystal."""
    strain: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Fractional strain of the box along x, y, z, applied after the first half of the
    equilibration (NPT at ``pressure_bar``) and then held: NVT from there on."""
    miller: tuple[int, int, int] = (1, 0, 0)
    """Facet of a ``slab`` (the surface normal is z): (1,0,0), (1,1,0) or (1,1,1)."""
    vacuum_A: float = 12.0
    """Vacuum between a slab's surface and its periodic image along z, Å."""
    melt_K: float = 1500.0
    """``liquid``/``quench``: the crystal is melted at this temperature first, K."""
    melt_ps: float = 5.0
    """``liquid``/``quench``: time at ``melt_K`` (NPT), ps."""
    quench_ps: float = 0.0
    """``quench``: linear cooling from ``melt_K`` to ``temperature_K`` (NPT), ps."""
    energies: bool = False
    """Record per-atom potential energies (``compute pe/atom``) and the global virial
    (``compute pressure NULL virial``) in :meth:`LammpsMD.frame`."""
    composition_seed: int = 0
    """Seed of an alloy's random placement of its elements on the built box's sites
    (:func:`site_types`)."""


def run_ensemble(s: MDSettings) -> str:
    """The ensemble of a run of ``s``: a slab's barostat acts in the surface plane only
    (``npt-xy``: x, y coupled; z is the vacuum)."""
    return "npt-xy" if s.structure == "slab" and s.ensemble == "npt" else s.ensemble


@dataclass(frozen=True)
class Stage:
    """One stage of an equilibration: ``steps`` under ``ensemble`` with the set point going
    from ``t0_K`` to ``t1_K``, after the box is strained by ``strain`` (fractional, x y z)
    where given; ``keep``: the dynamics the run was built with go on (the first stage)."""

    steps: int
    t0_K: float
    t1_K: float
    ensemble: str
    strain: tuple[float, float, float] | None = None
    keep: bool = False


def equilibration_plan(s: MDSettings, n_equilibration: int) -> list[Stage]:
    """The stages before production (the same for every reference, LAMMPS or ASE): melting
    at ``melt_K`` (the dynamics the run starts with), for ``quench`` a linear cooling to the
    temperature, then ``n_equilibration`` steps at the temperature (``liquid``/``quench``);
    for a strained box half of them under the run's barostat, then the strain and NVT;
    otherwise the run's own dynamics for all of them."""
    steps = lambda ps: int(round(ps * 1000 / s.timestep_fs))  # noqa: E731
    ens, t = run_ensemble(s), s.temperature_K
    if s.structure in ("liquid", "quench"):
        out = [Stage(steps(s.melt_ps), s.melt_K, s.melt_K, ens, keep=True)]
        if s.structure == "quench":
            out.append(Stage(steps(s.quench_ps), s.melt_K, t, ens))
        return [*out, Stage(n_equilibration, t, t, ens)]
    if any(s.strain):
        half = n_equilibration // 2
        nvt = "nvt" if ens in ("npt", "npt-xy") else ens
        return [
            Stage(half, t, t, ens, keep=True),
            Stage(n_equilibration - half, t, t, nvt, strain=tuple(s.strain)),
        ]
    return [Stage(n_equilibration, t, t, ens, keep=True)]


def _comm_size(comm) -> tuple[int, int]:
    if comm is None:
        return 0, 1
    return comm.Get_rank(), comm.Get_size()


class LammpsMD:
    """A crystal (or a given state) under a LAMMPS potential, stepped with velocity Verlet."""

    def __init__(
        self,
        settings: MDSettings,
        comm=None,
        state: dict | None = None,
        cmdargs: list[str] | None = None,
    ):
        """``cmdargs``: extra LAMMPS command-line switches (``-sf omp -pk omp 2`` for the
        OPENMP package, say); the input commands stay the same."""
        self.settings = settings
        self.comm = comm
        self.rank, self.size = _comm_size(comm)
        self.lmp = new_lammps(list(cmdargs or []), comm=comm)
        s = settings
        self.potential = as_potential(s.potential, s.material)
        n_types = len(self.potential.elements)
        cmds = ["units metal", "boundary p p p", "atom_style atomic", "atom_modify map array"]
        if s.structure not in STRUCTURES:
            raise ValueError(f"structure {s.structure!r}: expected one of {', '.join(STRUCTURES)}")
        if state is None and s.structure == "slab":
            cmds += self._slab_commands()
        elif state is None:
            cmds += [
                lattice_command(s.material),
                f"region box block 0 {s.cells} 0 {s.cells} 0 {s.cells}",
                f"create_box {n_types} box",
                "create_atoms 1 box",
            ]
            cmds += self._defect_commands()
            if s.vacancies:
                sites = s.material.atoms_per_cell * s.cells**3
                ids = np.random.default_rng(s.vacancy_seed).choice(sites, s.vacancies, False) + 1
                cmds += [
                    "group vacancy id " + " ".join(str(int(i)) for i in sorted(ids)),
                    "delete_atoms group vacancy compress yes",
                    "group vacancy delete",
                ]
        else:
            cmds += self._box_from_cell(np.asarray(state["cell"], float), n_types)
        self.lmp.commands_list(cmds)
        if state is not None:
            self._create_from_state(state)
        else:  # an alloy's elements (or a box of the potential's second element)
            types = site_types(s.material, self.potential, self.lmp.get_natoms(), self._seed())
            if types is not None:
                scatter_types(self.lmp, types)
        cmds = [
            *type_commands(s.material, self.potential),
            *self.potential.commands(desc.lammps_cutoff_A(s.material) if s.descriptors else 0.0),
            "neighbor 1.0 bin",
            "neigh_modify every 1 delay 0 check yes",
            f"timestep {fs_to_ps(s.timestep_fs)}",
            "thermo_style custom step " + " ".join(THERMO_KEYS),
        ]
        melting = state is None and s.structure in ("liquid", "quench")
        t = s.melt_K if melting else s.temperature_K
        if state is None:
            cmds.append(
                f"velocity all create {s.velocity_scale * t} {s.seed} mom yes rot yes dist gaussian"
            )
        if s.descriptors:
            cmds += desc.lammps_compute_commands(s.material)
        if s.energies:
            cmds += [
                "compute eq_pe_atom all pe/atom",
                "compute eq_pe_sum all reduce sum c_eq_pe_atom",  # tallied at every thermo step
                "compute eq_virial all pressure NULL virial",
                "thermo_style custom step " + " ".join(THERMO_KEYS) + " c_eq_pe_sum c_eq_virial[*]",
            ]
        cmds += self._fix_commands(t, t, self._ensemble())
        self.lmp.commands_list(cmds)
        self.lmp.command("run 0")
        self.step = 0

    def _seed(self) -> int:
        return self.settings.composition_seed

    def _ensemble(self) -> str:
        return run_ensemble(self.settings)

    def _fix_commands(self, t0: float, t1: float, ensemble: str) -> list[str]:
        """The integrator (``eq_int``) and thermostat (``eq_thermo``) fixes, T from t0 to t1."""
        s = self.settings
        tdamp, pdamp, p = fs_to_ps(s.tdamp_fs), fs_to_ps(s.pdamp_fs), s.pressure_bar
        if ensemble == "npt":
            return [f"fix eq_int all npt temp {t0} {t1} {tdamp} iso {p} {p} {pdamp}"]
        if ensemble == "npt-xy":
            return [
                f"fix eq_int all npt temp {t0} {t1} {tdamp} x {p} {p} {pdamp} "
                f"y {p} {p} {pdamp} couple xy"
            ]
        if ensemble == "nvt":
            return [f"fix eq_int all nvt temp {t0} {t1} {tdamp}"]
        if ensemble == "nve":
            return ["fix eq_int all nve"]
        if ensemble == "csvr":  # Bussi–Donadio–Parrinello, as in our rollouts
            return ["fix eq_int all nve", f"fix eq_thermo all temp/csvr {t0} {t1} {tdamp} {s.seed}"]
        if ensemble == "langevin":
            return [
                "fix eq_int all nve",
                f"fix eq_thermo all langevin {t0} {t1} {tdamp} {s.seed} zero yes",
            ]
        raise ValueError(f"ensemble {ensemble!r}: expected one of npt, nvt, csvr, langevin, nve")

    def _slab_commands(self) -> list[str]:
        """A film of ``miller`` facet, z along the normal, ``vacuum_A`` between its surfaces and
        their periodic images (``boundary p p p``)."""
        s = self.settings
        lat = s.material.lattice
        if not lat.slabs:
            raise ValueError(
                f"structure 'slab': built for the fcc and bcc lattices; the material's is "
                f"{lat.name!r}"
            )
        a, axes = s.material.lattice_A, FACET_AXES[tuple(s.miller)]
        repeats = slab_repeats(s.miller, s.cells, lat.name)
        lengths = [n * period(v, lat.name) * a for n, v in zip(repeats, axes)]
        top = lengths[2] - plane_spacing(s.miller, lat.name) * a  # the last atomic plane
        orient = " ".join(f"orient {x} {u} {v} {w}" for x, (u, v, w) in zip("xyz", axes))
        lo, hi = -s.vacuum_A / 2, top + s.vacuum_A / 2
        return [
            lattice_command(s.material, orient),
            f"region box block 0 {lengths[0]} 0 {lengths[1]} {lo} {hi} units box",
            f"create_box {len(self.potential.elements)} box",
            f"region eq_slab block INF INF INF INF {-0.1 * a} {top + 0.1 * a} units box",
            "create_atoms 1 region eq_slab",
            "region eq_slab delete",
        ]

    def _defect_commands(self) -> list[str]:
        """Point defects at the lattice site / interstitial site nearest the box centre."""
        s = self.settings
        lat, a, cell = s.material.lattice, s.material.lattice_A, s.material.cell_A
        corner = [(s.cells // 2) * w for w in cell]

        def site(frac):  # Å, of fractional coordinates of the central cell
            return tuple(k + f * w for k, f, w in zip(corner, frac, cell))

        if s.structure == "interstitial":
            x, y, z = site(lat.interstitial)
            return [f"create_atoms 1 single {x} {y} {z} units box"]
        origin = (0.0, 0.0, 0.0)
        sites = {"vacancy": [site(origin)], "divacancy": [site(origin), site(lat.neighbour)]}
        cmds = []
        for n, (x, y, z) in enumerate(sites.get(s.structure, [])):
            cmds += [
                f"region eq_vac{n} sphere {x} {y} {z} {0.1 * a} units box",
                f"delete_atoms region eq_vac{n} compress yes",
                f"region eq_vac{n} delete",
            ]
        return cmds

    def stages(self, n_equilibration: int) -> list[tuple[list[str], int]]:
        """The equilibration (:func:`equilibration_plan`) as ``(commands to issue first,
        steps)``: production continues with the last stage's fixes. Issue each with
        :meth:`command_stage`."""
        s = self.settings
        swap = ["unfix eq_int"] + (
            ["unfix eq_thermo"] if s.ensemble in ("csvr", "langevin") else []
        )
        out = []
        for st in equilibration_plan(s, n_equilibration):
            commands = []
            if not st.keep:
                commands += swap
                if st.strain is not None:
                    scale = " ".join(f"{x} scale {1 + e}" for x, e in zip("xyz", st.strain))
                    commands.append(f"change_box all {scale} remap")
                commands += self._fix_commands(st.t0_K, st.t1_K, st.ensemble)
            out.append((commands, st.steps))
        return out

    def command_stage(self, commands: list[str]) -> None:
        """Issue a stage's commands and set up the next run (new fixes need ``run 0``)."""
        if commands:
            self.lmp.commands_list(commands)
            self.lmp.command("run 0")

    @staticmethod
    def _box_from_cell(cell: np.ndarray, n_types: int = 1) -> list[str]:
        a, b, c = cell
        if abs(a[1]) > 1e-10 or abs(a[2]) > 1e-10 or abs(b[2]) > 1e-10:
            raise ValueError(
                "state field 'cell': expected a LAMMPS-style lower-triangular cell "
                "(a along x, b in the xy plane); rotate the structure first"
            )
        tri = any(abs(v) > 1e-10 for v in (b[0], c[0], c[1]))
        prism = f"prism 0 {a[0]} 0 {b[1]} 0 {c[2]} {b[0]} {c[0]} {c[1]}"
        box = prism if tri else f"block 0 {a[0]} 0 {b[1]} 0 {c[2]}"
        return [f"region box {box} units box", f"create_box {n_types} box"]

    def _create_from_state(self, state: dict) -> None:
        pos = np.asarray(state["positions"], float)
        n = len(pos)
        cell = np.asarray(state["cell"], float)
        frac = np.linalg.solve(cell.T, pos.T).T
        image = np.floor(frac).astype(int)
        wrapped = (frac - image) @ cell
        ids = list(range(1, n + 1))
        imgint = [
            ((int(iz) + 512) << 20) | ((int(iy) + 512) << 10) | (int(ix) + 512)
            for ix, iy, iz in image
        ]
        vel = state.get("velocities")
        if state.get("species") is not None:
            types = species_types(state["species"], self.potential).tolist()
        else:  # every atom the material's one element
            if self.settings.material.composition is not None:
                raise ValueError(
                    "state: no field 'species' for a box of an alloy "
                    f"({', '.join(self.settings.material.elements)}); expected the atomic "
                    "number of every atom"
                )
            types = [self.potential.elements.index(self.settings.material.element) + 1] * n
        self.lmp.create_atoms(
            n,
            ids,
            types,
            wrapped.ravel().tolist(),
            None if vel is None else np.asarray(vel, float).ravel().tolist(),
            imgint,
            shrinkexceed=False,
        )

    def run(self, nsteps: int) -> None:
        """Advance ``nsteps`` timesteps (no set-up/tear-down work between chunks)."""
        if nsteps > 0:
            self.lmp.command(f"run {int(nsteps)} pre no post no")
            self.step += int(nsteps)

    def cell(self) -> np.ndarray:
        lo, hi, xy, yz, xz, _, _ = self.lmp.extract_box()
        lx, ly, lz = (hi[k] - lo[k] for k in range(3))
        return np.array([[lx, 0.0, 0.0], [xy, ly, 0.0], [xz, yz, lz]])

    def _local(self, name: str, cols: int) -> np.ndarray:
        nlocal = self.lmp.extract_global("nlocal")
        arr = self.lmp.numpy.extract_atom(name)
        return np.array(arr[:nlocal], dtype=float).reshape(nlocal, cols)

    def _local_compute(self, cid: str, column: int | None) -> np.ndarray:
        lammps = import_lammps()
        nlocal = self.lmp.extract_global("nlocal")
        ctype = lammps.LMP_TYPE_VECTOR if column is None else lammps.LMP_TYPE_ARRAY
        arr = self.lmp.numpy.extract_compute(cid, lammps.LMP_STYLE_ATOM, ctype)
        arr = np.asarray(arr)[:nlocal]
        return np.array(arr if column is None else arr[:, column], dtype=float)

    def frame(self) -> dict | None:
        """The current state gathered on rank 0, ordered by atom id; ``None`` on other ranks.

        Keys: ``positions`` (N, 3) unwrapped Å, ``velocities`` (N, 3) Å/ps, ``forces`` (N, 3)
        eV/Å, ``cell`` (3, 3) Å (rows = lattice vectors), ``descriptors`` (N, 5) in
        :data:`equignnmd.descriptors.DESCRIPTOR_NAMES` order, ``thermo`` dict, ``time_fs``.
        """
        cell = self.cell()
        ids = self._local("id", 1)[:, 0].astype(np.int64)
        x = self._local("x", 3)
        image = self._local("image", 1)[:, 0].astype(np.int64)
        img = np.stack(
            [(image & 1023) - 512, ((image >> 10) & 1023) - 512, (image >> 20) - 512], axis=1
        )
        cols = [x + img @ cell, self._local("v", 3), self._local("f", 3)]
        if self.settings.descriptors:
            d = [self._local_compute(cid, col) for cid, col in desc.LAMMPS_COLUMNS]
            cols.append(np.stack(d, axis=1))
        if self.settings.energies:
            cols.append(self._local_compute("eq_pe_atom", None)[:, None])
        local = np.concatenate(cols, axis=1)
        thermo = {n: float(self.lmp.get_thermo(k)) for n, k in zip(THERMO_NAMES, THERMO_KEYS)}
        if self.size > 1:
            all_ids = self.comm.gather(ids, root=0)
            all_local = self.comm.gather(local, root=0)
            if self.rank != 0:
                return None
            ids, local = np.concatenate(all_ids), np.concatenate(all_local)
        order = np.argsort(ids)
        local = local[order]
        out = {
            "positions": local[:, 0:3],
            "velocities": local[:, 3:6],
            "forces": local[:, 6:9],
            "cell": cell,
            "thermo": thermo,
            "time_fs": self.step * self.settings.timestep_fs,
        }
        if self.settings.descriptors:
            out["descriptors"] = local[:, 9:14]
        if self.settings.energies:
            out["energies"] = local[:, -1]
            out["virial"] = self._virial_eV(cell)
        return out

    def _virial_eV(self, cell: np.ndarray) -> np.ndarray:
        """Global virial W_ab = Σ r_a f_b (xx, yy, zz, xy, xz, yz), eV, from the virial part of
        the pressure tensor (bar) × volume."""
        lammps = import_lammps()
        vec = self.lmp.numpy.extract_compute(
            "eq_virial", lammps.LMP_STYLE_GLOBAL, lammps.LMP_TYPE_VECTOR
        )
        return np.array(vec[:6], float) * abs(np.linalg.det(cell)) / NKTV2P_METAL

    def species(self) -> np.ndarray:
        """Atomic numbers of the atoms (N,), ordered by atom id (every MPI rank)."""
        types = np.ctypeslib.as_array(self.lmp.gather_atoms("type", 0, 1))
        zs = np.array([0, *(atomic_number(e) for e in self.potential.elements)], dtype=np.int64)
        return zs[np.asarray(types, dtype=np.int64)]

    def close(self) -> None:
        self.lmp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def build_structure(settings: MDSettings) -> dict[str, np.ndarray]:
    """The atoms of the box :class:`LammpsMD` builds for ``settings`` (crystal, point
    defects, slab, strain-free; an alloy's elements placed with ``composition_seed``), made
    by LAMMPS under ``pair_style zero`` (no potential needed): ``positions`` (N, 3) Å,
    ``cell`` (3, 3) Å (rows), ``species`` (N,) atomic numbers, by atom id. The one builder
    of the structures for every reference (the ASE calculators' too)."""
    elements = tuple(dict.fromkeys(settings.material.elements))
    zero = verbatim_potential("zero 1.0", ["* *"], elements)
    plain = replace(settings, potential=zero, descriptors=False, energies=False, ensemble="nve")
    with LammpsMD(plain) as md:
        frame = md.frame()
        species = md.species()
    return {"positions": frame["positions"], "cell": frame["cell"], "species": species}
