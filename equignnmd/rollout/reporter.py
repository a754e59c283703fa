"""What a rollout writes, as it goes: an observer attached to the run, apart from the stepping.

In ``out_dir``: ``replica_000.extxyz`` (or ``.lammpstrj``) per replica every ``write_every``
steps (see :mod:`equignnmd.io`), ``thermo.csv`` every ``thermo_every`` steps (columns
:data:`THERMO_COLUMNS`; ``wall_s`` and ``ns_per_day`` are the speed as
:mod:`equignnmd.rollout.engine` defines it: cumulative over the rollout loop, setup excluded,
so the last row agrees with the run's summary), and ``rollout.json`` (settings and how the
run ended), replaced atomically whenever it changes. Every frame and row is flushed, so the
files of a run that stopped (or was killed) stay readable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..io import TRAJECTORY_SUFFIX, image_flags, open_writer
from .state import RolloutState

__all__ = ["THERMO_COLUMNS", "RolloutReporter"]

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


class RolloutReporter:
    """Trajectory frames, ``thermo.csv`` rows and ``rollout.json`` of one run in ``out_dir``.

    Called like any rollout observer, ``reporter(state, thermo)``, at step 0 and after every
    step (``thermo`` as :meth:`equignnmd.rollout.Rollout.attach` describes): it writes a frame
    when ``step % write_every == 0`` and a row when ``step % thermo_every == 0``, and both for
    the state the guard stopped at (frames only where finite, tagged ``unstable``).
    :meth:`update` merges fields into ``rollout.json``.
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
    ):
        self.out_dir = Path(out_dir)
        self.extra_columns = tuple(extra_columns)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.write_every = int(write_every)
        self.thermo_every = int(thermo_every or (self.write_every or 1))
        self.writers = []
        self.files: dict = {}
        if self.write_every > 0:
            suffix = TRAJECTORY_SUFFIX[fmt]
            self.writers = [
                open_writer(self.out_dir / f"replica_{r:03d}{suffix}", fmt)
                for r in range(n_replicas)
            ]
            self.files["trajectories"] = [str(w.path) for w in self.writers]
        self.files["thermo"] = str(self.out_dir / "thermo.csv")
        self.thermo_file = open(self.files["thermo"], "w")  # noqa: SIM115 - kept open
        self.thermo_file.write(",".join(THERMO_COLUMNS + self.extra_columns) + "\n")
        self.thermo_file.flush()
        self.files["metadata"] = str(self.out_dir / "rollout.json")
        self.metadata = {**(metadata or {}), "format": fmt, "write_every": self.write_every}
        self.metadata["thermo_every"] = self.thermo_every
        self.update()

    def __call__(self, state: RolloutState, thermo: dict) -> None:
        unstable = thermo.get("unstable")
        if self.writers and (unstable or state.step % self.write_every == 0):
            self._write_frames(state, thermo, {"unstable": unstable} if unstable else None)
        if unstable or state.step % self.thermo_every == 0:
            self._write_thermo(state, thermo)

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
