"""What dominates a step: neighbour lists, descriptors, model layers, update, guard (cProfile)."""

from __future__ import annotations

import cProfile
import inspect
import pstats
import re

import pytest
from _engine import SurrogateStep
from _plan import ARCHS, StepCase


def _key(fn):
    code = inspect.unwrap(fn).__code__
    return (code.co_filename, code.co_firstlineno, code.co_name)


def _op_name(func: tuple) -> str:
    name = func[2]
    m = re.match(r"<built-in method (\S+)>", name) or re.match(r"<method '(\w+)' of", name)
    return m.group(1) if m else name


def profile_step(model, state, stride_fs: float = 10.0):
    """Phases of one step in ms (exclusive of each other), the top torch calls, and the
    neighbour-list ms by caller (``model``, ``descriptors``, ``guard``, ``other``)."""
    from equignnmd import descriptors, graph, rollout
    from equignnmd.rollout.guard import StabilityGuard

    step = SurrogateStep(model, state, stride_fs, "cpu")
    prof = cProfile.Profile()
    prof.enable()
    step()
    prof.disable()
    stats = pstats.Stats(prof).stats

    def cum(fn) -> float:
        entry = stats.get(_key(fn))
        return 1e3 * entry[3] if entry else 0.0

    layers = model.interaction_layers()
    layer_ms = cum(type(layers[0]).forward) if len(layers) else 0.0
    nl = {"model": 0.0, "descriptors": 0.0, "guard": 0.0, "other": 0.0}
    entry = stats.get(_key(graph.neighbour_list))
    if entry:
        for caller, values in entry[4].items():
            where = caller[0].replace("\\", "/")
            kind = (
                "descriptors"
                if where.endswith("equignnmd/descriptors.py")
                else "guard"
                if "/equignnmd/rollout/" in where
                else "model"  # the models, directly or through graph.py's list helpers
                if "/equignnmd/models/" in where or where.endswith("equignnmd/graph.py")
                else "other"
            )
            nl[kind] += 1e3 * values[3]
    forward = cum(type(model).forward)
    desc = cum(descriptors.compute_descriptors)
    advance = cum(rollout.step)
    guard = cum(StabilityGuard.check)
    phases = [
        ("neighbour list (model)", nl["model"]),
        (f"model layers ({len(layers)} × {type(layers[0]).__name__})", layer_ms),
        ("rest of model forward", forward - layer_ms - nl["model"]),
        ("descriptors (CSP, CNA, Q4, Q6, CN)", desc - nl["descriptors"]),
        ("neighbour list (descriptors)", nl["descriptors"]),
        ("batch assembly + update + momentum", advance - forward - desc),
        ("stability guard (thermo, min distance)", guard - nl["guard"]),
        ("neighbour list (guard)", nl["guard"]),
    ]
    builtins = [(k, v) for k, v in stats.items() if k[0] == "~"]
    builtins.sort(key=lambda kv: -kv[1][2])
    top = ", ".join(f"{_op_name(k)} {1e3 * v[2]:.0f} ms" for k, v in builtins[:6])
    return phases, top, nl


@pytest.mark.parametrize("arch", ARCHS)
def test_step_profile(arch, plan, engine, results):
    atoms = plan.profile_atoms
    model, _ = engine.model(arch)
    state = engine.state(atoms)
    engine.measure(StepCase(arch, atoms, 10.0))  # warm (and timed) outside the profiler
    phases, top, nl = profile_step(model, state)
    total = sum(ms for _, ms in phases)
    assert total > 0
    # every neighbour list of the step is attributed to its caller's file: the guard's probe
    # (equignnmd/rollout/guard.py) runs each step, and nothing is left unattributed
    assert nl["guard"] > 0, nl
    assert nl["other"] == 0, nl
    for phase, ms in phases:
        if ms <= 0 and "descriptors" in phase and not model.needs_descriptors:
            continue
        results.add(
            "profile",
            {
                "system": arch,
                "atoms": atoms,
                "phase": phase,
                "ms": ms,
                "percent": 100.0 * ms / total,
            },
        )
    results.add(
        "profile",
        {
            "system": arch,
            "atoms": atoms,
            "phase": "total (under cProfile)",
            "ms": total,
            "percent": 100.0,
            "notes": f"top torch calls by own time: {top}",
        },
    )
