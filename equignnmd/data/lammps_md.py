"""A thin driver around an in-process LAMMPS EAM simulation of a monatomic metal.

Used to generate reference data (``equignnmd generate``) and, later, to run reference MD from a
given state. Works serially and under ``mpirun`` (LAMMPS' own domain decomposition): every rank
calls the same methods, and :meth:`LammpsMD.frame` returns the gathered frame on rank 0 and
``None`` elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import descriptors as desc
from .._lammps import import_lammps, new_lammps, pair_style_for
from ..materials import ALUMINIUM, Material
from ..units import fs_to_ps

THERMO_KEYS = ("temp", "press", "vol", "pe", "ke", "etotal")
THERMO_NAMES = ("temperature_K", "pressure_bar", "volume_A3", "pe_eV", "ke_eV", "etotal_eV")


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
        if state is None:
            cmds += [
                f"lattice {s.material.structure} {s.material.lattice_A}",
                f"region box block 0 {s.cells} 0 {s.cells} 0 {s.cells}",
                "create_box 1 box",
                "create_atoms 1 box",
            ]
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
        if state is None:
            cmds.append(
                f"velocity all create {s.velocity_scale * s.temperature_K} {s.seed} "
                "mom yes rot yes dist gaussian"
            )
        if s.descriptors:
            cmds += desc.lammps_compute_commands(s.material)
        t, tdamp, pdamp = s.temperature_K, fs_to_ps(s.tdamp_fs), fs_to_ps(s.pdamp_fs)
        if s.ensemble == "npt":
            cmds.append(
                f"fix eq_int all npt temp {t} {t} {tdamp} iso {s.pressure_bar} "
                f"{s.pressure_bar} {pdamp}"
            )
        elif s.ensemble == "nvt":
            cmds.append(f"fix eq_int all nvt temp {t} {t} {tdamp}")
        elif s.ensemble == "nve":
            cmds.append("fix eq_int all nve")
        elif s.ensemble == "csvr":  # Bussi–Donadio–Parrinello, as in our rollouts
            cmds += ["fix eq_int all nve", f"fix eq_thermo all temp/csvr {t} {t} {tdamp} {s.seed}"]
        elif s.ensemble == "langevin":
            cmds += [
                "fix eq_int all nve",
                f"fix eq_thermo all langevin {t} {t} {tdamp} {s.seed} zero yes",
            ]
        else:
            raise ValueError(
                f"ensemble {s.ensemble!r}: expected one of npt, nvt, csvr, langevin, nve"
            )
        self.lmp.commands_list(cmds)
        self.lmp.command("run 0")
        self.step = 0

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
        return out

    def masses(self) -> float:
        return self.settings.material.mass_amu

    def close(self) -> None:
        self.lmp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
