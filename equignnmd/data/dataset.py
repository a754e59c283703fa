"""Pairs (frame t, frame t + Δt) from a dataset folder, read lazily, split in time.

Split rule, per trajectory: the first ``train_fraction`` (80 %) of frames are *train*, the rest
*val*; a pair belongs to a split only when both of its frames do, so no pair crosses the
boundary. Trajectories whose temperature is listed in ``test_temperatures_K`` are held out
whole as the *test* split (and never appear in train or val); in a dataset of several
structures (``equignnmd generate`` with ``states``) the entries' own ``test`` flags decide, so
a held-out geometry (a facet) at a trained temperature stays out too. Targets are displacements of the
unwrapped coordinates, with the barostat's motion of the box taken out (:func:`into_start_cell`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..graph import check_box, make_data
from ..units import fs_to_ps
from .stats import TrainingStats
from .format import Trajectory, read_index

SPLITS = ("train", "val", "test")


@dataclass
class PairIndex:
    traj: np.ndarray  # (P,) trajectory number
    start: np.ndarray  # (P,) frame t
    offset: np.ndarray  # (P,) frames between t and t + Δt
    stride_fs: np.ndarray  # (P,) Δt in fs

    def __len__(self) -> int:
        return len(self.traj)


def into_start_cell(
    later: np.ndarray,
    later_cells: np.ndarray,
    start_cell: np.ndarray,
    start: dict,
    later_velocities: np.ndarray,
    dt_fs: np.ndarray,
) -> np.ndarray:
    """Later unwrapped positions ``later`` (K, N, 3) Å of an NPT trajectory mapped into the
    box of the start frame: fractional coordinates in their own cells ``later_cells`` (K, 3, 3)
    (rows = lattice vectors) times ``start_cell`` (3, 3).

    Why: an NPT barostat rescales every coordinate with the box at each step, an affine motion
    that no state at t determines (it follows the barostat's own momentum) and that a rollout
    in a fixed box never makes; left in the targets it is a floor under every one-step error
    (SevenNet-0 data, 5 fs: 99 % of the Taylor residual, ``studies/npt_floor.py``). LAMMPS
    dilates about the box centre, so a uniform shift remains after the map; the centre of mass
    is put back where its momentum takes it, ``Δt (Σ m (v_t + v_t+Δt) / 2) / Σ m`` for each
    later frame (exact while the total momentum is constant, as under Nosé–Hoover and MTK).
    ``start`` holds ``positions`` (N, 3), ``velocities`` (N, 3) Å/ps and ``masses`` (N,) amu;
    ``later_velocities`` (K, N, 3) Å/ps; ``dt_fs`` (K,) time from the start frame (negative
    for a time-reversed sample, which reads the frames backwards).
    """
    frac = np.linalg.solve(later_cells.transpose(0, 2, 1), later.transpose(0, 2, 1))
    mapped = frac.transpose(0, 2, 1) @ start_cell
    w = start["masses"][None, :, None] / start["masses"].sum()
    com_now = np.sum(w * (mapped - start["positions"][None]), axis=1)  # (K, 3)
    mean_v = np.sum(w * 0.5 * (start["velocities"][None] + later_velocities), axis=1)
    com_due = mean_v * fs_to_ps(np.asarray(dt_fs, dtype=float))[:, None]
    return mapped + (com_due - com_now)[:, None, :]


def parse_strides(text: str | list | tuple) -> list[float]:
    if isinstance(text, str):
        parts = [p for p in text.replace(" ", "").split(",") if p]
    else:
        parts = list(text)
    try:
        strides = [float(p) for p in parts]
    except ValueError as err:
        raise ValueError(f"strides {text!r}: expected comma-separated numbers in fs") from err
    if not strides or any(s <= 0 for s in strides):
        raise ValueError(f"strides {text!r}: expected positive numbers in fs")
    return strides


class PairDataset(Dataset):
    """Samples of one split as PyG ``Data`` (see :func:`equignnmd.graph.make_data`).

    Each sample carries the state at t (``pos``, ``vel``, ``cell``, ``descriptors`` when
    recorded, ``forces`` when recorded) and the targets ``disp`` (N, 3) Å and ``vel_next``
    (N, 3) Å/ps at t + Δt. ``start_every_fs`` thins the start frames (consecutive 1-fs frames
    are nearly identical); ``max_samples`` caps the split with an evenly spaced subset.

    ``time_reversal`` doubles the split with the time-reversed pairs: for a pair
    (r_t, v_t) → (r_t+Δt, v_t+Δt) of Hamiltonian dynamics, (r_t+Δt, −v_t+Δt) → (r_t, −v_t) is
    exact too (samples ``len/2 …`` are the reversed copies of ``0 … len/2``). FlashMD and
    TrajCast train with it; it teaches the map the symmetry that makes long NVE runs stable.

    ``unroll`` = K > 1 strides per sample: the frames t, t + Δt, …, t + KΔt must all lie in
    the split, and the sample also carries ``disp_unroll`` (N, K, 3) Å (from t) and
    ``vel_unroll`` (N, K, 3) Å/ps, the targets of a loss unrolled through the model's own
    outputs (``disp``/``vel_next`` are their first stride).
    The reference trajectories are thermostatted (NPT Nosé–Hoover, τ ≫ Δt), so the reversal
    holds to the thermostat's weak coupling over one stride.
    """

    def __init__(
        self,
        root: str | Path,
        strides_fs,
        split: str = "train",
        train_fraction: float = 0.8,
        test_temperatures_K: list[float] | None = None,
        start_every_fs: float | None = None,
        max_samples: int | None = None,
        dtype: torch.dtype = torch.float32,
        cutoff: float | None = None,
        time_reversal: bool = False,
        unroll: int = 1,
    ):
        if split not in SPLITS:
            raise ValueError(f"split {split!r}: expected one of {SPLITS}")
        self.root = Path(root)
        self.meta = read_index(self.root)
        self.split = split
        self.dtype = dtype
        self.strides_fs = parse_strides(strides_fs)
        self.time_reversal = bool(time_reversal)
        self.unroll = int(unroll)
        if self.unroll < 1:
            raise ValueError(f"unroll = {unroll}: expected ≥ 1 strides per sample")
        entries = self.meta["trajectories"]
        # a dataset of several structures holds out geometries (a facet) at temperatures that
        # are trained on in other states: its entries' own ``test`` flags decide, unless
        # temperatures are asked for
        self.held_out_files = None
        if test_temperatures_K is None and any("structure" in t for t in entries):
            self.held_out_files = {t["file"] for t in entries if t.get("test")}
        if test_temperatures_K is None:
            test_temperatures_K = self.meta.get("test_temperatures_K", [])
        self.test_temperatures_K = [float(t) for t in test_temperatures_K]
        self.trajectories = [Trajectory(self.root / t["file"]) for t in entries]
        if cutoff is not None:
            for tr in self.trajectories:
                check_box(tr.read("cell", 0), cutoff, where=f"trajectory file {tr.path}")
        self.index = self._build_index(train_fraction, start_every_fs)
        if max_samples is not None and len(self.index) > max_samples:
            keep = np.linspace(0, len(self.index) - 1, max_samples).round().astype(int)
            self.index = PairIndex(
                *(getattr(self.index, f)[keep] for f in PairIndex.__annotations__)
            )

    def _is_test(self, tr: Trajectory) -> bool:
        if self.held_out_files is not None:
            return tr.path.name in self.held_out_files
        return any(abs(tr.temperature_K - t) < 1e-6 for t in self.test_temperatures_K)

    def _build_index(self, train_fraction: float, start_every_fs: float | None) -> PairIndex:
        cols: list[list[np.ndarray]] = [[], [], [], []]
        for k, tr in enumerate(self.trajectories):
            dt = tr.frame_interval_fs
            duration = tr.time_fs[-1] - tr.time_fs[0]
            for s in self.strides_fs:
                ratio = s / dt
                if abs(ratio - round(ratio)) > 1e-6:
                    raise ValueError(
                        f"trajectory file {tr.path}: stride {s} fs is not a whole multiple of "
                        f"the frame interval 'frame_interval_fs' = {dt} fs"
                    )
                if s > duration:
                    raise ValueError(
                        f"trajectory file {tr.path}: stride {s} fs is longer than the "
                        f"trajectory ('time_fs' spans {duration} fs)"
                    )
            if self._is_test(tr) != (self.split == "test"):
                continue
            n = tr.n_frames
            boundary = int(np.floor(train_fraction * n))
            lo, hi = (0, boundary) if self.split == "train" else (boundary, n)
            if self.split == "test":
                lo, hi = 0, n
            every = max(1, int(round((start_every_fs or dt) / dt)))
            for s in self.strides_fs:
                off = int(round(s / dt))
                starts = np.arange(lo, hi - self.unroll * off, every)
                cols[0].append(np.full(len(starts), k))
                cols[1].append(starts)
                cols[2].append(np.full(len(starts), off))
                cols[3].append(np.full(len(starts), s, dtype=float))
        arrays = [np.concatenate(c) if c else np.zeros(0) for c in cols]
        return PairIndex(
            arrays[0].astype(np.int64),
            arrays[1].astype(np.int64),
            arrays[2].astype(np.int64),
            arrays[3].astype(np.float64),
        )

    def __len__(self) -> int:
        return len(self.index) * (2 if self.time_reversal else 1)

    def raw(self, i: int) -> dict:
        """Arrays of sample ``i``: state at t, targets at t + Δt, metadata (for a reversed
        sample, ``i ≥ len/2``: the state at t + KΔt with velocities flipped, and the targets
        back to t, flipped; ``reversed`` says which)."""
        n = len(self.index)
        if not 0 <= i < len(self):
            raise IndexError(f"sample {i} of a split with {len(self)} samples")
        back = i >= n
        j = i - n if back else i
        tr = self.trajectories[self.index.traj[j]]
        t, off, k = int(self.index.start[j]), int(self.index.offset[j]), self.unroll
        frames = [t + m * off for m in range(k + 1)]
        sign = 1.0
        if back:  # (r_t+KΔt, −v) → … → (r_t, −v): the same frames, read backwards
            frames, sign = frames[::-1], -1.0
        a = tr.frame(frames[0])
        later = [tr.frame(f, fields=("positions", "velocities")) for f in frames[1:]]
        pos = np.stack([b["positions"] for b in later])
        cells = np.stack([b["cell"] for b in later])
        vel = np.stack([b["velocities"] for b in later])
        if np.any(cells != a["cell"]):  # an NPT barostat moved the box: not dynamics
            elapsed_fs = np.array([b["time_fs"] - a["time_fs"] for b in later])  # < 0 reversed
            start = {**a, "masses": tr.masses}
            pos = into_start_cell(pos, cells, a["cell"], start, vel, elapsed_fs)
        disp = (pos - a["positions"][None]).transpose(1, 0, 2)
        vel = sign * vel.transpose(1, 0, 2)
        out = {
            **a,
            "velocities": sign * a["velocities"],
            "species": tr.species,
            "masses": tr.masses,
            "disp": disp[:, 0],
            "vel_next": vel[:, 0],
            "dt_fs": float(self.index.stride_fs[j]),
            "temperature_K": tr.temperature_K,
            "reversed": back,
        }
        if k > 1:
            out["disp_unroll"], out["vel_unroll"] = disp, vel
        return out

    def __getitem__(self, i: int):
        r = self.raw(i)
        extra = {"disp": r["disp"], "vel_next": r["vel_next"], "sample_id": np.array([i])}
        if "disp_unroll" in r:
            extra["disp_unroll"], extra["vel_unroll"] = r["disp_unroll"], r["vel_unroll"]
        if "forces" in r:
            extra["forces"] = r["forces"]
        return make_data(
            r["positions"],
            r["velocities"],
            r["cell"],
            r["species"],
            r["masses"],
            dt_fs=r["dt_fs"],
            temperature_K=r["temperature_K"],
            descriptors=r.get("descriptors"),
            dtype=self.dtype,
            **extra,
        )

    def summary(self) -> dict:
        temps = sorted({self.trajectories[k].temperature_K for k in np.unique(self.index.traj)})
        return {
            "root": str(self.root),
            "split": self.split,
            "samples": len(self),
            "time_reversal": self.time_reversal,
            "unroll": self.unroll,
            "strides_fs": self.strides_fs,
            "temperatures_K": temps,
            "atoms": [tr.n_atoms for tr in self.trajectories],
        }

    def statistics(self, max_pairs_per_stride: int = 64) -> TrainingStats:
        """Normalisation statistics of this split (call it on the training split only).

        Descriptor mean/std come from the recorded descriptors of the sampled start frames;
        frames without recorded ones (e.g. datasets made by ``equignnmd convert``) get them
        from :func:`equignnmd.descriptors.compute_descriptors`, the same code the ``paper``
        model runs at rollout time, so the model never sees unnormalised descriptors.
        """
        if len(self) == 0:
            raise ValueError(f"dataset {self.root}: split '{self.split}' has no samples")
        rng = np.random.default_rng(0)
        vel, desc, disp_rms, dvel_rms, ballistic_rms, density = [], [], [], [], [], []
        # start frames without recorded descriptors, (trajectory, frame) per sampled pair;
        # a frame picked at several strides is computed once but counted like recorded ones
        unrecorded: list[tuple[int, int]] = []
        states: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        for s in self.strides_fs:
            idx = np.flatnonzero(self.index.stride_fs == s)
            if len(idx) == 0:
                raise ValueError(f"dataset {self.root}: no '{self.split}' pairs at stride {s} fs")
            pick = rng.choice(idx, size=min(max_pairs_per_stride, len(idx)), replace=False)
            d2, dv2, b2 = [], [], []
            for i in pick:
                r = self.raw(int(i))
                d2.append(np.mean(r["disp"] ** 2))
                b2.append(np.mean((r["disp"] - r["velocities"] * fs_to_ps(s)) ** 2))
                dv2.append(np.mean((r["vel_next"] - r["velocities"]) ** 2))
                vel.append(np.mean(r["velocities"].astype(np.float64) ** 2))
                if "descriptors" in r:
                    desc.append(r["descriptors"].astype(np.float64))
                else:
                    key = (int(self.index.traj[i]), int(self.index.start[i]))
                    unrecorded.append(key)
                    states[key] = (r["positions"], r["cell"])
                density.append(len(r["positions"]) / abs(np.linalg.det(r["cell"])))
            disp_rms.append(float(np.sqrt(np.mean(d2))))
            dvel_rms.append(float(np.sqrt(np.mean(dv2))))
            ballistic_rms.append(float(np.sqrt(np.mean(b2))))
        temps = [tr.temperature_K for tr in self.trajectories if not self._is_test(tr)]
        computed = dict(zip(states, _computed_descriptors(list(states.values()))))
        desc += [computed[key] for key in unrecorded]
        if desc:
            alld = np.concatenate(desc)
            mean, std = alld.mean(0), np.maximum(alld.std(0), 1e-6)
        else:
            mean, std = np.zeros(5), np.ones(5)
        species = sorted({int(z) for tr in self.trajectories for z in np.unique(tr.species)})
        return TrainingStats(
            vel_rms=float(np.sqrt(np.mean(vel))),
            desc_mean=mean.tolist(),
            desc_std=std.tolist(),
            strides_fs=list(self.strides_fs),
            disp_rms=disp_rms,
            dvel_rms=dvel_rms,
            ballistic_rms=ballistic_rms,
            dt_range_fs=(min(self.strides_fs), max(self.strides_fs)),
            temperature_range_K=(min(temps), max(temps)),
            number_density=float(np.mean(density)),
            species=species,
        )


def _computed_descriptors(frames: list[tuple[np.ndarray, np.ndarray]], max_atoms: int = 65536):
    """Descriptors (N, 5) float64 of every ``(positions (N, 3) Å, cell (3, 3) Å)`` frame, by
    :func:`equignnmd.descriptors.compute_descriptors`. Frames go through in batches of up to
    ``max_atoms`` atoms: one call per batch is ~6× faster than one per 256-atom frame, and the
    cap bounds the neighbour tables' memory for large boxes."""
    from ..descriptors import compute_descriptors

    out: list[np.ndarray] = []
    sizes = np.array([len(p) for p, _ in frames], dtype=np.int64)
    lo = 0
    while lo < len(frames):
        fit = int(np.searchsorted(np.cumsum(sizes[lo:]), max_atoms, side="right"))
        hi = lo + max(1, fit)
        pos = torch.as_tensor(np.concatenate([p for p, _ in frames[lo:hi]]), dtype=torch.float64)
        cell = torch.as_tensor(np.stack([c for _, c in frames[lo:hi]]), dtype=torch.float64)
        batch = torch.repeat_interleave(torch.arange(hi - lo), torch.as_tensor(sizes[lo:hi]))
        d = compute_descriptors(pos, cell, batch).numpy()
        out += np.split(d, np.cumsum(sizes[lo:hi])[:-1])
        lo = hi
    return out
