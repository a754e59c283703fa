"""Baseline error tables straight from a dataset folder (``equignnmd baselines``).

The Taylor step takes the forces the dataset recorded; a trajectory without them gets them
from the dataset's own reference (its LAMMPS potential or ASE calculator,
:func:`~equignnmd.potential.sources.reference_source`), one single point per start frame; a
dataset with neither (a converted one without forces) has no Taylor row.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from equignnmd.data.format import open_trajectories, read_index
from equignnmd.potential.sources import reference_source

from .metrics import position_errors, velocity_errors
from .predictors import predict_arrays

NAMES = ("zero", "ballistic", "taylor")


def stride_problem(tr, stride_fs: float) -> str | None:
    """Why ``stride_fs`` cannot be measured on the trajectory ``tr`` (a whole multiple of its
    ``frame_interval_fs``, no longer than the trajectory), or ``None`` when it can."""
    off = stride_fs / tr.frame_interval_fs
    if abs(off - round(off)) > 1e-6 or round(off) < 1 or round(off) >= tr.n_frames:
        return (
            f"trajectory file {tr.path}: stride {stride_fs:g} fs needs a whole multiple of "
            f"'frame_interval_fs' = {tr.frame_interval_fs:g} fs within "
            f"{tr.time_fs[-1] - tr.time_fs[0]:g} fs"
        )
    return None


def _selected(root: str | Path, temperatures_K) -> list:
    return [
        tr
        for tr in open_trajectories(root)
        if not temperatures_K or any(abs(tr.temperature_K - t) < 1e-6 for t in temperatures_K)
    ]


def measurable_strides(
    root: str | Path, strides_fs, temperatures_K=None
) -> tuple[list[float], dict[float, str]]:
    """``(strides every selected trajectory allows, {stride left out: why})``, in the order
    given (:func:`stride_problem`)."""
    trajectories = _selected(root, temperatures_K)
    kept, skipped = [], {}
    for s in strides_fs:
        why = next((w for tr in trajectories if (w := stride_problem(tr, float(s)))), None)
        if why is None:
            kept.append(float(s))
        else:
            skipped[float(s)] = why
    return kept, skipped


def start_forces(tr, frames: np.ndarray, source=None) -> np.ndarray | None:
    """Forces (F, N, 3) eV/Å on ``frames`` of the trajectory ``tr``: the recorded ones, else
    those of ``source`` (an energy source with ``forces``, e.g. the dataset's
    :func:`~equignnmd.potential.sources.reference_source`) at the recorded positions, else
    None."""
    if tr.has_forces:
        return tr.read("forces", frames)
    if source is None:
        return None
    pos, cell = tr.read("positions", frames), tr.read("cell", frames)
    n = tr.n_atoms
    fractional = np.einsum("fni,fij->fnj", pos, np.linalg.inv(cell)) % 1.0
    wrapped = np.einsum("fni,fij->fnj", fractional, cell)
    out = source.forces(
        torch.as_tensor(wrapped.reshape(-1, 3)),
        torch.as_tensor(cell),
        torch.as_tensor(np.tile(tr.species, len(frames))),
        torch.repeat_interleave(torch.arange(len(frames)), n),
    )
    return out.numpy().reshape(len(frames), n, 3)


def _reference_or_none(root: str | Path):
    """The dataset's reference source (:func:`reference_source`), or None without one."""
    try:
        return reference_source(read_index(root), f"dataset {root}")
    except ValueError:
        return None


def baseline_table(
    root: str | Path, strides_fs, max_starts: int = 200, temperatures_K=None
) -> list[dict]:
    """One row per (temperature, stride): mean/RMSE position error and velocity error of every
    baseline over up to ``max_starts`` evenly spaced start frames of the whole trajectory.

    A stride a trajectory does not allow is a ``ValueError`` (:func:`stride_problem`); use
    :func:`measurable_strides` to keep only those it does."""
    rows = []
    trajectories = _selected(root, temperatures_K)
    source = None if all(tr.has_forces for tr in trajectories) else _reference_or_none(root)
    try:
        for tr in trajectories:
            rows += _rows(tr, strides_fs, max_starts, source)
    finally:
        if source is not None:
            source.close()
    return rows


def _rows(tr, strides_fs, max_starts: int, source) -> list[dict]:
    """:func:`baseline_table`'s rows of one trajectory."""
    rows = []
    for s in strides_fs:
        why = stride_problem(tr, s)
        if why is not None:
            raise ValueError(why)
        off = int(round(s / tr.frame_interval_fs))
        starts = np.unique(np.linspace(0, tr.n_frames - off - 1, max_starts).astype(int))
        pos0 = tr.read("positions", starts)
        pos1 = tr.read("positions", starts + off)
        vel0 = tr.read("velocities", starts)
        vel1 = tr.read("velocities", starts + off)
        forces = start_forces(tr, starts, source)
        row = {"temperature_K": tr.temperature_K, "dt_fs": float(s), "pairs": len(starts)}
        for name in NAMES:
            if name == "taylor" and forces is None:
                continue
            d, v = predict_arrays(name, vel0, forces, tr.masses, s)
            pe = position_errors(d, pos1 - pos0)
            ve = velocity_errors(v, vel1)
            row[f"{name}_mean_A"] = pe["mean"]
            row[f"{name}_rmse_A"] = pe["rmse"]
            row[f"{name}_vel_mean_A_ps"] = ve["mean"]
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table, one block per temperature: mean per-atom position error, Å (mean
    velocity error, Å/ps) per baseline, and the position RMSE of every baseline, Å."""
    out = []
    for temp in sorted({r["temperature_K"] for r in rows}):
        out.append(f"\n{temp:g} K — mean per-atom position error, Å (velocity error, Å/ps)\n")
        out.append(
            "| Δt fs | zero displacement | ballistic r+vΔt | 2nd-order Taylor "
            "| position RMSE, Å: zero / ballistic / Taylor |"
        )
        out.append("|---|---|---|---|---|")
        for r in (r for r in rows if r["temperature_K"] == temp):
            cells, rmse = [], []
            for name in NAMES:
                if f"{name}_mean_A" in r:
                    cells.append(f"{r[f'{name}_mean_A']:.5f} ({r[f'{name}_vel_mean_A_ps']:.3f})")
                    rmse.append(f"{r[f'{name}_rmse_A']:.5f}")
                else:
                    cells.append("n/a (no forces, no reference)")
                    rmse.append("n/a")
            out.append(f"| {r['dt_fs']:g} | " + " | ".join(cells) + f" | {' / '.join(rmse)} |")
    return "\n".join(out)
