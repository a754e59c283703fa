"""Surrogate inference throughput: both models, strides 10/20/50 fs, eager and compiled,
float32 (float64 for reference), CPU (and GPU rows when CUDA is present)."""

from __future__ import annotations

import math

import pytest
import torch
from _report import not_measured_row, step_row


def test_surrogate_step(throughput_case, plan, engine, results, request):
    case = throughput_case
    if case.device == "cuda" and not torch.cuda.is_available():
        results.add("throughput", not_measured_row(case, "no CUDA device on this machine"))
        pytest.skip("no CUDA device")
    m = engine.measure(case, lambda: request.getfixturevalue("benchmark"))
    if m.skipped:
        results.add("throughput", not_measured_row(case, m.error.removeprefix("not measured: ")))
        pytest.skip(m.error)
    row = step_row(m)
    if m.error:
        row["notes"] = f"failed: {m.error}" + (f"; {row['notes']}" if row["notes"] else "")
        results.add("throughput", row)
        if case.mode == "compiled":
            pytest.skip(f"torch.compile failed on this machine: {m.error}")
        pytest.fail(m.error)
    results.add("throughput", row)
    if case.atoms > plan.measure_all_strides_up_to and case.dtype == "float32":
        for dt in plan.strides_fs[1:]:  # same step cost, longer stride
            derived = step_row(m, stride_fs=dt)
            derived["rounds"] = f"= {case.stride_fs:g} fs"
            derived["notes"] = (
                f"derived: step timed at Δt = {case.stride_fs:g} fs (cost does not depend on Δt; "
                f"compare the {plan.measure_all_strides_up_to}-atom rows)"
                + (f"; {derived['notes']}" if derived["notes"] else "")
            )
            results.add("throughput", derived)
    assert all(math.isfinite(t) and t > 0 for t in m.times_s)
    assert row["atom_steps_s"] > 0
