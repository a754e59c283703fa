"""What a rollout writes, as it goes: an observer attached to the run, apart from the stepping.

In ``out_dir``: ``replica_000.extxyz`` (or ``.lammpstrj``) per replica every ``write_every``
steps (see :mod:`equignnmd.io`), ``thermo.csv`` every ``thermo_every`` steps (columns
:data:`THERMO_COLUMNS`; ``wall_s`` and ``ns_per_day`` are the speed as
:mod:`equignnmd.rollout.engine` defines it: cumulative over the rollout loop, setup excluded,
so the last row agrees with the run's summary), and ``rollout.json`` (settings and how the
run ended, ``steps_done`` as it goes), replaced atomically whenever it changes. Every frame
and row is flushed, so the files of a run that stopped (or was killed) stay readable.

``restart.pt`` (every ``restart_every`` steps and at the end, replaced atomically): the state
(:meth:`RolloutState.state_dict`: positions, velocities, step, the replicas' random streams,
the stages' own state and Verlet list), the settings a resumed run must share, and the size
of every file at that step. :func:`read_restart` reads it; a reporter made with
``resume=`` cuts each file back to that size (dropping what a killed run wrote after its
last restart) and appends, so that the files of a resumed run equal an uninterrupted one's.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..io import TRAJECTORY_SUFFIX, image_flags, open_writer
from .state import RolloutState

__all__ = [
    "RESTART_FILE",
    "THERMO_COLUMNS",
    "RolloutReporter",
    "RolloutRestart",
    "read_restart",
    "save_restart",
]

RESTART_FILE = "restart.pt"
RESTART_FORMAT = 1

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


@dataclass
class RolloutRestart:
    """What ``restart.pt`` holds: the ``state`` to continue from, the ``settings`` the run was
    made with (a resumed run must share them) and ``file_sizes`` (bytes, by file name in the
    folder) of the outputs at ``state.step``."""

    path: Path
    state: RolloutState
    settings: dict
    file_sizes: dict[str, int]


def save_restart(
    path: str | os.PathLike, state: RolloutState, settings: dict, file_sizes: dict | None = None
) -> None:
    """Write a restart file for ``state`` atomically (a kill leaves the previous one)."""
    path = Path(path)
    saved = {
        "format": RESTART_FORMAT,
        "state": state.state_dict(),
        "settings": settings,
        "files": dict(file_sizes or {}),
    }
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(saved, tmp)
    os.replace(tmp, path)


def read_restart(path: str | os.PathLike, device=None) -> RolloutRestart:
    """The restart file ``path`` (or the one of the run in the folder ``path``), its tensors
    on ``device``.

    Raises ``FileNotFoundError`` / ``ValueError`` naming the file when there is none (a run
    killed before its first restart, or written without one) or it cannot be read."""
    path = Path(path)
    path = path / RESTART_FILE if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(
            f"cannot resume: {path} does not exist; expected the restart file a rollout writes "
            "into its output folder every restart_every steps (start anew with --overwrite)"
        )
    try:  # our own file: it pickles the stages' state (a Verlet list), not only tensors
        saved = torch.load(path, map_location=device, weights_only=False)
    except Exception as err:
        raise ValueError(f"cannot resume: {path} is not a readable restart file ({err})") from err
    if not isinstance(saved, dict) or saved.get("format") != RESTART_FORMAT:
        raise ValueError(f"cannot resume: {path} is not a restart file of format {RESTART_FORMAT}")
    return RolloutRestart(
        path=path,
        state=RolloutState.from_state_dict(saved["state"], device=device),
        settings=saved["settings"],
        file_sizes=saved["files"],
    )


class RolloutReporter:
    """Trajectory frames, ``thermo.csv`` rows and ``rollout.json`` of one run in ``out_dir``.

    Called like any rollout observer, ``reporter(state, thermo)``, at step 0 and after every
    step (``thermo`` as :meth:`equignnmd.rollout.Rollout.attach` describes): it writes a frame
    when ``step % write_every == 0`` and a row when ``step % thermo_every == 0``, and both for
    the state the guard stopped at (frames only where finite, tagged ``unstable``).
    :meth:`update` merges fields into ``rollout.json``; :meth:`checkpoint` writes the restart
    file (also called every ``restart_every`` steps; ``settings``: what a resumed run must
    share). ``resume``: continue the files of the run :func:`read_restart` read.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        n_replicas: int,
        fmt: str = "extxyz",
        write_every: int = 10,
        thermo_every: int | None = None,
        metadata: dict | None = None,
        extra_columns: tuple[str, ...] = (),
        restart_every: int = 0,
        settings: dict | None = None,
        resume: RolloutRestart | None = None,
    ):
        self.out_dir = Path(out_dir)
        self.extra_columns = tuple(extra_columns)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.write_every = int(write_every)
        self.thermo_every = int(thermo_every or (self.write_every or 1))
        self.restart_every = int(restart_every)
        self.settings = dict(settings or {})
        self.last_restart_step: int | None = None
        if resume is not None:
            self._cut_back(resume.file_sizes)
        append = resume is not None
        self.writers = []
        self.files: dict = {}
        if self.write_every > 0:
            suffix = TRAJECTORY_SUFFIX[fmt]
            self.writers = [
                open_writer(self.out_dir / f"replica_{r:03d}{suffix}", fmt, append=append)
                for r in range(n_replicas)
            ]
            self.files["trajectories"] = [str(w.path) for w in self.writers]
        self.files["thermo"] = str(self.out_dir / "thermo.csv")
        self.thermo_file = open(self.files["thermo"], "a" if append else "w")  # noqa: SIM115
        if not append:
            self.thermo_file.write(",".join(THERMO_COLUMNS + self.extra_columns) + "\n")
            self.thermo_file.flush()
        self.files["metadata"] = str(self.out_dir / "rollout.json")
        self.files["restart"] = str(self.out_dir / RESTART_FILE)
        self.metadata = {**(metadata or {}), "format": fmt, "write_every": self.write_every}
        self.metadata["thermo_every"] = self.thermo_every
        self.metadata["restart_every"] = self.restart_every
        if resume is not None:
            self.last_restart_step = resume.state.step
            previous = _read_json(self.out_dir / "rollout.json")
            self.metadata["resumed_at_steps"] = [
                *previous.get("resumed_at_steps", []),
                resume.state.step,
            ]
            self.metadata["steps_done"] = resume.state.step
        self.update()

    def _cut_back(self, sizes: dict[str, int]) -> None:
        """Every output file back to its size at the restart (what a killed run wrote after
        its last restart goes; a frame or row cut in half by the kill goes with it)."""
        for name, size in sizes.items():
            path = self.out_dir / name
            have = path.stat().st_size if path.is_file() else -1
            if have < size:
                raise ValueError(
                    f"cannot resume: {path} has {max(have, 0)} bytes, fewer than the {size} it "
                    f"had at the restart; expected the files of the run as it left them"
                )
            os.truncate(path, size)

    def __call__(self, state: RolloutState, thermo: dict) -> None:
        unstable = thermo.get("unstable")
        if self.writers and (unstable or state.step % self.write_every == 0):
            self._write_frames(state, thermo, {"unstable": unstable} if unstable else None)
        if unstable or state.step % self.thermo_every == 0:
            self._write_thermo(state, thermo)
        if not unstable and self.restart_every and state.step % self.restart_every == 0:
            self.checkpoint(state)

    def checkpoint(self, state: RolloutState) -> None:
        """Write ``restart.pt`` for ``state`` (atomically; after the frames and rows of its
        step, whose file sizes it records) and ``steps_done`` into ``rollout.json``."""
        if self.last_restart_step == state.step:
            return
        names = [Path(w.path).name for w in self.writers] + ["thermo.csv"]
        sizes = {name: (self.out_dir / name).stat().st_size for name in names}
        save_restart(self.files["restart"], state, self.settings, sizes)
        self.last_restart_step = state.step
        self.update(steps_done=state.step)

    def update(self, **fields) -> None:
        """Merge ``fields`` into ``rollout.json`` and replace the file."""
        self.metadata.update(fields)
        meta = {**self.metadata, "files": self.files}
        # rewritten as the run goes (finite differences seen, how it ended): a reader or a
        # kill mid-write must find the previous version, never half a file
        path = Path(self.files["metadata"])
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(meta, indent=2) + "\n")
        os.replace(tmp, path)

    def _write_frames(self, state: RolloutState, thermo: dict, info: dict | None) -> None:
        pos = state.positions.detach().cpu().numpy()
        unw = state.unwrapped.detach().cpu().numpy()
        vel = state.velocities.detach().cpu().numpy()
        cell = state.cell.cpu().numpy()
        species = state.species.cpu().numpy()
        masses = state.masses.cpu().numpy()
        ptr = state.ptr.tolist()
        for r, writer in enumerate(self.writers):
            s = slice(ptr[r], ptr[r + 1])
            if not (np.isfinite(pos[s]).all() and np.isfinite(vel[s]).all()):
                continue
            image = image_flags(unw[s], pos[s], cell[r]) if np.isfinite(unw[s]).all() else None
            writer.write(
                pos[s],
                vel[s],
                cell[r],
                species[s],
                masses=masses[s],
                image=image,
                step=state.step,
                time_fs=thermo["time_fs"],
                temperature_K=float(thermo["temperature_K"][r]),
                info={"replica": r, **(info or {})},
            )

    def _write_thermo(self, state: RolloutState, thermo: dict) -> None:
        lines = []
        for r in range(state.n_replicas):
            row = (
                state.step,
                thermo["time_ps"],
                r,
                thermo["temperature_K"][r],
                thermo["kinetic_energy_eV"][r],
                thermo["momentum_amu_A_per_ps"][r],
                thermo["min_distance_A"][r],
                thermo["wall_s"],
                thermo["ns_per_day"],
            )
            line = "{},{:.6f},{},{:.6g},{:.8g},{:.6g},{:.6g},{:.4f},{:.6g}".format(*row)
            extra = [f"{float(thermo[c][r]):.10g}" for c in self.extra_columns if c in thermo]
            lines.append(",".join([line, *extra]))
        self.thermo_file.write("\n".join(lines) + "\n")
        self.thermo_file.flush()

    def close(self) -> None:
        for w in self.writers:
            w.close()
        if not self.thermo_file.closed:
            self.thermo_file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):  # rewritten atomically: missing, not half-written
        return {}
