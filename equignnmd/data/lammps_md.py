"""A thin driver around an in-process LAMMPS EAM simulation of a monatomic metal.

Used to generate reference data (``equignnmd generate``) and, later, to run reference MD from a
given state. Works serially and under ``mpirun`` (LAMMPS' own domain decomposition): every rank
calls the same methods, and :meth:`LammpsMD.frame` returns the gathered frame on rank 0 and
``None`` elsewhere.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import descriptors as desc
from .._lammps import import_lammps, new_lammps, pair_style_for
from ..materials import ALUMINIUM, Material
from ..units import fs_to_ps

THERMO_KEYS = ("temp", "press", "vol", "pe", "ke", "etotal")
THERMO_NAMES = ("temperature_K", "pressure_bar", "volume_A3", "pe_eV", "ke_eV", "etotal_eV")
NKTV2P_METAL = 1.6021765e6
"""LAMMPS metal units: pressure (bar) × volume (Å³) / NKTV2P = energy (eV)."""

STRUCTURES = ("bulk", "vacancy", "divacancy", "interstitial", "slab", "liquid", "quench")
"""What :class:`LammpsMD` builds: the cubic FCC crystal (``bulk``, strained when ``strain``
is set), with one empty site near the box centre (``vacancy``), with two nearest-neighbour
empty sites (``divacancy``), with one extra atom at the octahedral site of the central cell
(``interstitial``), a free-standing film of a low-index facet (``slab``), the melt
(``liquid``: melted at ``melt_K``, then held at the temperature) and a melt cooled linearly
to the temperature over ``quench_ps`` (``quench``)."""

FACET_AXES = {
    (1, 0, 0): ((1, 0, 0), (0, 1, 0), (0, 0, 1)),
    (1, 1, 0): ((0, 0, 1), (1, -1, 0), (1, 1, 0)),
    (1, 1, 1): ((1, -1, 0), (1, 1, -2), (1, 1, 1)),
}
"""Lattice directions along x, y, z (z the surface normal) of the slab of each facet."""


def fcc_period(direction) -> float:
    """Repeat distance of the FCC lattice along a (reduced) direction [h k l], units of a."""
    norm = math.sqrt(sum(v * v for v in direction))
    return norm / 2 if sum(direction) % 2 == 0 else norm


def fcc_plane_spacing(miller) -> float:
    """Spacing of the atomic (h k l) planes of FCC, units of a."""
    norm = math.sqrt(sum(v * v for v in miller))
    return 1 / norm if all(v % 2 for v in miller) else 1 / (2 * norm)


def slab_repeats(miller, cells: int) -> tuple[int, int, int]:
    """Periods of the oriented cell along x, y, z closest to ``cells`` cubic cells each."""
    return tuple(max(1, round(cells / fcc_period(v))) for v in FACET_AXES[tuple(miller)])


def structure_atoms(structure: str, cells: int, miller=(1, 0, 0)) -> int:
    """Atoms :class:`LammpsMD` builds for ``structure`` (see :data:`STRUCTURES`)."""
    if structure == "slab":
        axes = FACET_AXES[tuple(miller)]
        cell_volume = math.prod(
            n * fcc_period(v) for n, v in zip(slab_repeats(miller, cells), axes)
        )
        return int(round(4 * cell_volume))
    extra = {"vacancy": -1, "divacancy": -2, "interstitial": 1}.get(structure, 0)
    return 4 * cells**3 + extra


@dataclass
class MDSettings:
    """One LAMMPS run. Units: metal (Å, ps, eV, amu, K, bar); times in fs."""

    potential: Path
    material: Material = ALUMINIUM
    """Element, mass and the lattice constant of the FCC crystal built when no state is given."""
    cells: int = 4
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
    """FCC crystal (or a given state) under EAM, stepped with velocity Verlet."""

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
        style = pair_style_for(Path(s.potential))
        cmds = ["units metal", "boundary p p p", "atom_style atomic", "atom_modify map array"]
        if s.structure not in STRUCTURES:
            raise ValueError(f"structure {s.structure!r}: expected one of {', '.join(STRUCTURES)}")
        if state is None and s.structure == "slab":
            cmds += self._slab_commands()
        elif state is None:
            cmds += [
                f"lattice {s.material.structure} {s.material.lattice_A}",
                f"region box block 0 {s.cells} 0 {s.cells} 0 {s.cells}",
                "create_box 1 box",
                "create_atoms 1 box",
            ]
            cmds += self._defect_commands()
            if s.vacancies:
                sites = 4 * s.cells**3
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
            f"pair_style {style}",
            f"pair_coeff * * {s.potential}" + ("" if style == "eam" else f" {s.material.element}"),
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
        a, axes = s.material.lattice_A, FACET_AXES[tuple(s.miller)]
        lengths = [n * fcc_period(v) * a for n, v in zip(slab_repeats(s.miller, s.cells), axes)]
        top = lengths[2] - fcc_plane_spacing(s.miller) * a  # the last atomic plane
        orient = " ".join(f"orient {x} {u} {v} {w}" for x, (u, v, w) in zip("xyz", axes))
        lo, hi = -s.vacuum_A / 2, top + s.vacuum_A / 2
        return [
            f"lattice fcc {a} {orient}",
            f"region box block 0 {lengths[0]} 0 {lengths[1]} {lo} {hi} units box",
            "create_box 1 box",
            f"region eq_slab block INF INF INF INF {-0.1 * a} {top + 0.1 * a} units box",
            "create_atoms 1 region eq_slab",
            "region eq_slab delete",
        ]

    def _defect_commands(self) -> list[str]:
        """Point defects at the lattice site / octahedral site nearest the box centre."""
        s = self.settings
        a, k = s.material.lattice_A, (s.cells // 2) * s.material.lattice_A
        if s.structure == "interstitial":
            c = k + a / 2
            return [f"create_atoms 1 single {c} {c} {c} units box"]
        sites = {"vacancy": [(k, k, k)], "divacancy": [(k, k, k), (k + a / 2, k + a / 2, k)]}
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
