"""Batched replicas: 1, 8 and 32 small systems advanced in one forward."""

from __future__ import annotations

import math

import pytest
from _report import not_measured_row, step_row


def test_batched_replicas(replica_case, plan, engine, results, request):
    case = replica_case
    if case.total_atoms > plan.replica_atom_cap:
        row = not_measured_row(
            case,
            f"{case.total_atoms} atoms per forward exceeds the {plan.mode}-mode cap of "
            f"{plan.replica_atom_cap}; run with --full",
        )
        row["atoms_per_replica"] = case.atoms
        results.add("replicas", row)
        pytest.skip(row["notes"])
    m = engine.measure(case, lambda: request.getfixturevalue("benchmark"))
    if m.skipped:
        results.add("replicas", not_measured_row(case, m.error.removeprefix("not measured: ")))
        pytest.skip(m.error)
    row = step_row(m)
    row["atoms_per_replica"] = case.atoms
    if m.times_s:
        row["replica_steps_s"] = case.replicas / m.step_s
    results.add("replicas", row)
    if m.error:
        pytest.fail(m.error)
    assert all(math.isfinite(t) and t > 0 for t in m.times_s)
