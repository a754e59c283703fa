"""Site drift of a checkpoint's NVT runs against LAMMPS's, over several independent draws
(issue 12: "no site drift beyond LAMMPS's").

The site drift of one run (:func:`equignnmd.analysis.site_drift`: the mean distance between
each atom's average position over the first and over the last 2 ps) is set by the few longest
waves of the box, so one run scatters by ±5 % about its mean — as much as the effect being
judged. Here every draw is a new equilibrated LAMMPS state and new thermostat noise
(``fidelity``'s own :func:`~equignnmd.fidelity.equilibrated_state` and :func:`~equignnmd.
fidelity.surrogate_run`, LAMMPS by :func:`~equignnmd.data.reference_md.lammps_reference`;
CSVR, τ = ``tau_strides`` strides); the model and LAMMPS both run from it, and the means are
compared with their standard errors (Welch's t); the mean-square displacement plateau, the
mean temperature and the long-wave kinetic temperature ratio are reported beside them.
``--energy`` rescales the model's runs to conserve the reference's or its own energy (the
issue's "mean T within 2 % / 5 %" targets); ``--lammps-fs 5`` runs LAMMPS with the 5-fs
velocity Verlet step the shipped model takes, which separates the step's effect from the
potential's.

    python studies/site_drift.py --checkpoint pretrained:symplectic-al --temperature 450 \
        --stride 20 --seeds 2101-2106 [--nvt-ps 100] [--tau-strides 100] [--lammps-fs 1] \
        [--energy none|reference|model] [--out FILE.json]

A draw takes ~4 minutes per 100 ps on one thread (500 atoms); the JSON is rewritten after each
draw, and a rerun with the same ``--out`` skips the draws it already holds.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np


def seeds_of(text: str) -> list[int]:
    """ "2101-2106" or "2101,2105" → seeds."""
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def scores(positions, velocities, cell, masses, stride_fs: float) -> dict:
    """Site drift (Å), MSD plateau (Å²), mean T (K) and long-wave T ratio of one NVT run."""
    from equignnmd import analysis
    from equignnmd.fidelity import SITE_DRIFT_WINDOW_PS
    from equignnmd.units import ps_to_fs

    temps = analysis.kinetic_temperature(velocities, masses)
    _, msd = analysis.msd(positions, masses, origins="first")
    _, t_k = analysis.plane_wave_temperatures(positions, velocities, cell, masses, max_shell=1)
    window = int(round(ps_to_fs(SITE_DRIFT_WINDOW_PS) / stride_fs))
    return {
        "site_drift_A": analysis.site_drift(positions, window, masses),
        "msd_plateau_A2": float(np.mean(msd[len(msd) // 2 :])),
        "temperature_K": float(np.mean(temps)),
        "long_wave_T_ratio": float(t_k[0] / np.mean(temps)),
    }


def draw(
    model, settings: dict, material, T: float, stride_fs: float, seed: int, lammps_fs: float = 1.0
) -> dict:
    """One draw: a fresh LAMMPS state at T, then LAMMPS (velocity Verlet at ``lammps_fs``)
    and the model from it."""
    from equignnmd import fidelity
    from equignnmd.data.reference_md import lammps_reference
    from equignnmd.units import ps_to_fs

    cfg = fidelity.make_config(**settings, seed=seed)
    steps = int(round(ps_to_fs(cfg.nvt_ps) / stride_fs))
    start = fidelity.equilibrated_state(cfg, material, T)
    ref = lammps_reference(
        start["positions"],
        start["velocities"],
        start["cell"],
        stride_fs,
        steps,
        T,
        "csvr",
        tau_fs=cfg.tau_strides * stride_fs,
        material=material,
        md_timestep_fs=lammps_fs,
        seed=seed,
    )
    run = fidelity.surrogate_run(model, cfg, material, start, T, stride_fs, "csvr", steps, 10**9)
    if run["stopped"]:
        raise RuntimeError(f"seed {seed}: the model's run stopped: {run['stopped']}")
    m = np.full(len(start["positions"]), material.mass_amu)
    return {
        "seed": seed,
        "temperature_K": T,
        "stride_fs": stride_fs,
        "lammps_fs": lammps_fs,
        "tau_strides": cfg.tau_strides,
        "nvt_ps": cfg.nvt_ps,
        "energy": cfg.energy,
        "lammps": scores(ref["positions"], ref["velocities"], start["cell"], m, stride_fs),
        "model": scores(run["positions"], run["velocities"], start["cell"], m, stride_fs),
    }


def summary(rows: list[dict], key: str = "site_drift_A") -> dict:
    """Means, standard errors, the model's excess (%) and Welch's t of ``key``."""
    a = np.array([r["model"][key] for r in rows])
    b = np.array([r["lammps"][key] for r in rows])
    n = len(rows)
    se = (lambda x: float(np.std(x, ddof=1) / math.sqrt(n))) if n > 1 else (lambda x: math.nan)
    diff_se = math.hypot(se(a), se(b))
    return {
        "draws": n,
        "model": float(a.mean()),
        "model_se": se(a),
        "lammps": float(b.mean()),
        "lammps_se": se(b),
        "excess_pct": 100.0 * (a.mean() / b.mean() - 1.0),
        "excess_se_pct": 100.0 * diff_se / b.mean(),
        "welch_t": float((a.mean() - b.mean()) / diff_se) if diff_se > 0 else math.nan,
    }


def render(rows: list[dict], header: str) -> str:
    keys = ("site_drift_A", "msd_plateau_A2", "temperature_K", "long_wave_T_ratio")
    lines = [header, "", "| seed | " + " | ".join(f"{k} model / LAMMPS" for k in keys) + " |"]
    lines.append("|---" * (len(keys) + 1) + "|")
    for r in rows:
        cells = [f"{r['model'][k]:.4g} / {r['lammps'][k]:.4g}" for k in keys]
        lines.append(f"| {r['seed']} | " + " | ".join(cells) + " |")
    lines.append("")
    for k in keys:
        s = summary(rows, k)
        if s["draws"] < 2:  # no spread from one draw: the means only
            lines.append(f"{k}: model {s['model']:.4g}, LAMMPS {s['lammps']:.4g} (1 draw)")
            continue
        lines.append(
            f"{k}: model {s['model']:.4g} ± {s['model_se']:.2g}, LAMMPS {s['lammps']:.4g} ± "
            f"{s['lammps_se']:.2g} ({s['draws']} draws): {s['excess_pct']:+.1f} ± "
            f"{s['excess_se_pct']:.1f} %, t = {s['welch_t']:.2f}"
        )
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default="pretrained:symplectic-al")
    p.add_argument("--temperature", type=float, required=True, help="K")
    p.add_argument("--stride", type=float, default=20.0, help="fs")
    p.add_argument("--seeds", default="2101-2106")
    p.add_argument("--nvt-ps", type=float, default=100.0)
    p.add_argument("--tau-strides", type=float, default=100.0)
    p.add_argument("--cells", type=int, default=5)
    p.add_argument(
        "--energy",
        default="none",
        choices=["none", "reference", "model"],
        help="the model's runs rescaled to conserve this energy (fidelity's --energy)",
    )
    p.add_argument(
        "--lammps-fs",
        type=float,
        default=1.0,
        help="LAMMPS's time step (5: the same velocity Verlet step as symplectic-al's)",
    )
    p.add_argument("--out", default="", help="JSON of the draws (resumed if it exists)")
    args = p.parse_args(argv)

    import torch

    import equignnmd
    from equignnmd.materials import ALUMINIUM

    torch.set_num_threads(1)
    model = equignnmd.load_checkpoint(args.checkpoint, device="cpu")
    settings = {
        "preset": "long",
        "nvt_ps": args.nvt_ps,
        "tau_strides": args.tau_strides,
        "cells": args.cells,
        "thermostats": ["csvr"],
        "energy": args.energy,
    }
    out = Path(args.out) if args.out else None
    rows = json.loads(out.read_text()) if out and out.exists() else []
    want = {
        "temperature_K": args.temperature,
        "stride_fs": args.stride,
        "lammps_fs": args.lammps_fs,
        "tau_strides": args.tau_strides,
        "nvt_ps": args.nvt_ps,
        "energy": args.energy,
    }
    for r in rows:
        if {k: r.get(k) for k in want} != want:
            raise SystemExit(f"{out}: draw {r['seed']} has other settings than {want}")
    done = {r["seed"] for r in rows}
    for seed in seeds_of(args.seeds):
        if seed in done:
            continue
        rows.append(
            draw(model, settings, ALUMINIUM, args.temperature, args.stride, seed, args.lammps_fs)
        )
        if out:
            tmp = out.with_suffix(".tmp")
            tmp.write_text(json.dumps(rows, indent=1))
            tmp.replace(out)
    header = (
        f"{args.checkpoint}, {args.temperature:g} K, {args.stride:g}-fs strides, CSVR τ = "
        f"{args.tau_strides:g} strides, {args.nvt_ps:g} ps, {args.cells}³ cells, LAMMPS at "
        f"{args.lammps_fs:g} fs, energy rescaling: {args.energy}"
    )
    print(render(rows, header))


if __name__ == "__main__":
    main()
