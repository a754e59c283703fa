"""The machine's own matrix-multiply rate, and FLOPs per atom-step of each model."""

from __future__ import annotations

import math

import pytest
import torch
from _boxes import TEMPERATURE_K
from _engine import Timed, run_timed, short_error
from _machine import MATMUL_N, matmul_rate
from _plan import MODELS


def test_matmul_rate(plan, results, benchmark):
    """The reference every model's FLOP/s is compared with (same process, same threads)."""
    gen = torch.Generator().manual_seed(1)
    a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
    timed = Timed(lambda: torch.mm(a, b))
    run_timed(timed, 5, benchmark)  # pytest-benchmark record of single matmuls
    rate = matmul_rate(plan.matmul_s)
    rate1 = matmul_rate(plan.matmul_s / 2, threads=1)
    assert math.isfinite(rate) and rate > 0 and rate1 > 0
    threads = torch.get_num_threads()
    results.extra["matmul_flops"] = rate
    results.extra["matmul_flops_1thread"] = rate1
    results.add(
        "flops",
        {
            "system": f"float32 {MATMUL_N}×{MATMUL_N} matmul",
            "achieved_256": rate / 1e9,
            "fraction_256": "100 %",
            "achieved_4000": rate / 1e9,
            "fraction_4000": "100 %",
            "notes": f"{threads} threads; 1 thread: {rate1 / 1e9:.1f} GFLOP/s",
        },
    )


@pytest.mark.parametrize("arch", MODELS)
def test_model_flops(arch, engine, results):
    """FlopCounterMode over one forward of the 256-atom box (descriptors prepared first)."""
    from torch.utils.flop_counter import FlopCounterMode

    from equignnmd.rollout.stages import make_batch

    try:
        model, _ = engine.model(arch)
        state = engine.state(256)
        # no_grad, not inference_mode: FlopCounterMode's module tracker hooks need autograd
        with torch.no_grad():
            batch = make_batch(state, 10.0, TEMPERATURE_K, model.dtype).to(model.device)
            batch = model.prepare(batch)
            counter = FlopCounterMode(display=False)
            with counter:
                model(batch)
    except Exception as err:
        results.add("flops", {"system": arch, "notes": f"failed: {short_error(err)}"})
        raise
    total = counter.get_total_flops()
    by_op = counter.get_flop_counts().get("Global", {})
    assert total > 0
    top = sorted(by_op.items(), key=lambda kv: -kv[1])[:4]
    results.add(
        "flops",
        {
            "system": arch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "gflop_step_256": total / 1e9,
            "flops_atom_step": total / state.positions.shape[0],
            "notes": "forward only; "
            + ", ".join(f"{str(op).split('.')[-1]} {100 * n / total:.0f} %" for op, n in top),
        },
    )
