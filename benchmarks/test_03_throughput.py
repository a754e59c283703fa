"""Surrogate inference throughput: both models, strides 10/20/50 fs, eager and compiled,
float32 (float64 for reference), CPU (and GPU rows when CUDA is present)."""

from __future__ import annotations

import math

import pytest
import torch
from _common import not_measured_row, step_row


def test_surrogate_step(throughput_case, engine, results, benchmark):
    case = throughput_case
    if case.device == "cuda" and not torch.cuda.is_available():
        results.add("throughput", not_measured_row(case, "no CUDA device on this machine"))
        pytest.skip("no CUDA device")
    m = engine.measure(case, benchmark)
    row = step_row(m)
    if m.error:
        row["notes"] = f"failed: {m.error}" + (f"; {row['notes']}" if row["notes"] else "")
        results.add("throughput", row)
        if case.mode == "compiled":
            pytest.skip(f"torch.compile failed on this machine: {m.error}")
        pytest.fail(m.error)
    results.add("throughput", row)
    assert all(math.isfinite(t) and t > 0 for t in m.times_s)
    assert row["atom_steps_s"] > 0
