"""Energy sources (equignnmd/energy.py) and energy-conserving rollouts (EnergyRescale, the
thermostat's work, split thermostat half-steps), on real LAMMPS EAM states and the shipped
equivariant model (108 atoms, a few strides)."""

from __future__ import annotations

import csv
from dataclasses import replace

import numpy as np
import pytest
import torch

from equignnmd import physics
from equignnmd._lammps import default_potential
from equignnmd.checkpoint import load_checkpoint
from equignnmd.data.lammps_md import LammpsMD, MDSettings
from equignnmd.graph import wrap_positions
from equignnmd.materials import ALUMINIUM
from equignnmd.potential import AseEnergy, LammpsEnergy, make_energy_source
from equignnmd.rollout import Rollout, RolloutState, run_rollout, step
from equignnmd.rollout.stages import (
    EnergyRescale,
    ModelStep,
    Thermostat,
    init_stages,
    standard_stages,
)

N_CELLS = 3  # 108 atoms, a 12.26-Å box: ≥ 2 × the model's 5.5-Å cutoff


pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def frame():
    """A 450-K LAMMPS EAM state (CSVR, 1 ps) of 108 atoms at the 450-K lattice constant."""
    material = replace(ALUMINIUM, lattice_A=4.0868)
    settings = MDSettings(
        potential=default_potential(),
        material=material,
        cells=N_CELLS,
        temperature_K=450.0,
        ensemble="csvr",
        tdamp_fs=50.0,
        descriptors=False,
    )
    with LammpsMD(settings) as md:
        md.run(1000)
        return md.frame()


@pytest.fixture(scope="module")
def model():
    return load_checkpoint("pretrained:equivariant-al")


def state_of(frame) -> RolloutState:
    n = len(frame["positions"])
    return RolloutState.from_arrays(
        [frame["positions"]],
        [frame["velocities"]],
        [frame["cell"]],
        [np.full(n, 13)],
        [np.full(n, ALUMINIUM.mass_amu)],
    )


def test_lammps_energy_is_lammps_own_potential_energy(frame):
    source = LammpsEnergy("reference")
    s = state_of(frame)
    u = source(s.positions, s.cell, s.species, s.batch)
    assert u.shape == (1,)
    assert float(u[0]) == pytest.approx(frame["thermo"]["pe_eV"], abs=1e-8)
    # two replicas (the second one rattled) in one call; whole-lattice-vector shifts of atoms
    # (unwrapped positions) change nothing
    rattled = s.positions + 0.05 * torch.randn(s.positions.shape, dtype=torch.float64)
    shifted = s.positions + s.cell[0, 0] * (torch.arange(len(s.positions)) % 2)[:, None]
    pos = torch.cat([wrap_positions(shifted, s.cell, s.batch), rattled])
    two = source(
        pos,
        torch.cat([s.cell, s.cell]),
        torch.cat([s.species, s.species]),
        torch.cat([s.batch, s.batch + 1]),
    )
    assert float(two[0]) == pytest.approx(float(u[0]), abs=1e-8)
    assert float(two[1]) > float(u[0])  # rattling a thermal state costs energy on average
    source.close()


def test_ase_energy_matches_the_calculator(frame):
    import ase
    from ase.calculators.emt import EMT

    s = state_of(frame)
    source = make_energy_source(EMT())
    assert isinstance(source, AseEnergy)
    atoms = ase.Atoms("Al108", positions=frame["positions"], cell=frame["cell"], pbc=True)
    atoms.calc = EMT()
    u = source(s.positions, s.cell, s.species, s.batch)
    assert float(u[0]) == pytest.approx(atoms.get_potential_energy(), abs=1e-9)


def test_unknown_energy_file_is_refused_before_any_output(model, frame, tmp_path):
    out = tmp_path / "ro"
    with pytest.raises(FileNotFoundError, match="no_such.eam.fs"):
        Rollout(model, state_of(frame), 20.0, steps=2, energy="no_such.eam.fs", out_dir=out)
    assert not out.exists()


def total_energy(state) -> float:
    """K (centre of mass removed) + U from a fresh LAMMPS instance: an independent check."""
    fresh = LammpsEnergy("reference")
    u = float(fresh(state.positions, state.cell, state.species, state.batch)[0])
    fresh.close()
    k = physics.internal_kinetic_energy(state.velocities, state.masses, state.batch)
    return float(k[0]) + u


