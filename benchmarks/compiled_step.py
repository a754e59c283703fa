"""Steady-state cost of one compiled rollout stride (issue 13's 4000-atom row, on its own).

    python benchmarks/compiled_step.py [--checkpoint pretrained:equivariant-al] [--atoms 4000]
        [--threads 1] [--strides 6] [--stride-fs 20]

The benchmark box (``_boxes.make_state``: the crystal of the checkpoint's training data,
Maxwell–Boltzmann velocities), the model
compiled (``model.compiled()``), two warm-up strides (compilation, cached on disk by torch),
then ``--strides`` timed strides of :class:`_engine.SurrogateStep` (the rollout's NVE stages,
the Verlet list carried from stride to stride, the guard); prints the min and median per
stride and µs per atom-step. A before/after comparison of a kernel change runs this script
on both commits on the same machine under the same load.
"""

from __future__ import annotations

import argparse
import statistics
import sys
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
    from _engine import SurrogateStep, Timed, run_timed

    import equignnmd
    from equignnmd.checkpoint import read_checkpoint
    from equignnmd.data.reference_md import checkpoint_reference_material
    from equignnmd.materials import ALUMINIUM

    model = equignnmd.load_checkpoint(args.checkpoint, device="cpu").compiled()
    # the crystal of the model's own training data (FCC Al for the Al models, Cu for Cu's)
    recorded = checkpoint_reference_material(
        read_checkpoint(args.checkpoint), f"checkpoint {args.checkpoint}"
    )
    material = ALUMINIUM if recorded is None else recorded[1]
    state = make_state(args.atoms, material=material)
    atoms = state.positions.shape[0]
    with torch.inference_mode():
        warm = Timed(SurrogateStep(model, state, args.stride_fs, "cpu"))
        run_timed(warm, 2)  # compilation (cached on disk by torch) and the first list
        timed = Timed(warm.fn)  # the same step, its state carried on
        run_timed(timed, args.strides)
    best, median = min(timed.times), statistics.median(timed.times)
    print(
        f"{args.checkpoint}, {atoms} atoms, {args.threads} thread(s), compiled: warm-up "
        f"{sum(warm.times):.1f} s; stride min {best * 1e3:.1f} ms, median {median * 1e3:.1f} ms; "
        f"{best / atoms * 1e6:.1f} µs per atom-step"
    )


if __name__ == "__main__":
    main()
