"""Knowing when a model does not know: per-atom densities against its training states' box.

A surrogate trained on bulk crystal has never seen an atom at a surface or in a liquid, and
nothing in its output says so. :class:`NoveltyBox` is a cheap test of the input instead: per
atom, three smooth densities at the model's cutoff r_c,

    ρ_{i,β} = Σ_j exp(−β r_ij / r_c) c(r_ij),   β = 1, 3, 6,

(c the polynomial envelope of :mod:`equignnmd.radial`: the energy head's density form), and the
box [min, max] of each over the training states. An atom outside the box sits in surroundings
the model never saw. Measured (docs/studies/2026-12-07-issue-34-novelty-signal.md, the
bulk-only ``equivariant-al`` v2's box from 5–800 K crystal): 20–22 % of a slab's atoms and 33 %
of a liquid's are outside at the first stride; held-out bulk inside the range at most 0.2 %;
point defects and a 3 % strain 0.2–1.2 % (not flagged by the default threshold). The rollout
measures it every stride (:class:`equignnmd.rollout.stages.NoveltyMonitor`), writes
``novelty_fraction`` to thermo.csv and warns once when a replica's fraction passes
``RolloutConfig.novelty_threshold`` (or stops, with ``novelty_stop``).

A checkpoint carries its box as the named part ``novelty`` (plain numbers);
``equignnmd novelty-box`` fits one from a dataset's training trajectories.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .data.format import held_out_files, open_trajectories, read_index
from .graph import edge_vectors, neighbour_list
from .radial import PolynomialCutoff

__all__ = ["DECAYS", "NoveltyBox", "dataset_novelty_box", "fit_novelty_box"]

DECAYS = (1.0, 3.0, 6.0)
"""The density decays β (in units of 1 / r_c): long, middle and short range."""


@dataclass(frozen=True)
class NoveltyBox:
    """The box [``low``, ``high``] of the per-atom densities (module doc) over a model's
    training states, at ``cutoff_A`` (Å) with ``decays``; ``source`` says which data."""

    cutoff_A: float
    low: tuple[float, ...]
    high: tuple[float, ...]
    decays: tuple[float, ...] = DECAYS
    source: str = ""

    def features(self, positions, cell, batch=None) -> torch.Tensor:
        """(N, D) float64 densities of ``positions`` (N, 3) Å in ``cell`` ((3, 3) or (R, 3, 3),
        rows are lattice vectors) with replica index ``batch`` (N,)."""
        pos = torch.as_tensor(positions).to(torch.float64)
        cells = torch.as_tensor(cell).to(torch.float64).reshape(-1, 3, 3).to(pos.device)
        if batch is None:
            batch = torch.zeros(len(pos), dtype=torch.long, device=pos.device)
        ei, sh = neighbour_list(pos, cells, self.cutoff_A, batch)
        r = edge_vectors(pos, cells, ei, sh, batch).norm(dim=-1)
        beta = torch.as_tensor(self.decays, dtype=torch.float64, device=pos.device)
        per_edge = torch.exp(-beta * (r / self.cutoff_A).unsqueeze(-1))
        per_edge = per_edge * PolynomialCutoff(self.cutoff_A)(r).unsqueeze(-1)
        out = torch.zeros(len(pos), len(self.decays), dtype=torch.float64, device=pos.device)
        return out.index_add_(0, ei[1], per_edge)

    def outside(self, positions, cell, batch=None) -> torch.Tensor:
        """(N,) bool: atoms with any density outside the box."""
        f = self.features(positions, cell, batch)
        low = torch.as_tensor(self.low, dtype=f.dtype, device=f.device)
        high = torch.as_tensor(self.high, dtype=f.dtype, device=f.device)
        return ((f < low) | (f > high)).any(dim=-1)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, values: dict, where: str = "novelty box") -> NoveltyBox:
        try:
            box = cls(
                cutoff_A=float(values["cutoff_A"]),
                low=tuple(float(x) for x in values["low"]),
                high=tuple(float(x) for x in values["high"]),
                decays=tuple(float(x) for x in values.get("decays", DECAYS)),
                source=str(values.get("source", "")),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(
                f"{where}: expected a mapping with 'cutoff_A', 'low', 'high' ({err})"
            ) from None
        if not (len(box.low) == len(box.high) == len(box.decays)):
            raise ValueError(f"{where}: 'low', 'high' and 'decays' differ in length")
        return box


def fit_novelty_box(
    frames: Iterable[tuple[np.ndarray, np.ndarray]], cutoff_A: float, source: str = ""
) -> NoveltyBox:
    """The box of the densities of every atom of ``frames`` ((positions (N, 3) Å, cell
    (3, 3) Å) pairs: the training states), at ``cutoff_A``."""
    probe = NoveltyBox(float(cutoff_A), (0.0,) * len(DECAYS), (0.0,) * len(DECAYS))
    low = high = None
    for positions, cell in frames:
        f = probe.features(positions, cell)
        lo, hi = f.min(0).values, f.max(0).values
        low = lo if low is None else torch.minimum(low, lo)
        high = hi if high is None else torch.maximum(high, hi)
    if low is None:
        raise ValueError("fit_novelty_box: no frames given")
    return NoveltyBox(float(cutoff_A), tuple(low.tolist()), tuple(high.tolist()), DECAYS, source)


def dataset_novelty_box(
    root, cutoff_A: float, frames_per_trajectory: int = 20, train_fraction: float = 0.8
) -> NoveltyBox:
    """The box of a dataset's training states: ``frames_per_trajectory`` evenly spaced frames
    of the training part (the first ``train_fraction``) of every trajectory that is not held
    out (its ``test`` flag, or a temperature in ``test_temperatures_K``)."""
    meta = read_index(root)
    held = held_out_files(meta)

    def frames():
        for entry, tr in zip(meta["trajectories"], open_trajectories(root)):
            if entry["file"] in held:
                continue
            last = max(int(train_fraction * tr.n_frames) - 1, 0)
            for k in np.linspace(0, last, frames_per_trajectory).round().astype(int):
                yield tr.read("positions", int(k)), tr.read("cell", int(k))

    used = [t["file"] for t in meta["trajectories"] if t["file"] not in held]
    return fit_novelty_box(frames(), cutoff_A, f"dataset {root}: {', '.join(used)}")
