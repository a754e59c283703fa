"""The accuracy–cost frontier of the equivariant architecture (issue 13), one factor at a time
around ``configs/equivariant-fast.yaml`` at a 5.5-Å cutoff (16 channels, lmax 1, 2 layers; the
sweep's choice, 4.5 Å, is that file's cutoff now).

Every configuration trains for the same wall-clock budget (``max_minutes``, compiled, one
thread, 400 fresh pairs per epoch) on a dataset recorded every 5 fs with held-out temperatures
(``equignnmd generate --config reference --record-every-fs 5 -o data/ref5``); then

* one-shot mean per-atom position error and kinetic-energy bias K_pred/K_true − 1 at 20 and
  50 fs on 48 pairs of each held-out temperature (350 and 650 K);
* steady-state cost per atom-step: 4000 atoms, compiled, Verlet list with a 1-Å skin, one
  thread, median of 8 strides after 3 warm-up strides.

Usage (each stage skips what exists; two ``train`` processes may run side by side, one per
core)::

    python benchmarks/frontier.py train --data data/ref5 --out runs/frontier [--only base,ch8]
    python benchmarks/frontier.py score --data data/ref5 --out runs/frontier
    python benchmarks/frontier.py report --out runs/frontier --plot docs/frontier.png

``report`` prints the Markdown table (the README's) and draws cost against error.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BASE_CONFIG = REPO / "configs" / "equivariant-fast.yaml"
BASE_MODEL = {"cutoff": 5.5}
"""The sweep's centre: the config file with these model fields (the file as it was swept)."""
VARIANTS: dict[str, dict] = {
    "base": {},
    "ch8": {"channels": 8},
    "ch32": {"channels": 32},
    "lmax2": {"lmax": 2},
    "layers1": {"layers": 1},
    "layers3": {"layers": 3},
    "cut45": {"cutoff": 4.5},
}
"""One change each from the base configuration (model fields)."""
BUDGET_MIN = 8.0
HELD_OUT_K = (350.0, 650.0)
STRIDES_FS = (20.0, 50.0)
COST_ATOMS = 4000


def train(data: str, out: Path, names: list[str], budget_min: float) -> None:
    for name in names:
        run = out / name
        if (run / "validation.json").exists():
            print(f"{name}: trained already ({run})")
            continue
        sets = [f"model.{k}={v}" for k, v in {**BASE_MODEL, **VARIANTS[name]}.items()]
        cmd = [
            sys.executable, "-m", "equignnmd", "train", "--config", str(BASE_CONFIG),
            "--data", data, "--out", str(run), "--epochs", "200", "--no-progress",
            "--set", "samples_per_epoch=400", "--set", "max_val_samples=64",
            "--set", "model.compile=true", "--set", f"max_minutes={budget_min:g}",
        ]  # fmt: skip
        for s in sets:
            cmd += ["--set", s]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        print(f"{time.strftime('%T')} {name}: {' '.join(cmd[2:])}", flush=True)
        with open(out / f"{name}.log", "w") as log:
            subprocess.run(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, check=True)


def one_shot(checkpoint: Path, data: str) -> dict:
    """``{"350K 20fs": {"pos_mean_A", "ke_bias"}, ...}`` on the held-out temperatures."""
    import torch
    from torch_geometric.loader import DataLoader
    from torch_geometric.utils import scatter

    import equignnmd
    from equignnmd.data.dataset import PairDataset
    from equignnmd.onestep import stride_errors

    model = equignnmd.load_checkpoint(checkpoint, device="cpu")
    res = {}
    for T in HELD_OUT_K:
        ds = PairDataset(
            data, list(STRIDES_FS), "test", test_temperatures_K=[T], dtype=model.dtype,
            max_samples=24 * len(STRIDES_FS),
        )  # fmt: skip
        ke: dict[float, list[float]] = {}

        def on_batch(batch, pred, ke=ke):
            k_pred = scatter(batch.mass * pred.velocity.pow(2).sum(-1), batch.batch, reduce="sum")
            k_true = scatter(batch.mass * batch.vel_next.pow(2).sum(-1), batch.batch, reduce="sum")
            for s, kp, kt in zip(batch.dt_fs.tolist(), k_pred.tolist(), k_true.tolist()):
                acc = ke.setdefault(s, [0.0, 0.0])
                acc[0] += kp
                acc[1] += kt

        with torch.no_grad():
            r = stride_errors(
                model, DataLoader(ds, batch_size=4), with_baselines=False, on_batch=on_batch
            )
        for s, d in r.items():
            res[f"{T:g}K {s:g}fs"] = {
                "pos_mean_A": d["model"]["pos_mean_A"],
                "ke_bias": ke[s][0] / ke[s][1] - 1.0,
            }
    return res


