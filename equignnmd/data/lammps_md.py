"""A thin driver around an in-process LAMMPS simulation of a monatomic crystal or melt.

Used to generate reference data (``equignnmd generate``) and, later, to run reference MD from a
given state. Works serially and under ``mpirun`` (LAMMPS' own domain decomposition): every rank
calls the same methods, and :meth:`LammpsMD.frame` returns the gathered frame on rank 0 and
``None`` elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import descriptors as desc
from .._lammps import import_lammps, new_lammps
from ..lammps_potential import LammpsPotential, detect_potential
from ..materials import ALUMINIUM, LATTICES, Material
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
    """``potential`` as a :class:`LammpsPotential` of a monatomic box of ``material``: a
    file (path or shipped name) is detected for the material's element."""
    pot = detect_potential(potential, (material.element,))
    if pot.elements != (material.element,):
        raise ValueError(
            f"potential {pot.description}: maps LAMMPS types to {', '.join(pot.elements)}; "
            f"expected the one element of the box, {material.element}"
        )
    return pot


def relax_lattice(
    potential: LammpsPotential | Path | str,
    material: Material,
    pressure_bar: float = 0.0,
    relax_c_over_a: bool = True,
    comm=None,
) -> tuple[Material, dict]:
    """The lattice constant (and hcp's c/a) at which ``material``'s perfect crystal is at
    ``pressure_bar`` at 0 K under ``potential``.

    A LAMMPS ``minimize`` (conjugate gradient) with ``fix box/relax``: ``iso`` for the cubic
    lattices (and for hcp with ``relax_c_over_a`` False: c/a kept); x, y and z for hcp, x and
    y coupled, so that c/a relaxes; started from
    ``material.lattice_A`` (and ``c_over_a``) and run twice (box/relax measures its strain
    from the box it starts with). The atoms sit on the lattice sites, where symmetry makes
    every force zero. Returns the material with the relaxed values and a record: ``lattice_A``
    and ``c_over_a`` (Å; None for the cubic lattices), ``pe_per_atom_eV``, ``pressure_bar``
    (what is left), ``cells`` (x, y, z), ``atoms``."""
    pot = as_potential(potential, material)
    cell = material.cell_A
    cells = [max(3, math.ceil(RELAX_MIN_WIDTH_A / w)) for w in cell]
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
                "create_box 1 box",
                "create_atoms 1 box",
                f"mass 1 {material.mass_amu}",
                *pot.commands(),
                "thermo_style custom step pe press lx ly lz",
                "min_style cg",
            ]
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


@dataclass
class MDSettings:
    """One LAMMPS run. Units: metal (Å, ps, eV, amu, K, bar); times in fs."""

    potential: Path | str | LammpsPotential
    """The potential: a :class:`~equignnmd.lammps_potential.LammpsPotential`, or a file
    (path or shipped name) detected for the material's element."""
    material: Material = ALUMINIUM
    """Element, mass, lattice and lattice constant of the crystal built when no state is
    given."""
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
        cmds = ["units metal", "boundary p p p", "atom_style atomic", "atom_modify map array"]
        if s.structure not in STRUCTURES:
            raise ValueError(f"structure {s.structure!r}: expected one of {', '.join(STRUCTURES)}")
        if state is None and s.structure == "slab":
            cmds += self._slab_commands()
        elif state is None:
            cmds += [
                lattice_command(s.material),
                f"region box block 0 {s.cells} 0 {s.cells} 0 {s.cells}",
                "create_box 1 box",
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
            cmds += self._box_from_cell(np.asarray(state["cell"], float))
        self.lmp.commands_list(cmds)
        if state is not None:
            self._create_from_state(state)
        cmds = [
            f"mass 1 {s.material.mass_amu}",
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

    def _ensemble(self) -> str:
        """A slab's barostat acts in the surface plane only (x, y coupled; z is the vacuum)."""
        s = self.settings
        return "npt-xy" if s.structure == "slab" and s.ensemble == "npt" else s.ensemble

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
            "create_box 1 box",
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
        """The equilibration as ``(commands to issue first, steps)``: melting and quenching
        for ``liquid``/``quench``, NPT then strain then NVT for a strained cell; production
        continues with the last stage's fixes. Issue each with :meth:`command_stage`."""
        s = self.settings
        steps = lambda ps: int(round(ps * 1000 / s.timestep_fs))  # noqa: E731
        swap = ["unfix eq_int"] + (
            ["unfix eq_thermo"] if s.ensemble in ("csvr", "langevin") else []
        )
        ens, t = self._ensemble(), s.temperature_K
        if s.structure in ("liquid", "quench"):
            out = [([], steps(s.melt_ps))]
            if s.structure == "quench":
                out.append((swap + self._fix_commands(s.melt_K, t, ens), steps(s.quench_ps)))
            return [*out, (swap + self._fix_commands(t, t, ens), n_equilibration)]
        if any(s.strain):
            half = n_equilibration // 2
            scale = " ".join(f"{x} scale {1 + e}" for x, e in zip("xyz", s.strain))
            nvt = "nvt" if ens in ("npt", "npt-xy") else ens
            held = swap + [f"change_box all {scale} remap"] + self._fix_commands(t, t, nvt)
            return [([], half), (held, n_equilibration - half)]
        return [([], n_equilibration)]

    def command_stage(self, commands: list[str]) -> None:
        """Issue a stage's commands and set up the next run (new fixes need ``run 0``)."""
        if commands:
            self.lmp.commands_list(commands)
            self.lmp.command("run 0")

    @staticmethod
    def _box_from_cell(cell: np.ndarray) -> list[str]:
        a, b, c = cell
        if abs(a[1]) > 1e-10 or abs(a[2]) > 1e-10 or abs(b[2]) > 1e-10:
            raise ValueError(
                "state field 'cell': expected a LAMMPS-style lower-triangular cell "
                "(a along x, b in the xy plane); rotate the structure first"
            )
        tri = any(abs(v) > 1e-10 for v in (b[0], c[0], c[1]))
        prism = f"prism 0 {a[0]} 0 {b[1]} 0 {c[2]} {b[0]} {c[0]} {c[1]}"
        box = prism if tri else f"block 0 {a[0]} 0 {b[1]} 0 {c[2]}"
        return [f"region box {box} units box", "create_box 1 box"]

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
        self.lmp.create_atoms(
            n,
            ids,
            [1] * n,
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

    def masses(self) -> float:
        return self.settings.material.mass_amu

    def close(self) -> None:
        self.lmp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
