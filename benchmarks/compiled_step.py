"""Steady-state cost of one compiled rollout stride (issue 13's 4000-atom row, on its own).

    python benchmarks/compiled_step.py [--checkpoint pretrained:equivariant-al] [--atoms 4000]
        [--threads 1] [--strides 6] [--stride-fs 20]

The benchmark box (``_boxes.make_state``: FCC Al, Maxwell–Boltzmann velocities), the model
compiled (``model.compiled()``), two warm-up strides (compilation, cached on disk by torch),
then ``--strides`` timed strides of :class:`_engine.SurrogateStep` (the rollout's NVE stages,
the Verlet list carried from stride to stride, the guard); prints the min and median per
stride and µs per atom-step. A before/after comparison of a kernel change runs this script
on both commits on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="pretrained:equivariant-al")
    ap.add_argument("--atoms", type=int, default=4000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--strides", type=int, default=6)
    ap.add_argument("--stride-fs", type=float, default=20.0)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _boxes import make_state
    from _engine import SurrogateStep

    import equignnmd

    model = equignnmd.load_checkpoint(args.checkpoint, device="cpu").compiled()
    state = make_state(args.atoms)
    step = SurrogateStep(model, state, args.stride_fs, "cpu")
    times = []
    with torch.inference_mode():
        t0 = time.perf_counter()
        step()
        step()
        warm = time.perf_counter() - t0
        for _ in range(args.strides):
            t = time.perf_counter()
            step()
            times.append(time.perf_counter() - t)
    times.sort()
    best, median = times[0], times[len(times) // 2]
    print(
        f"{args.checkpoint}, {state.positions.shape[0]} atoms, {args.threads} thread(s), "
        f"compiled: warm-up {warm:.1f} s; stride min {best * 1e3:.1f} ms, median "
        f"{median * 1e3:.1f} ms; {best / state.positions.shape[0] * 1e6:.1f} µs per atom-step"
    )


if __name__ == "__main__":
    main()
