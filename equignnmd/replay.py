"""Training on the states a rollout visits (DAgger-style replay for the trainer).

A one-step model is trained on reference states and then fed its own, slightly wrong ones. The
reference engine is at hand, so the loop can be closed: every few epochs the trainer rolls the
current model out from training states (:meth:`ReplaySet.add_round`), takes the states it
visits and labels each with the true continuation — velocity Verlet at 1 fs from that exact
state under the dataset's own reference (its LAMMPS potential or ASE calculator,
:func:`~equignnmd.data.reference_md.dataset_reference`), any number of species — recorded
every ``frame_interval_fs`` up to the
largest training stride. Each labelled continuation is one trajectory file of the dataset
format (:mod:`equignnmd.data.format`) in ``root``, so the replay set is a dataset folder that
:class:`~equignnmd.data.dataset.PairDataset` reads like any other (``train_fraction`` 1: every
pair of a replay trajectory is a training pair), that survives a killed run and that a resumed
run continues. It is bounded: beyond ``max_states`` the oldest files are dropped.
"""

from __future__ import annotations

import math
from functools import reduce
from pathlib import Path

import numpy as np
import torch

from ._lammps import resolve_potential
from .calculator import AseCalculator
from .data.format import TrajectoryWriter, read_index, write_index
from .data.lammps_md import THERMO_NAMES, MDSettings
from .data.reference_md import reference_md, state_material
from .lammps_potential import LammpsPotential

__all__ = ["ReplaySet"]


class ReplaySet:
    """The replay dataset folder ``root`` (module doc).

    Args:
        root: folder (created); ``dataset.json`` lists the files, newest last.
        strides_fs: the training strides; continuations are recorded every
            gcd(strides) fs up to max(strides).
        potential: the reference of the training data
            (:func:`~equignnmd.data.reference_md.dataset_reference`: a
            :class:`~equignnmd.lammps_potential.LammpsPotential` or an
            :class:`~equignnmd.calculator.AseCalculator`), or an EAM file.
        max_states: the most labelled states kept.
    """

    def __init__(self, root, strides_fs, potential, max_states: int = 256):
        self.root = Path(root)
        self.strides_fs = [float(s) for s in strides_fs]
        whole = [int(round(s)) for s in self.strides_fs]
        if any(abs(s - w) > 1e-9 for s, w in zip(self.strides_fs, whole)):
            raise ValueError(f"replay: strides {self.strides_fs} fs must be whole femtoseconds")
        self.frame_interval_fs = float(reduce(math.gcd, whole))
        self.horizon_fs = float(max(whole))
        reference = isinstance(potential, (LammpsPotential, AseCalculator))
        self.potential = potential if reference else resolve_potential(potential)
        self.max_states = int(max_states)
        self.root.mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------------ the index
    def files(self) -> list[dict]:
        if not (self.root / "dataset.json").exists():
            return []
        return list(read_index(self.root)["trajectories"])

    def __len__(self) -> int:
        return len(self.files())

    def _write_index(self, entries: list[dict]) -> None:
        if isinstance(self.potential, AseCalculator):  # the reference, as generate records it
            record = {"calculator": self.potential.to_dict()}
        elif isinstance(self.potential, LammpsPotential):
            record = {"lammps_potential": self.potential.to_dict()}
        else:
            record = {"potential": str(self.potential)}
        write_index(
            self.root,
            {
                "trajectories": entries,
                "test_temperatures_K": [],
                **record,
                "source": "equignnmd replay: surrogate-visited states, 1-fs reference labels",
                "frame_interval_fs": self.frame_interval_fs,
            },
        )

    # ------------------------------------------------------------------ a round
    def add_round(
        self,
        model,
        origins: list[dict],
        stride_fs: float,
        steps: int,
        round_id: int,
        seed: int = 0,
    ) -> int:
        """Roll ``model`` out NVE for ``steps`` strides of ``stride_fs`` from every origin
        (dicts with positions (N, 3) Å, velocities (N, 3) Å/ps, cell (3, 3), species (N,),
        masses (N,), temperature_K), label every visited state after the first stride with
        the reference, write one trajectory per state; returns how many were added."""
        from .rollout import RolloutState, step
        from .rollout.stages import init_stages, standard_stages

        # a resumed run redoes the round of the epoch it was killed in: replace, not append
        prefix = f"R{round_id:04d}_"
        entries = [e for e in self.files() if not e["file"].startswith(prefix)]
        added = 0
        was_training = model.training
        model.eval()
        try:
            for k, o in enumerate(origins):
                state = RolloutState.from_arrays(
                    [o["positions"]],
                    [o["velocities"]],
                    [o["cell"]],
                    [o["species"]],
                    [o["masses"]],
                    device=model.device,
                )
                stages = standard_stages()
                state = init_stages(stages, state)
                material = state_material(o["species"], o["masses"], "replay: a visited state")
                settings = MDSettings(
                    potential=self.potential,
                    material=material,
                    ensemble="nve",
                    timestep_fs=1.0,
                    descriptors=True,
                    seed=seed,
                )
                n_frames = int(round(self.horizon_fs / self.frame_interval_fs)) + 1
                for j in range(steps):
                    state = step(model, state, stride_fs, stages)
                    if not bool(torch.isfinite(state.velocities).all()):
                        break
                    visited = {
                        "positions": state.unwrapped.cpu().numpy(),
                        "velocities": state.velocities.cpu().numpy(),
                        "cell": np.asarray(o["cell"], float),
                        "species": np.asarray(o["species"]),
                    }
                    name = f"R{round_id:04d}_O{k:03d}_S{j:03d}.h5"
                    writer = TrajectoryWriter(
                        self.root / name,
                        species=o["species"],
                        masses=o["masses"],
                        temperature_K=float(o["temperature_K"]),
                        frame_interval_fs=self.frame_interval_fs,
                        thermo_names=THERMO_NAMES,
                        source="replay",
                    )
                    try:
                        with reference_md(settings, state=visited) as md:
                            for f in range(n_frames):
                                if f:
                                    md.run(int(round(self.frame_interval_fs)))
                                frame = md.frame()
                                writer.append({**frame, "time_fs": f * self.frame_interval_fs})
                        writer.finish()
                    except BaseException:
                        writer.abort()
                        raise
                    entries.append({"file": name, "temperature_K": float(o["temperature_K"])})
                    added += 1
        finally:
            model.train(was_training)
        drop, entries = entries[: -self.max_states], entries[-self.max_states :]
        self._write_index(entries)  # the index first: a file it no longer lists is unused
        for e in drop:
            (self.root / e["file"]).unlink(missing_ok=True)
        return added

    def dataset(self, **kw):
        """The replay pairs as a training :class:`PairDataset` (None while empty)."""
        from .data.dataset import PairDataset

        if not self.files():
            return None
        return PairDataset(self.root, self.strides_fs, "train", train_fraction=1.0, **kw)