def cost(checkpoint: Path) -> dict:
    """Steady-state µs per atom-step of the compiled model (module docstring)."""
    import torch
    from _boxes import make_state

    import equignnmd
    from equignnmd.rollout import init_stages, standard_stages, step

    model = equignnmd.load_checkpoint(checkpoint, device="cpu").compiled()
    stages = standard_stages(set_point_K=450.0, skin_A=1.0)
    state = init_stages(stages, make_state(COST_ATOMS))
    for _ in range(3):
        state = step(model, state, 20.0, stages)
    times = []
    for _ in range(8):
        t0 = time.perf_counter()
        state = step(model, state, 20.0, stages)
        times.append(time.perf_counter() - t0)
    med = sorted(times)[len(times) // 2]
    return {
        "us_atom_step": 1e6 * med / COST_ATOMS,
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
    }


def score(data: str, out: Path, names: list[str]) -> None:
    import torch

    torch.set_num_threads(1)
    for name in names:
        path = out / name / "score.json"
        best = out / name / "best.pt"
        if path.exists() or not best.exists():
            continue
        metrics = (out / name / "metrics.csv").read_text().strip().splitlines()
        row = {
            "name": name,
            "change": VARIANTS[name],
            "epochs": len(metrics) - 1,
            "one_shot": one_shot(best, data),
            **cost(best),
        }
        path.write_text(json.dumps(row, indent=1))
        print(json.dumps(row), flush=True)


def report(out: Path, names: list[str], plot: Path | None) -> str:
    rows = [json.loads((out / n / "score.json").read_text()) for n in names]
    rows = [r for r in rows if r]
    best = min(r["one_shot"]["350K 20fs"]["pos_mean_A"] for r in rows)
    lines = [
        "| config | change | parameters | epochs in the budget | µs/atom-step | "
        "350 K 20 fs, Å | 650 K 20 fs | 350 K 50 fs | 650 K 50 fs | KE bias 20 fs 350 / 650 K |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sorted(rows, key=lambda r: r["us_atom_step"]):
        o = r["one_shot"]
        change = ", ".join(f"{k} {v}" for k, v in r["change"].items()) or "—"
        mark = " ✓" if o["350K 20fs"]["pos_mean_A"] <= 1.1 * best else ""
        lines.append(
            f"| {r['name']}{mark} | {change} | {r['params']:,} | {r['epochs']} | "
            f"{r['us_atom_step']:.1f} | {o['350K 20fs']['pos_mean_A']:.5f} | "
            f"{o['650K 20fs']['pos_mean_A']:.5f} | {o['350K 50fs']['pos_mean_A']:.4f} | "
            f"{o['650K 50fs']['pos_mean_A']:.4f} | {100 * o['350K 20fs']['ke_bias']:+.1f} % / "
            f"{100 * o['650K 20fs']['ke_bias']:+.1f} % |"
        )
    text = "\n".join(lines) + "\n\n✓: within 10 % of the best 350 K 20-fs error.\n"
    if plot is not None:
        import matplotlib
        import matplotlib.ticker

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(1, 2, figsize=(9, 3.6), constrained_layout=True)
        for ax, stride in zip(axes, STRIDES_FS):
            for r in rows:
                err = r["one_shot"][f"350K {stride:g}fs"]["pos_mean_A"]
                ax.scatter(r["us_atom_step"], err, color="C0")
                ax.annotate(r["name"], (r["us_atom_step"], err), fontsize=8,
                            xytext=(3, 3), textcoords="offset points")  # fmt: skip
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
            ax.set_xticks([10, 20, 50, 100, 200], ["10", "20", "50", "100", "200"])
            ax.set_xlabel("µs per atom-step (4000 atoms, compiled, 1 thread)")
            ax.set_ylabel(f"one-shot error at {stride:g} fs, 350 K (Å)")
            ax.set_title(f"Δt = {stride:g} fs, {BUDGET_MIN:g} min of training each")
        plot.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(plot, dpi=110)
    return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stage", choices=["train", "score", "report"])
    p.add_argument("--data", default="data/ref5")
    p.add_argument("--out", default="runs/frontier")
    p.add_argument("--only", help="comma-separated variant names (default: all)")
    p.add_argument("--budget-min", type=float, default=BUDGET_MIN)
    p.add_argument("--plot", help="PNG to draw (report)")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.only.split(",") if args.only else list(VARIANTS)
    if args.stage == "train":
        train(args.data, out, names, args.budget_min)
    elif args.stage == "score":
        score(args.data, out, names)
    else:
        print(report(out, names, Path(args.plot) if args.plot else None))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
