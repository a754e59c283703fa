"""Normalisation statistics of a training split (what travels inside a checkpoint).

Computed by :meth:`equignnmd.data.dataset.PairDataset.statistics` from the training split
only, read by the models; data never imports models, so the record lives here (NequIP keeps
``data/stats.py`` too).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = ["TrainingStats"]


@dataclass
class TrainingStats:
    """Statistics of the training split, in metal units. Plain floats/lists: checkpoint-safe."""

    vel_rms: float = 5.0
    """RMS of one velocity component, Å/ps."""
    desc_mean: list[float] = field(default_factory=lambda: [0.0] * 5)
    desc_std: list[float] = field(default_factory=lambda: [1.0] * 5)
    strides_fs: list[float] = field(default_factory=lambda: [10.0])
    disp_rms: list[float] = field(default_factory=lambda: [0.05])
    """RMS of one displacement component per stride, Å."""
    dvel_rms: list[float] = field(default_factory=lambda: [1.0])
    """RMS of one component of v(t+Δt) − v(t) per stride, Å/ps."""
    ballistic_rms: list[float] = field(default_factory=list)
    """RMS of one component of r + vΔt's error, d − v(t)Δt, per stride, Å (the scale of the
    ``position_loss: ballistic`` loss); empty in statistics written before it existed."""
    dt_range_fs: tuple[float, float] = (1.0, 50.0)
    temperature_range_K: tuple[float, float] = (5.0, 800.0)
    number_density: float = 0.0603
    """Atoms per Å³ (FCC Al at a0 = 4.05 Å)."""
    species: list[int] = field(default_factory=lambda: [13])
    """Atomic numbers of the data's species, sorted, over every trajectory of the dataset
    (held-out ones too): the rows of the models' species inputs (the ``equivariant`` one-hot,
    the ``paper`` embedding unless its config names them, the ``symplectic`` potential's
    per-species functions), in this order."""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["dt_range_fs"] = list(self.dt_range_fs)
        d["temperature_range_K"] = list(self.temperature_range_K)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None, source: str = "stats") -> TrainingStats:
        """The record from :meth:`to_dict`'s mapping; a field this version does not know is an
        error naming ``source`` (a checkpoint from a newer equignnmd, or a corrupted one),
        never silently dropped. Missing fields take their defaults."""
        if d is None:
            return cls()
        unknown = sorted(set(d) - set(cls.__dataclass_fields__))
        if unknown:
            raise ValueError(
                f"{source}: unknown field(s) {unknown}; expected only "
                f"{sorted(cls.__dataclass_fields__)}"
            )
        known = dict(d)
        for key in ("dt_range_fs", "temperature_range_K"):
            if key in known:
                known[key] = tuple(float(x) for x in known[key])
        return cls(**known)

    def avg_num_neighbours(self, cutoff: float) -> float:
        return float(self.number_density * 4.0 / 3.0 * np.pi * cutoff**3)
