"""How much of a short-stride Taylor residual is the NPT barostat's coordinate rescaling.

LAMMPS ``fix npt`` rescales every coordinate with the box at each step, an affine motion that
neither r + vΔt nor the force-based Taylor step contains. For 1-fs pairs of a recorded
trajectory this prints the mean per-atom Taylor-2 residual |d − vΔt − ½ F/m Δt²| (Å), what is
left after removing the best affine fit ``A r + b`` of the residual, and the box strain per
stride (``docs/studies/2026-12-06-issue-15-paper-reproduction.md``, the ``paper`` ablations)::

    python studies/npt_floor.py data/paper256/T0350K.h5 [--stride-frames 1] [--every 200]

With ``--checkpoint`` the first argument is a dataset folder, and the same split is made of a
model's one-step error on the held-out pairs (issue 15: why the faithful ``paper`` model loses
to r + vΔt at 1 fs): per stride, each method's mean per-atom error against the recorded
displacement and against the displacement with the barostat's affine motion removed (the
affine fit ``A r + b`` of each pair's Taylor-2 residual, which no single-frame predictor can
know), and the model's error along the velocity, as a fraction of |vΔt| (a wrong speed of
the ballistic part) and across it. (The error columns are against the recorded frames; since
2026-12-07 the dataset's training targets leave the box motion out,
``equignnmd.data.dataset.into_start_cell``.)::

    python studies/npt_floor.py data/paper256 --checkpoint runs/paper-ablation/faithful/best.pt \
        [--strides 1,2,5,10] [--temperature 350] [--pairs 16]
"""

from __future__ import annotations

import argparse

import numpy as np

from equignnmd.data.format import Trajectory
from equignnmd.units import FTM2V


def affine_part(positions: np.ndarray, residual: np.ndarray) -> np.ndarray:
    """The best affine fit ``A r + b`` (N, 3) of a per-atom ``residual`` (N, 3) over the
    recorded (unwrapped) ``positions`` (N, 3): the barostat's motion, affine in those
    coordinates (not in wrapped ones)."""
    x = np.c_[positions, np.ones(len(positions))]
    coef, *_ = np.linalg.lstsq(x, residual, rcond=None)
    return x @ coef


def split_errors(checkpoint: str, data: str, strides, temperature_K: float, pairs: int) -> dict:
    """``{(stride_fs, method): {"error_A", "intrinsic_A", "along_v_rel", "across_A"}}`` for
    ``method`` in model / ballistic / taylor (module docstring): mean per-atom error against the
    recorded displacement and against it without the barostat's affine motion, the RMS error
    along v̂ over the RMS |vΔt|, and the mean error across v̂ (Å)."""
    import torch
    from torch_geometric.loader import DataLoader

    import equignnmd
    from equignnmd.baselines import BASELINES
    from equignnmd.data.dataset import PairDataset
    from equignnmd.units import fs_to_ps

    model = equignnmd.load_checkpoint(checkpoint, device="cpu")
    ds = PairDataset(
        data, list(strides), "test", test_temperatures_K=[temperature_K], dtype=model.dtype,
        max_samples=pairs * len(strides),
    )  # fmt: skip
    sums: dict[tuple[float, str], list[float]] = {}
    with torch.no_grad():
        for batch in DataLoader(ds, batch_size=1):
            batch = model.prepare(batch)
            s = float(batch.dt_fs)
            dt_ps = fs_to_ps(batch.dt_fs).double()
            j = int(batch.sample_id)
            tr = ds.trajectories[ds.index.traj[j]]
            t, off = int(ds.index.start[j]), int(ds.index.offset[j])
            recorded = tr.read("positions", t)  # unwrapped; a graph holds wrapped ones
            # the recorded displacement, box motion included (the dataset's targets leave it out)
            disp = torch.from_numpy(tr.read("positions", t + off) - recorded)
            vel = batch.vel.double()
            taylor = BASELINES["taylor"](batch).displacement.double()
            affine = affine_part(recorded, (disp - taylor).numpy())
            intrinsic = disp - torch.from_numpy(affine)  # without the barostat's motion
            preds = {
                "model": model(batch).displacement.double(),
                "ballistic": BASELINES["ballistic"](batch).displacement.double(),
                "taylor": taylor,
            }
            ballistic2 = ((vel * dt_ps) ** 2).sum(-1).mean()
            vhat = vel / vel.norm(dim=-1, keepdim=True)
            for name, d in preds.items():
                e = d - intrinsic
                along = (e * vhat).sum(-1)
                acc = sums.setdefault((s, name), [0.0] * 5)
                acc[0] += float((d - disp).norm(dim=-1).mean())
                acc[1] += float(e.norm(dim=-1).mean())
                acc[2] += float((along**2).mean() / ballistic2)
                acc[3] += float((e - along.unsqueeze(-1) * vhat).norm(dim=-1).mean())
                acc[4] += 1
    return {
        key: {
            "error_A": raw / n,
            "intrinsic_A": intr / n,
            "along_v_rel": (along2 / n) ** 0.5,
            "across_A": across / n,
        }
        for key, (raw, intr, along2, across, n) in sorted(sums.items())
    }


