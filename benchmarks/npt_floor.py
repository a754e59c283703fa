"""How much of a short-stride Taylor residual is the NPT barostat's coordinate rescaling.

LAMMPS ``fix npt`` rescales every coordinate with the box at each step, an affine motion that
neither r + vΔt nor the force-based Taylor step contains. For 1-fs pairs of a recorded
trajectory this prints the mean per-atom Taylor-2 residual |d − vΔt − ½ F/m Δt²| (Å), what is
left after removing the best affine fit ``A r + b`` of the residual, and the box strain per
stride (README, the ``paper`` ablations)::

    python benchmarks/npt_floor.py data/paper256/T0350K.h5 [--stride-frames 1] [--every 200]
"""

from __future__ import annotations

import argparse

import numpy as np

from equignnmd.data.format import Trajectory
from equignnmd.units import FTM2V


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("trajectory")
    p.add_argument("--stride-frames", type=int, default=1)
    p.add_argument("--every", type=int, default=200, help="start frames this far apart")
    a = p.parse_args(argv)
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
        x = np.c_[r0, np.ones(len(r0))]
        coef, *_ = np.linalg.lstsq(x, res, rcond=None)
        taylor.append(np.linalg.norm(res, axis=1).mean())
        affine_free.append(np.linalg.norm(res - x @ coef, axis=1).mean())
        strain.append(abs(np.linalg.det(f1["cell"]) / np.linalg.det(cell) - 1) / 3)
    print(f"{traj.path.name}: {len(taylor)} pairs at {dt_ps * 1e3:g} fs")
    print(f"  Taylor-2 residual            {np.mean(taylor):.3e} Å")
    print(f"  after removing an affine fit {np.mean(affine_free):.3e} Å")
    print(f"  box strain per stride        {np.mean(strain):.2e}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