def test_nve_rescaling_conserves_the_reference_total_energy(model, frame, tmp_path):
    start = state_of(frame)
    e0 = total_energy(start)
    kw = dict(dt_fs=20.0, steps=8, write_every=0, progress=False)
    free = run_rollout(model, start, **kw)
    kept = run_rollout(model, start, energy="reference", out_dir=tmp_path / "ro", **kw)
    assert kept.completed and free.completed
    drift_free = abs(total_energy(free.final_state) - e0)
    drift_kept = abs(total_energy(kept.final_state) - e0)
    assert drift_kept < 1e-8 * abs(e0)
    assert drift_free > 100 * drift_kept  # the model alone does not conserve it exactly
    info = kept.final_state.info["energy"]
    assert int(info.clamped[0]) == 0
    assert abs(float(info.scale[0]) - 1.0) < 0.2  # a small correction, not a reset
    # momentum stays zero; thermo.csv logs the energy columns every step
    p = physics.net_momentum(kept.final_state.velocities, kept.final_state.masses)
    assert float(p.abs().max()) < 1e-9
    rows = list(csv.DictReader(open(tmp_path / "ro" / "thermo.csv")))
    assert len(rows) == 9
    energies = np.array([float(r["total_energy_eV"]) for r in rows])
    np.testing.assert_allclose(energies, e0, rtol=1e-10)
    assert all(float(r["thermostat_work_eV"]) == 0.0 for r in rows)


@pytest.mark.parametrize("thermostat", ["csvr", "langevin"])
def test_nvt_split_steps_conserve_energy_minus_thermostat_work(model, frame, thermostat):
    start = state_of(frame)
    e0 = total_energy(start)
    with Rollout(
        model,
        start,
        20.0,
        steps=6,
        temperature_K=300.0,
        thermostat=thermostat,
        tau_fs=100.0,
        friction_per_ps=5.0,
        energy="reference",
        write_every=0,
        progress=False,
        novelty=False,  # the stages of the step alone (the monitor measures after them)
    ) as ro:
        names = [type(s).__name__ for s in ro.stages]
        result = ro.run()
    # O(½) – model – rescale – O(½)
    assert names[0] == "Thermostat" and names[-2:] == ["Thermostat", "RemoveMomentum"]
    assert names.index("EnergyRescale") == names.index("ModelStep") + 2
    final = result.final_state
    work = float(final.info["thermostat"].work_eV[0])
    assert work < -0.05  # cooling a 450-K state towards 300 K takes energy out
    assert total_energy(final) - work == pytest.approx(e0, abs=1e-8 * abs(e0))


def test_thermostat_work_is_the_kinetic_energy_it_put_in(frame):
    s = state_of(frame)
    stage = Thermostat.make("langevin", 300.0, 20.0, friction_per_ps=10.0)
    s = stage.init(replace(s, generators=[torch.Generator().manual_seed(3)]))
    new = stage(None, s, 20.0)
    dk = physics.internal_kinetic_energy(new.velocities, new.masses) - (
        physics.internal_kinetic_energy(s.velocities, s.masses)
    )
    assert float(new.info["thermostat"].work_eV[0]) == pytest.approx(float(dk[0]))
    # a half-stride stage damps half as much: fraction scales the interval, not τ
    half = Thermostat.make("csvr", 300.0, 20.0, fraction=0.5)
    assert "tau=2000" in half.description


def test_clamped_when_the_model_climbs_above_the_total_energy(model, frame):
    """A source that reports a huge potential energy after the first state: the kinetic
    energy needed is negative, so internal motion stops and the clamp is counted."""
    real = LammpsEnergy("reference")
    calls = []

    def climbing(positions, cell, species, batch):
        calls.append(1)
        u = real(positions, cell, species, batch)
        return u if len(calls) == 1 else u + 1000.0

    stages = standard_stages(energy=EnergyRescale(climbing))
    s = init_stages(stages, state_of(frame))
    new = step(model, s, 20.0, stages)
    assert int(new.info["energy"].clamped[0]) == 1
    k = physics.internal_kinetic_energy(new.velocities, new.masses)
    assert float(k[0]) < 1e-20
    assert isinstance(stages[0], ModelStep)
    real.close()
