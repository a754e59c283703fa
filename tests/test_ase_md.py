"""ASE integration (equignnmd/ase_md.py): SurrogateMD as an ase MolecularDynamics integrator."""

from __future__ import annotations

import ase.io
import ase.units
import numpy as np
import pytest
import torch
from ase.io import Trajectory
from ase.md.logger import MDLogger
from test_rollout import Ballistic, fcc, tiny_model

from equignnmd import physics
from equignnmd.ase_md import KineticOnlyLogger, SurrogateMD, predict
from equignnmd.models.base import SurrogateModel
from equignnmd.rollout import run_rollout
from equignnmd.units import velocity_from_ase, velocity_to_ase

pytestmark = pytest.mark.usefixtures("one_thread_module")


def test_surrogate_md_observers_trajectory_logger(tmp_path):
    atoms = fcc(0)
    start = atoms.positions.copy()
    model = tiny_model("equivariant")
    dyn = SurrogateMD(atoms, model, timestep=1.0 * ase.units.fs, temperature_K=300.0, seed=0)
    calls = []
    dyn.attach(lambda: calls.append(dyn.nsteps), interval=2)
    traj = Trajectory(tmp_path / "md.traj", "w", atoms)
    dyn.attach(traj.write, interval=2)
    dyn.attach(KineticOnlyLogger(dyn, atoms, tmp_path / "md.log"), interval=1)
    assert dyn.run(10)
    traj.close()

    assert calls == [0, 2, 4, 6, 8, 10]
    assert dyn.nsteps == 10 and atoms.calc is None
    moved = atoms.arrays["unwrapped_positions"] - start
    assert np.abs(moved).max() > 1e-3 and np.isfinite(atoms.positions).all()
    frac = atoms.get_scaled_positions(wrap=False)
    assert frac.min() >= -1e-9 and frac.max() <= 1 + 1e-9
    n = np.linalg.solve(atoms.cell.array.T, (dyn.unwrapped_positions - atoms.positions).T)
    np.testing.assert_allclose(n, np.rint(n), atol=1e-8)
    frames = ase.io.read(tmp_path / "md.traj", ":")
    assert len(frames) == 6
    np.testing.assert_allclose(frames[-1].positions, atoms.positions)
    np.testing.assert_allclose(frames[-1].get_velocities(), atoms.get_velocities())
    lines = (tmp_path / "md.log").read_text().splitlines()
    assert lines[0].split() == ["Time[ps]", "Ekin[eV]", "T[K]"] and len(lines) == 12
    assert float(lines[-1].split()[0]) == pytest.approx(0.010)
    # the package's kinetic temperature (3N − 3), not ASE's get_temperature() (3N)
    assert float(lines[1].split()[2]) == pytest.approx(300.0, abs=0.06)


def test_timestep_units_exact_with_ballistic_model(tmp_path):
    atoms = fcc(1)
    x0, v0 = atoms.positions.copy(), atoms.get_velocities().copy()
    model = Ballistic()
    timestep = 5.0 * ase.units.fs
    dyn = SurrogateMD(atoms, model, timestep, logfile=tmp_path / "md.log", trajectory=None)
    dyn.run(10)
    assert model.seen_dt_fs == [pytest.approx(5.0)] * 10  # dt_fs = timestep / ase.units.fs
    assert dyn.dt_fs == pytest.approx(5.0)
    # free flight in ASE units: x = x0 + 10 v timestep; velocities untouched (NVE)
    np.testing.assert_allclose(dyn.unwrapped_positions, x0 + 10 * v0 * timestep, atol=1e-9)
    np.testing.assert_allclose(atoms.get_velocities(), v0, atol=1e-12)
    # NVE: the model's temperature label is the initial kinetic temperature (3N − 3 dof)
    assert dyn.temperature_K == pytest.approx(300.0, rel=1e-9)
    assert len((tmp_path / "md.log").read_text().splitlines()) == 12  # header + steps 0..10
    assert dyn.get_time() == pytest.approx(10 * timestep)


@pytest.mark.parametrize(
    "thermostat, kw",
    [("csvr", {"taut": 20 * ase.units.fs}), ("langevin", {"friction": 0.05 / ase.units.fs})],
)
def test_thermostats_and_initial_velocities(thermostat, kw):
    atoms = fcc(2, temperature_K=None)  # no velocities: drawn at temperature_K
    dyn = SurrogateMD(
        atoms, Ballistic(), 2.0 * ase.units.fs, temperature_K=600.0, thermostat=thermostat,
        seed=4, **kw,
    )  # fmt: skip
    v = torch.as_tensor(velocity_from_ase(atoms.get_velocities()))
    m = torch.as_tensor(atoms.get_masses())
    assert float(physics.kinetic_temperature(v, m)) == pytest.approx(600.0)
    desc = dyn.thermostat.description
    assert ("tau=20 fs" in desc) if thermostat == "csvr" else ("friction=50 /ps" in desc)
    dyn.run(5)
    assert np.isfinite(atoms.get_velocities()).all()
    assert np.abs(atoms.get_momenta().sum(0)).max() < 1e-8
    assert dyn.todict()["temperature_K"] == 600.0