def split_table(rows: dict, temperature_K: float, pairs: int) -> str:
    """:func:`split_errors` as Markdown."""
    lines = [
        f"| Δt fs | method | error, Å | without the barostat's affine motion, Å | "
        f"RMS error along v ÷ |vΔt| | mean error across v, Å |  ({temperature_K:g} K, {pairs} "
        "pairs per stride)",
        "|---|---|---|---|---|---|",
    ]
    for (s, name), r in rows.items():
        lines.append(
            f"| {s:g} | {name} | {r['error_A']:.6f} | {r['intrinsic_A']:.6f} | "
            f"{100 * r['along_v_rel']:.2f} % | {r['across_A']:.6f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trajectory", help="a trajectory file (.h5), or with --checkpoint a dataset")
    p.add_argument("--stride-frames", type=int, default=1)
    p.add_argument("--every", type=int, default=200, help="start frames this far apart")
    p.add_argument("--checkpoint", help="split a model's one-step error too (module docstring)")
    p.add_argument("--strides", default="1,2,5,10", help="fs, with --checkpoint")
    p.add_argument("--temperature", type=float, default=350.0, help="K, with --checkpoint")
    p.add_argument("--pairs", type=int, default=16, help="pairs per stride, with --checkpoint")
    a = p.parse_args(argv)
    if a.checkpoint:
        strides = [float(x) for x in a.strides.split(",")]
        rows = split_errors(a.checkpoint, a.trajectory, strides, a.temperature, a.pairs)
        print(split_table(rows, a.temperature, a.pairs), end="")
        return 0
    traj = Trajectory(a.trajectory)
    dt_ps = 1e-3 * traj.frame_interval_fs * a.stride_frames
    taylor, affine_free, strain = [], [], []
    for t in range(0, traj.n_frames - a.stride_frames, a.every):
        f0, f1 = traj.frame(t), traj.frame(t + a.stride_frames)
        r0 = f0["positions"].astype(float)
        d = f1["positions"] - r0
        cell = f0["cell"].astype(float)
        frac = d @ np.linalg.inv(cell)
        d = (frac - np.round(frac)) @ cell  # minimum image of a short displacement
        acc = FTM2V * f0["forces"] / traj.masses[:, None]  # Å/ps²
        res = d - f0["velocities"] * dt_ps - 0.5 * acc * dt_ps**2
        taylor.append(np.linalg.norm(res, axis=1).mean())
        affine_free.append(np.linalg.norm(res - affine_part(r0, res), axis=1).mean())
        strain.append(abs(np.linalg.det(f1["cell"]) / np.linalg.det(cell) - 1) / 3)
    print(f"{traj.path.name}: {len(taylor)} pairs at {dt_ps * 1e3:g} fs")
    print(f"  Taylor-2 residual            {np.mean(taylor):.3e} Å")
    print(f"  after removing an affine fit {np.mean(affine_free):.3e} Å")
    print(f"  box strain per stride        {np.mean(strain):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
