"""The cost of each energy source of an energy-conserving step (``EnergyRescale``): LAMMPS's
EAM single point and the checkpoint's own energy head, beside the model step they accompany,
on the throughput boxes."""

from __future__ import annotations

import statistics
import time

import pytest
import torch
from _boxes import make_state

from equignnmd.checkpoint import load_checkpoint
from equignnmd.potential import LammpsEnergy, ModelEnergy
from equignnmd.rollout.stages import ModelStep, init_stages


def _timed(fn, rounds: int) -> list[float]:
    fn()  # warm-up: LAMMPS builds its instance, torch its kernels
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


@pytest.mark.parametrize("atoms_index", [0, 1])
def test_energy_source_cost(plan, results, atoms_index):
    if atoms_index >= len(plan.throughput_sizes):
        pytest.skip(f"{plan.mode} mode has one box size")
    atoms = plan.throughput_sizes[atoms_index]
    model = load_checkpoint("pretrained:equivariant-al", device="cpu")
    if model.energy_head is None:
        pytest.fail("pretrained:equivariant-al has no energy head")
    state = make_state(atoms)
    n = state.positions.shape[0]
    args = (state.positions, state.cell, state.species, state.batch)
    rounds = max(plan.min_rounds, min(plan.max_rounds, 3))
    stages = [ModelStep(skin_A=0.0)]
    st = init_stages(stages, state)
    with torch.inference_mode():
        step_s = statistics.median(_timed(lambda: stages[0](model, st, 20.0), rounds))
    sources = {
        "LAMMPS EAM single point": LammpsEnergy("reference"),
        "energy head": ModelEnergy(model),
    }
    energies = {}
    for name, source in sources.items():
        times = _timed(lambda s=source: s(*args), rounds)
        energies[name] = float(source(*args)[0])
        med = statistics.median(times)
        results.add(
            "energy_sources",
            {
                "source": name,
                "atoms": n,
                "calls": len(times),
                "ms_call": 1000.0 * med,
                "us_atom": 1e6 * med / n,
                "of_step": f"{100.0 * med / step_s:.2g} % of {1000.0 * step_s:.0f} ms",
                "notes": "",
            },
        )
        assert med > 0
    sources["LAMMPS EAM single point"].close()
    # both measure the same energy of this (cold-lattice, 300-K velocities) box
    ref, head = energies["LAMMPS EAM single point"], energies["energy head"]
    assert abs(head - ref) / n < 0.005, (head, ref)  # eV/atom