def test_errors_and_mdlogger_with_calculator(tmp_path):
    with pytest.raises(ValueError, match="no velocities"):
        SurrogateMD(fcc(0, temperature_K=None), Ballistic(), ase.units.fs)
    with pytest.raises(ValueError, match="needs temperature_K"):
        SurrogateMD(fcc(0), Ballistic(), ase.units.fs, thermostat="csvr")
    # with a calculator the stock MDLogger is used (and works)
    from ase.calculators.emt import EMT

    atoms = fcc(0)
    atoms.calc = EMT()
    dyn = SurrogateMD(atoms, Ballistic(), ase.units.fs, logfile=tmp_path / "md.log")
    assert any(isinstance(obs[0], MDLogger) for obs in dyn.observers)
    dyn.run(1)
    assert "Epot[eV]" in (tmp_path / "md.log").read_text()


def test_no_forces_asked_and_no_private_hook():
    """ASE's loop asks the atoms for forces around every step (3.23: Dynamics.irun, later:
    MolecularDynamics._refresh_properties); SurrogateMD's public irun/run do not, so a
    calculator attached for other reasons is never asked for forces."""
    from ase.calculators.emt import EMT

    class Counting(EMT):
        asked: list = []

        def calculate(self, atoms=None, properties=("energy",), system_changes=None):
            self.asked.append(tuple(properties))
            super().calculate(atoms, properties, system_changes or [])

    atoms = fcc(0)
    atoms.calc = Counting()
    dyn = SurrogateMD(atoms, Ballistic(), ase.units.fs)
    assert dyn.run(3) and dyn.nsteps == 3
    assert not any("forces" in p for p in Counting.asked), Counting.asked
    assert "_refresh_properties" not in vars(SurrogateMD)


class Recording(SurrogateModel):
    """A real tiny model that records the temperature label of every batch it is given."""

    def __init__(self, inner: SurrogateModel):
        super().__init__(inner.config, inner.stats)
        self.inner, self.arch = inner, inner.arch
        self.needs_descriptors = inner.needs_descriptors
        self.predicts_velocity = inner.predicts_velocity
        self.labels: list[float] = []

    def forward(self, batch):
        self.labels += batch.temperature_K.double().tolist()
        return self.inner(batch)


def test_predict_surrogate_md_and_rollout_give_the_same_temperature_label():
    """For one state (moving centre of mass, so ASE's 3N temperature differs), every entry
    point gives the model physics.temperature_label: the kinetic temperature (NVE, held
    fixed) or the set point (NVT)."""
    atoms = fcc(5)
    atoms.set_velocities(atoms.get_velocities() + velocity_to_ase(np.array([2.0, -1.0, 0.5])))
    v = torch.as_tensor(velocity_from_ase(atoms.get_velocities()))
    m = torch.as_tensor(atoms.get_masses())
    kinetic = float(physics.temperature_label(v, m)[0])
    assert kinetic == pytest.approx(300.0, rel=1e-9)
    assert abs(atoms.get_temperature() - kinetic) > 1.0  # the definitions differ here
    model = Recording(tiny_model("equivariant", dtype=torch.float64))

    def labels(set_point) -> dict[str, list[float]]:
        nvt = {} if set_point is None else {"thermostat": "csvr", "temperature_K": set_point}
        seen = {}
        for where in ("predict", "SurrogateMD", "run_rollout"):
            model.labels.clear()
            if where == "predict":
                predict(model, atoms.copy(), 1.0, temperature_K=set_point)
            elif where == "SurrogateMD":
                SurrogateMD(atoms.copy(), model, ase.units.fs, **nvt).run(2)
            else:
                run_rollout(
                    model, atoms.copy(), 1.0, 2, write_every=0, progress=False,
                    max_temperature_factor=None, **nvt,
                )  # fmt: skip
            seen[where] = list(model.labels)
        return seen

    for set_point in (None, 450.0):
        expected = kinetic if set_point is None else set_point
        for where, got in labels(set_point).items():
            assert len(got) == (1 if where == "predict" else 2), where
            np.testing.assert_allclose(got, expected, rtol=1e-12, err_msg=f"{where}, {set_point}")


def test_surrogate_md_checks_the_structure_before_its_first_step(tmp_path):
    """Unknown species, NaN positions, a thin box, two atoms closer than the guard's
    threshold: refused in the constructor, before ASE opens the trajectory or the log."""
    model = tiny_model("equivariant")
    cu = fcc(0)
    cu.numbers[:] = 29
    nan = fcc(0)
    pos = nan.positions
    pos[2, 2] = np.nan
    nan.positions = pos
    thin = fcc(0)[:32]  # 32 atoms in an 8.1 Å box: thinner than 2 × the cutoff
    thin.cell = np.diag([8.1, 8.1, 8.1])
    close = fcc(0)
    pos = close.positions
    pos[9] = pos[4] + np.array([0.0, 0.0, 1.1])  # closer than the guard's 1.5 Å
    close.positions = pos
    cases = [
        (cu, r"field 'species' has Cu \(29\).*expected only Al \(13\)"),
        (nan, r"field 'positions' .* atom index 2"),
        (thin, rf"field 'cell' .* 2 × {model.cutoff:.4g} Å \(the model's cutoff\)"),
        (close, r"field 'positions' has atoms 4 and 9 1\.100 Å apart .* 1\.5 Å"),
    ]
    for atoms, message in cases:
        with pytest.raises(ValueError, match=rf"SurrogateMD\(atoms\): {message}"):
            SurrogateMD(
                atoms, model, timestep=1.0 * ase.units.fs, temperature_K=300.0,
                trajectory=str(tmp_path / "md.traj"), logfile=str(tmp_path / "md.log"),
            )  # fmt: skip
    assert list(tmp_path.iterdir()) == []
