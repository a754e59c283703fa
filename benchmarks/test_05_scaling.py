"""Cost growth: time and memory per step against N, with a fitted log-log exponent."""

from __future__ import annotations

import math

import pytest
from _plan import ARCHS, StepCase
from _report import fit_exponent, step_row


def _row(m):
    row = step_row(m)
    if m.times_s:
        row["us_atom_step"] = 1e6 * m.step_s / m.case.total_atoms
    if m.peak_mb is not None:
        row["kb_atom"] = 1024.0 * m.peak_mb / m.case.total_atoms
    return row


def test_step_cost(scaling_case, plan, engine, results, request):
    case = scaling_case
    m = engine.measure(case, lambda: request.getfixturevalue("benchmark"))
    if m.skipped:
        results.add("scaling", {"system": case.arch, "atoms": case.atoms, "notes": m.error})
        pytest.skip(m.error)
    results.add("scaling", _row(m))
    if m.error:
        pytest.fail(m.error)
    assert all(math.isfinite(t) and t > 0 for t in m.times_s)


@pytest.mark.parametrize("arch", ARCHS)
def test_growth_exponent(arch, plan, engine, results):
    ms = [engine.cached(StepCase(arch, n, 10.0)) for n in plan.scaling_sizes]
    ms = [m for m in ms if m is not None and m.times_s]
    if len(ms) < 2:
        pytest.skip(f"{arch}: fewer than two sizes measured")
    n = [m.case.total_atoms for m in ms]
    t_exp, t_r2 = fit_exponent(n, [m.min_s for m in ms])  # min: least disturbed round
    mem = [(m.case.total_atoms, m.peak_mb) for m in ms if m.peak_mb and m.peak_mb > 0]
    m_exp, m_r2 = fit_exponent([a for a, _ in mem], [b for _, b in mem])
    results.add(
        "scaling",
        {
            "system": arch,
            "atoms": f"fit {min(n)}–{max(n)}",
            "time_exponent": t_exp,
            "memory_exponent": m_exp,
            "notes": f"R² time {t_r2:.3f}, memory {m_r2:.3f}; {len(ms)} sizes",
        },
    )
    assert math.isfinite(t_exp)
