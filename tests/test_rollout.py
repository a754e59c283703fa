"""Rollout engine, thermostats and trajectory writers (equignnmd/rollout/, thermostats.py, io.py).

Tiny untrained models (``configs/*-small.yaml``) on 256-atom rattled FCC Al boxes; small strides
(1 fs) keep the untrained models' drift within the stability guard for a few dozen steps.
Analytic stand-in models (ballistic, exploding) test the plumbing exactly and fast.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import ase.io
import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from torch import nn

from equignnmd import physics
from equignnmd import thermostats as th
from equignnmd.config import ConfigError
from equignnmd.io import LammpsDumpWriter, read_structure
from equignnmd.models import build_model
from equignnmd.models.base import Prediction, SurrogateModel
from equignnmd.rollout import (
    Rollout,
    RolloutConfig,
    RolloutState,
    RolloutUnstable,
    run_rollout,
    step,
)
from equignnmd.rollout.stages import (
    ModelStep,
    Stage,
    finite_difference,
    init_stages,
    standard_stages,
)
from equignnmd.rollout.state import init_state
from equignnmd.units import velocity_from_ase, velocity_to_ase

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """256-atom tiny models gain nothing from intra-op threads, and on a busy 2-core machine
    two threads per process make them 10× slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(arch: str, dtype=torch.float32, seed: int = 0) -> SurrogateModel:
    cfg = yaml.safe_load((CONFIGS / f"{arch}-small.yaml").read_text())["model"]
    torch.manual_seed(seed)
    return build_model(arch, **cfg).to(dtype).eval()


def fcc(seed: int = 0, temperature_K: float | None = 300.0, rattle: float = 0.05):
    """256-atom rattled FCC Al; MB velocities (zero momentum) unless temperature_K is None."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    atoms.rattle(rattle, seed=seed)
    if temperature_K is not None:
        gen = torch.Generator().manual_seed(1000 + seed)
        m = torch.as_tensor(atoms.get_masses())
        v = th.maxwell_boltzmann(m, temperature_K, gen)
        atoms.set_velocities(velocity_to_ase(v.numpy()))
    return atoms


class Ballistic(SurrogateModel):
    """Free flight: displacement v Δt, velocity unchanged (or None: finite differences)."""

    arch = "ballistic"

    def __init__(self, predicts_velocity: bool = True, dtype=torch.float64):
        super().__init__({"cutoff": 5.0})
        self.predicts_velocity = predicts_velocity
        self.dummy = nn.Parameter(torch.zeros(1, dtype=dtype))
        self.seen_dt_fs: list[float] = []

    def forward(self, batch) -> Prediction:
        dt_ps = (batch.dt_fs[batch.batch] / 1000.0).unsqueeze(-1)
        self.seen_dt_fs.append(float(batch.dt_fs[0]))
        disp = batch.vel * dt_ps
        return Prediction(disp, batch.vel.clone() if self.predicts_velocity else None)


class Exploding(SurrogateModel):
    """Ballistic until step ``at`` (counted in forward calls), then fails in replica 1 with
    ``mode``: "nan" (NaN displacement), "collapse" (atom 1 moved onto atom 0), "hot"
    (velocities × 10), "cold" (velocities × 0.1)."""

    arch = "exploding"

    def __init__(self, mode: str, at: int):
        super().__init__({"cutoff": 5.0})
        self.mode, self.at, self.calls = mode, at, 0
        self.dummy = nn.Parameter(torch.zeros(1, dtype=torch.float64))

    def forward(self, batch) -> Prediction:
        self.calls += 1
        disp = batch.vel * (batch.dt_fs[batch.batch] / 1000.0).unsqueeze(-1)
        vel = batch.vel.clone()
        if self.calls >= self.at:
            first = int(batch.ptr[1])  # replica 1 starts here
            if self.mode == "nan":
                disp[first + 3] = float("nan")
            elif self.mode == "collapse":
                disp[first + 1] = batch.pos[first] - batch.pos[first + 1] + 0.3
            elif self.mode == "hot":
                vel[first:] *= 10.0
            elif self.mode == "cold":
                vel[first:] *= 0.1
        return Prediction(disp, vel)


def frac_in_cell(pos: np.ndarray, cell: np.ndarray) -> np.ndarray:
    return np.linalg.solve(cell.T, pos.T).T


# ------------------------------------------------------------------------------------ rollouts
@pytest.mark.slow
@pytest.mark.parametrize("arch", ["paper", "equivariant"])
@pytest.mark.parametrize("thermostat", ["none", "csvr"])
def test_rollout_tiny_models(tmp_path, arch, thermostat):
    model = tiny_model(arch)
    steps, every, replicas = 24, 6, 2
    seen = []
    res = run_rollout(
        model,
        fcc(0),
        dt_fs=1.0,
        steps=steps,
        temperature_K=300.0,
        thermostat=thermostat,
        replicas=replicas,
        seed=3,
        write_every=every,
        out_dir=tmp_path,
        observers=[(lambda state, thermo: seen.append(thermo["step"]), 4)],
        max_temperature_factor=20.0,  # untrained models heat up; the guard is tested below
        progress=False,
    )
    assert res.completed, res.stopped_reason
    assert res.temperature_K.shape == (steps + 1, replicas)
    assert np.isfinite(res.temperature_K).all() and np.isfinite(res.min_distance_A).all()
    assert seen == list(range(0, steps + 1, 4))
    assert res.momentum_amu_A_per_ps.max() < 1e-6
    st = res.final_state
    assert st.step == steps
    assert torch.isfinite(st.positions).all() and torch.isfinite(st.velocities).all()
    # wrapped inside the cell; unwrapped − wrapped = whole lattice vectors
    pos, unw = st.positions.numpy(), st.unwrapped.numpy()
    cell = st.cell[0].numpy()
    frac = frac_in_cell(pos, cell)
    assert frac.min() >= -1e-9 and frac.max() <= 1 + 1e-9
    n = frac_in_cell(unw - pos, cell)
    np.testing.assert_allclose(n, np.rint(n), atol=1e-8)
    assert np.abs(unw[:256] - fcc(0).positions).max() > 1e-3  # atoms moved
    # files: thermo rows, frames, and the frames agree with the state
    rows = np.genfromtxt(res.files["thermo"], delimiter=",", names=True)
    assert len(rows) == (steps // every + 1) * replicas
    assert set(rows["replica"].astype(int)) == {0, 1}
    np.testing.assert_allclose(
        rows["temperature_K"][rows["step"] == steps], res.temperature_K[-1], rtol=1e-5
    )
    for r, path in enumerate(res.files["trajectories"]):
        frames = ase.io.read(path, ":")
        assert len(frames) == steps // every + 1
        last = frames[-1]
        assert last.info["step"] == steps and last.info["replica"] == r
        s = st.replica_slice(r)
        np.testing.assert_allclose(last.positions, st.positions[s].numpy(), atol=1e-6)
        np.testing.assert_allclose(last.arrays["vel"], st.velocities[s].numpy(), atol=1e-6)
        np.testing.assert_allclose(
            velocity_from_ase(last.get_velocities()), st.velocities[s].numpy(), atol=1e-5
        )
        unwrapped = last.positions + last.arrays["image"] @ last.cell.array
        np.testing.assert_allclose(unwrapped, st.unwrapped[s].numpy(), atol=1e-6)
    assert (tmp_path / "rollout.json").exists()


@pytest.mark.parametrize("arch", ["paper", "equivariant"])
def test_batched_replicas_match_single_runs(arch):
    """3 structures in one batch = each alone with its seed (float64, NVE)."""
    model = tiny_model(arch, dtype=torch.float64)
    structures = [fcc(seed=k, temperature_K=None) for k in range(3)]  # MB drawn from the seed
    kw = dict(dt_fs=1.0, steps=4, temperature_K=300.0, write_every=0, progress=False)
    batched = run_rollout(model, structures, seed=11, **kw).final_state
    for r in range(3):
        alone = run_rollout(model, structures[r], seed=11 + r, **kw).final_state
        s = batched.replica_slice(r)
        for name in ("positions", "unwrapped", "velocities"):
            a, b = getattr(batched, name)[s], getattr(alone, name)
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10, msg=f"{name}, replica {r}")


def test_ballistic_rollout_is_exact_and_finite_difference_flagged(tmp_path):
    atoms = fcc(1)
    v = velocity_from_ase(atoms.get_velocities())
    for predicts in (True, False):
        model = Ballistic(predicts_velocity=predicts)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = run_rollout(
                model, atoms, 5.0, 8, write_every=4, out_dir=tmp_path / str(predicts),
                progress=False,
            )  # fmt: skip
        said = any("finite differences" in str(w.message) for w in caught)
        assert said is (not predicts)
        st = res.final_state
        expected = atoms.positions + 8 * v * 5.0e-3
        np.testing.assert_allclose(st.unwrapped.numpy(), expected, atol=1e-10)
        np.testing.assert_allclose(st.velocities.numpy(), v, atol=1e-10)
        np.testing.assert_allclose(res.temperature_K, 300.0, rtol=1e-9)
        assert model.seen_dt_fs == [5.0] * 8
        assert res.finite_difference_velocities is (not predicts)
        assert res.ns_per_day > 0 and res.steps_per_s > 0


# ------------------------------------------------------------------------------------ stages
class Heating(Ballistic):
    """Free flight whose predicted velocities are 5 % faster every stride."""

    def forward(self, batch) -> Prediction:
        pred = super().forward(batch)
        return Prediction(pred.displacement, pred.velocity * 1.05)


@dataclass(frozen=True)
class HoldKineticEnergy(Stage):
    """A stage with its own state: rescales every replica to its first kinetic energy."""

    name: ClassVar[str] = "hold_kinetic_energy"

    def init(self, state):
        ke = physics.kinetic_energy(state.velocities, state.masses, state.batch)
        return state.with_info(self.name, {"reference_eV": ke})

    def __call__(self, model, state, dt_fs):
        ref = state.info[self.name]["reference_eV"]
        ke = physics.kinetic_energy(state.velocities, state.masses, state.batch)
        scale = torch.sqrt(ref / ke)[state.batch].unsqueeze(-1)
        return replace(state, velocities=state.velocities * scale)


def test_a_new_stage_is_one_function_before_or_after_the_model_step():
    """Adding a stage is adding it to the list: after the model step it undoes the heating
    (its reference energy carried in the state); before it, the model's heating stays."""
    atoms = fcc(4)
    heated = run_rollout(Heating(), atoms, 2.0, 5, write_every=0, progress=False)
    assert heated.temperature_K[-1, 0] == pytest.approx(300.0 * 1.05**10, rel=1e-9)
    stages = [*standard_stages(), HoldKineticEnergy()]
    with Rollout(Heating(), atoms, 2.0, stages=stages, write_every=0, progress=False) as ro:
        held = ro.run(5)
    np.testing.assert_allclose(held.temperature_K[:, 0], 300.0, rtol=1e-9)
    # the pure step: the state given is left as it was; the new one says what happened
    first = init_stages([HoldKineticEnergy(), ModelStep()], init_state(atoms))
    before = first.velocities.clone(), dict(first.info), first.step
    after = step(Heating(), first, 2.0, [HoldKineticEnergy(), ModelStep()])
    assert torch.equal(first.velocities, before[0]) and first.info == before[1]
    assert first.step == 0 and after.step == 1
    temp = physics.kinetic_temperature(after.velocities, after.masses, after.batch)
    assert float(temp[0]) == pytest.approx(300.0 * 1.05**2, rel=1e-9)
    assert after.info["model"].finite_difference is False


def test_standard_stages_step_a_bare_state_with_a_given_label():
    """The standard stages, started on a bare from_arrays state, with a given label."""
    atoms = fcc(5)
    v = velocity_from_ase(atoms.get_velocities())
    state = RolloutState.from_arrays(
        [atoms.positions], [v], [atoms.cell.array], [atoms.numbers], [atoms.get_masses()]
    )
    stages = standard_stages(set_point_K=450.0)
    new = step(Ballistic(predicts_velocity=False), init_stages(stages, state), 4.0, stages)
    fd = finite_difference(new)
    assert fd is True and new.step == 1
    np.testing.assert_allclose(new.unwrapped.numpy(), atoms.positions + v * 4.0e-3, atol=1e-10)
    torch.testing.assert_close(new.info["model"].temperature_K, torch.tensor([450.0]).double())


# ------------------------------------------------------------------------------------ config
@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("dt_fs", 0.0, "field 'dt_fs' = 0.0; expected a stride > 0 fs"),
        ("steps", 1.5, "field 'steps': expected an integer"),
        ("thermostat", "nose-hoover", "field 'thermostat' = 'nose-hoover'"),
        ("temperature_K", -5.0, "field 'temperature_K' = -5.0"),
        ("replicas", 0, "field 'replicas' = 0"),
        ("fmt", "xyz", "field 'fmt' = 'xyz'; expected a trajectory format"),
        ("on_unstable", "ignore", "field 'on_unstable' = 'ignore'"),
        ("write_every", -1, "field 'write_every' = -1"),
        ("max_temperature_factor", 0.0, "field 'max_temperature_factor' = 0.0"),
        ("max_temp_factor", 2.0, r"unknown field\(s\) \['max_temp_factor'\]"),
    ],
)
def test_config_errors_name_the_field_before_any_output(tmp_path, field, value, expected):
    out = tmp_path / "ro"
    settings = {"dt_fs": 1.0, "steps": 2, "out_dir": out, "progress": False, field: value}
    with pytest.raises(ConfigError, match=expected):
        RolloutConfig.of(**settings)
    with pytest.raises(ConfigError, match=expected):
        run_rollout(Ballistic(), fcc(0), **settings)
    assert not out.exists()


def test_config_drives_a_rollout_and_needs_a_set_point_for_nvt(tmp_path):
    with pytest.raises(ConfigError, match="thermostat 'csvr' needs temperature_K"):
        RolloutConfig.of(dt_fs=1.0, thermostat="csvr")
    config = RolloutConfig.of(
        dt_fs=2.0, steps=4, thermostat="CSVR", temperature_K=np.float64(450.0), tau_fs=20.0,
        replicas=2, seed=1, out_dir=tmp_path, write_every=2, progress=False,
    )  # fmt: skip
    assert config.out_dir == str(tmp_path) and config.thermostat_kind == "csvr"
    assert config.temperature_K == 450.0 and config.thermo_interval == 2
    with Rollout(Ballistic(), fcc(0), config) as ro:
        res = ro.run()
    assert res.completed and res.step.tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(ro.model_temperature.numpy(), [450.0, 450.0])
    assert ro.thermostat.description == "csvr(T=450 K, tau=20 fs)"
    same = run_rollout(
        Ballistic(), fcc(0), 2.0, 4, temperature_K=450.0, thermostat="csvr", tau_fs=20.0,
        replicas=2, seed=1, write_every=0, progress=False,
    )  # fmt: skip
    torch.testing.assert_close(same.final_state.velocities, res.final_state.velocities)


# ------------------------------------------------------------------------------------ thermostats
def _thermostat_series(update, n_steps: int = 2000, n: int = 256, systems: int = 4):
    m = torch.full((n * systems,), 26.9815, dtype=torch.float64)
    batch = torch.arange(systems).repeat_interleave(n)
    gens = [torch.Generator().manual_seed(7 + k) for k in range(systems)]
    vel = th.maxwell_boltzmann(m, 100.0, gens, batch)  # start far from the target
    temps = []
    for _ in range(n_steps):
        vel = update(vel, m, batch, gens)
        temps.append(physics.kinetic_temperature(vel, m, batch))
    return torch.stack(temps).numpy(), 3 * n - 3


@pytest.mark.parametrize("kind", ["csvr", "langevin"])
def test_thermostat_canonical(kind):
    target, dt = 300.0, 1.0
    if kind == "csvr":

        def update(v, m, b, g):
            return th.csvr(v, m, b, target, dt_fs=dt, tau_fs=10 * dt, generator=g)
    else:

        def update(v, m, b, g):
            v = th.langevin(v, m, b, target, dt_fs=dt, friction_per_ps=100.0, generator=g)
            return physics.remove_net_momentum(v, m, b)

    temps, dof = _thermostat_series(update)
    settled = temps[200:]  # 20 relaxation times
    assert abs(settled.mean() / target - 1) < 0.03
    # canonical kinetic energy: Var(T) = 2 T² / N_f
    ratio = settled.var(axis=0).mean() / (2 * target**2 / dof)
    assert 0.6 < ratio < 1.5, ratio


def test_langevin_damps_over_tau_unless_a_friction_is_given():
    """One τ for both thermostats (as LAMMPS' ``fix langevin`` damp and the reference runs of
    ``fidelity``/``evaluate`` take it): Langevin's friction is 1/τ; 100 strides by default;
    an explicit friction wins. A kinetic energy far from the set point relaxes at 2/τ."""
    from equignnmd.rollout.stages import Thermostat

    def friction(**kw):
        return Thermostat.make("langevin", 300.0, 20.0, **kw).description

    assert "friction=2 /ps" in friction(tau_fs=500.0)
    assert "friction=0.5 /ps" in friction()  # 100 × 20 fs
    assert "friction=7 /ps" in friction(tau_fs=500.0, friction_per_ps=7.0)
    assert "tau=500 fs" in Thermostat.make("csvr", 300.0, 20.0, tau_fs=500.0).description
    m = torch.full((4000,), 26.98, dtype=torch.float64)
    cold = torch.zeros(4000, 3, dtype=torch.float64)
    stage = Thermostat.make("langevin", 300.0, 20.0, tau_fs=500.0)
    v, g = cold, [torch.Generator().manual_seed(3)]
    for _ in range(25):  # 500 fs = τ: K reaches 1 − e^(−2) of the set point's
        v = stage.update(v, m, None, g)
    t = float(physics.kinetic_temperature(v, m))
    assert abs(t / (300.0 * (1 - np.exp(-2.0))) - 1) < 0.05, t


def test_csvr_zero_tau_and_default_tau():
    m = torch.full((256,), 26.98, dtype=torch.float64)
    v = th.maxwell_boltzmann(m, 300.0, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    slow = th.csvr(v, m, None, 300.0, dt_fs=1.0, generator=g)  # tau = 100 fs: small change
    assert abs(float(physics.kinetic_temperature(slow, m)) / 300 - 1) < 0.05
    fast = th.csvr(v, m, None, 900.0, dt_fs=1.0, tau_fs=0.0, generator=g)  # instant resample
    assert abs(float(physics.kinetic_temperature(fast, m)) / 900 - 1) < 0.25
    torch.testing.assert_close(
        physics.net_momentum(fast, m), torch.zeros(1, 3, dtype=torch.float64)
    )


def test_maxwell_boltzmann():
    m = torch.tensor([26.98, 58.69] * 128 + [26.98] * 100, dtype=torch.float64)
    batch = torch.tensor([0] * 256 + [1] * 100)
    gens = [torch.Generator().manual_seed(k) for k in range(2)]
    v = th.maxwell_boltzmann(m, [300.0, 50.0], gens, batch)
    torch.testing.assert_close(
        physics.kinetic_temperature(v, m, batch), torch.tensor([300.0, 50.0], dtype=torch.float64)
    )
    assert physics.net_momentum(v, m, batch).abs().max() < 1e-10
    # per-system streams: system 1 alone draws the same velocities
    alone = th.maxwell_boltzmann(m[256:], 50.0, torch.Generator().manual_seed(1))
    torch.testing.assert_close(v[256:], alone)
    # equipartition by mass: heavier atoms are slower (mean v² ∝ 1/m)
    v2 = (v[:256] ** 2).sum(-1)
    ratio = float(v2[0::2].mean() / v2[1::2].mean())
    assert 1.5 < ratio < 2.9  # 58.69 / 26.98 = 2.18
    assert torch.equal(th.maxwell_boltzmann(m, 0.0), torch.zeros_like(v))


def test_initial_velocities_drawn_when_missing():
    ro = Rollout(Ballistic(), fcc(0, temperature_K=None), 2.0, temperature_K=450.0, progress=False)
    st = ro.state
    temp = physics.kinetic_temperature(st.velocities, st.masses, st.batch)
    torch.testing.assert_close(temp, torch.tensor([450.0], dtype=torch.float64))
    assert physics.net_momentum(st.velocities, st.masses, st.batch).abs().max() < 1e-10
    torch.testing.assert_close(ro.model_temperature, temp)
    # given velocities are kept, unless resampled (then replicas differ)
    kept = Rollout(Ballistic(), fcc(0), 2.0, temperature_K=450.0, replicas=2, progress=False)
    v = velocity_from_ase(fcc(0).get_velocities())
    np.testing.assert_allclose(kept.state.velocities[:256].numpy(), v, atol=1e-10)
    np.testing.assert_allclose(kept.model_temperature.numpy(), 300.0)  # NVE: initial T
    new = Rollout(
        Ballistic(), fcc(0), 2.0, temperature_K=450.0, replicas=2, resample_velocities=True,
        progress=False,
    )  # fmt: skip
    st = new.state
    torch.testing.assert_close(
        physics.kinetic_temperature(st.velocities, st.masses, st.batch),
        torch.tensor([450.0, 450.0], dtype=torch.float64),
    )
    assert not torch.allclose(st.velocities[:256], st.velocities[256:])


def test_structure_without_velocities_needs_a_temperature(tmp_path):
    """NVE from rest would label itself 0 K with the temperature guard off: refused, as by
    SurrogateMD, naming the structure (and its file)."""
    from equignnmd.ase_md import SurrogateMD

    still = fcc(0, temperature_K=None)
    expected = "has no velocities: give temperature_K to draw Maxwell–Boltzmann velocities"
    with pytest.raises(ValueError, match=f"structure 0 {expected}"):
        Rollout(Ballistic(), still, 2.0, progress=False)
    with pytest.raises(ValueError, match=r"structure 1 has no velocities.*\(got 0 K\)"):
        Rollout(Ballistic(), [fcc(1), still], 2.0, temperature_K=0.0, progress=False)
    ase.io.write(tmp_path / "still.extxyz", still)
    with pytest.raises(ValueError, match=r"structure 0 \(.*still\.extxyz\) has no velocities"):
        run_rollout(
            Ballistic(), str(tmp_path / "still.extxyz"), 2.0, 1, out_dir=tmp_path / "ro",
            progress=False,
        )  # fmt: skip
    assert not (tmp_path / "ro").exists()  # refused before any output
    with pytest.raises(ValueError, match="is to be resampled: give temperature_K"):
        Rollout(Ballistic(), fcc(0), 2.0, resample_velocities=True, progress=False)
    # the ASE integrator refuses the same inputs
    for temperature_K in (None, 0.0):
        with pytest.raises(ValueError, match="no velocities"):
            SurrogateMD(still.copy(), Ballistic(), 2.0 * ase.units.fs, temperature_K=temperature_K)
    # with velocities, NVE needs no temperature: the label is the initial kinetic temperature
    ro = Rollout(Ballistic(), fcc(0), 2.0, progress=False)
    np.testing.assert_allclose(ro.model_temperature.numpy(), 300.0)


def test_rollout_json_replaced_atomically(tmp_path):
    """rollout.json is rewritten as the run goes; each version arrives by rename (a new
    file), never by rewriting the old one in place, and no temporary file is left."""
    import json
    import os

    with Rollout(Ballistic(), fcc(0), 2.0, out_dir=tmp_path, progress=False) as ro:
        path = tmp_path / "rollout.json"
        first = json.loads(path.read_text())
        inode = os.stat(path).st_ino
        ro.run(3)
    assert "stopped_reason" not in first and first["dt_fs"] == 2.0
    assert first["stages"] == ["ModelStep", "RemoveMomentum"]
    after = json.loads(path.read_text())
    assert after["steps_done"] == 3 and after["stopped_reason"] is None
    assert os.stat(path).st_ino != inode
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "replica_000.extxyz",
        "restart.pt",
        "rollout.json",
        "thermo.csv",
    ]


@pytest.mark.parametrize("thermostat", ["csvr", "langevin"])
def test_thermostat_heats_a_rollout_to_the_set_point(thermostat):
    """300 K velocities, set point 600 K, free-flight model (the kinetic temperature is the
    thermostat's doing alone): after 10 relaxation times the mean is 600 K within 10 %.
    Canonical fluctuations are 600 K × sqrt(2 / 765) ≈ 31 K per step, correlated over ~10
    steps, so the 100-step mean sits within ~3 % of the set point."""
    res = run_rollout(
        Ballistic(),
        fcc(3),
        dt_fs=2.0,
        steps=200,
        temperature_K=600.0,
        thermostat=thermostat,
        tau_fs=20.0,  # csvr: 10 strides
        friction_per_ps=25.0,  # langevin: kinetic energy relaxes at 2γ, i.e. in 20 fs
        seed=5,
        write_every=0,
        min_distance_A=0.0,  # free flight lets atoms pass through each other
        progress=False,
    )
    assert res.completed, res.stopped_reason
    temps = res.temperature_K[:, 0]
    assert abs(temps[0] / 300.0 - 1) < 1e-9  # started at 300 K, not at the set point
    second_half = temps[len(temps) // 2 :]
    assert abs(second_half.mean() / 600.0 - 1) < 0.1, second_half.mean()
    assert temps[:5].mean() < 500.0  # heated over time, not in one go


# ------------------------------------------------------------------------------------ guard
@pytest.mark.parametrize(
    "mode, cause",
    [
        ("nan", "non-finite"),
        ("collapse", "closer than min_distance_A"),
        ("hot", "exceeds max_temperature_factor"),
        ("cold", "below min_temperature_factor"),
    ],
)
def test_stability_guard(tmp_path, mode, cause):
    at = 5
    structures = [fcc(0), fcc(1)]
    # the lower bound is off by default; the ballistic steps before `at` keep 300 K
    guard = {"min_temperature_factor": 0.5} if mode == "cold" else {}
    with pytest.warns(RuntimeWarning, match="rollout unstable"):
        res = run_rollout(
            Exploding(mode, at),
            structures,
            2.0,
            20,
            temperature_K=300.0,
            write_every=1,
            out_dir=tmp_path,
            progress=False,
            **guard,
        )
    assert not res.completed
    assert res.stopped_step == at and res.stopped_replica == 1
    msg = res.stopped_reason
    assert f"step {at}" in msg and "replica 1" in msg and cause in msg, msg
    assert len(res.step) == at + 1
    # partial trajectories readable, every frame before the failure present
    for path in res.files["trajectories"]:
        frames = ase.io.read(path, ":")
        steps = [f.info["step"] for f in frames]
        assert steps[:at] == list(range(at))
        assert len(frames) in (at, at + 1)  # the failing frame is kept when finite
    rows = np.genfromtxt(res.files["thermo"], delimiter=",", names=True)
    assert rows["step"].max() == at
    with pytest.raises(RolloutUnstable, match=f"step {at}") as err:
        run_rollout(
            Exploding(mode, at), structures, 2.0, 20, temperature_K=300.0, write_every=0,
            progress=False, on_unstable="raise", **guard,
        )  # fmt: skip
    assert err.value.step == at and err.value.replica == 1


# ------------------------------------------------------------------------------------ io
def test_lammps_dump_round_trip(tmp_path):
    res = run_rollout(
        Ballistic(), fcc(2), 5.0, 6, write_every=3, out_dir=tmp_path, fmt="lammps-dump",
        progress=False,
    )  # fmt: skip
    path = res.files["trajectories"][0]
    assert path.endswith(".lammpstrj")
    frames = ase.io.read(path, ":", format="lammps-dump-text")
    assert len(frames) == 3
    st = res.final_state
    last = frames[-1]
    assert set(last.get_chemical_symbols()) == {"Al"}
    np.testing.assert_allclose(last.positions, st.positions.numpy(), atol=1e-6)
    np.testing.assert_allclose(
        velocity_from_ase(last.get_velocities()), st.velocities.numpy(), atol=1e-6
    )
    np.testing.assert_allclose(last.cell.array, st.cell[0].numpy(), atol=1e-8)
    text = Path(path).read_text().splitlines()
    assert text[4] == "ITEM: BOX BOUNDS pp pp pp"
    assert text[8] == "ITEM: ATOMS id type element x y z vx vy vz ix iy iz"


def test_lammps_dump_types_follow_species_order(tmp_path):
    """Types number ``species_order`` (given in any order) from 1; unknown species refused."""
    atoms = bulk("Cu", "fcc", a=3.6, cubic=True).repeat((2, 2, 2))
    numbers = np.array([13, 29, 29, 8] * 8)
    atoms.set_atomic_numbers(numbers)
    path = tmp_path / "mix.lammpstrj"
    with LammpsDumpWriter(path, species_order=[29, 8, 13]) as w:
        w.write(atoms.positions, np.zeros((32, 3)), atoms.cell.array, numbers)
        with pytest.raises(ValueError, match=r"mix.lammpstrj: atomic numbers \[1, 47\]"):
            w.write(atoms.positions, np.zeros((32, 3)), atoms.cell.array, [1, 47] * 16)
    rows = [r.split() for r in path.read_text().splitlines()[9:]]
    assert [int(r[1]) for r in rows[:4]] == [3, 1, 1, 2]
    assert [r[2] for r in rows[:4]] == ["Al", "Cu", "Cu", "O"]
    back = ase.io.read(path, format="lammps-dump-text")
    np.testing.assert_array_equal(back.numbers, numbers)
    with LammpsDumpWriter(tmp_path / "auto.lammpstrj") as w:  # default: by atomic number
        w.write(atoms.positions, np.zeros((32, 3)), atoms.cell.array, numbers)
    assert w.species_order == [8, 13, 29]


def test_lammps_dump_triclinic(tmp_path):
    atoms = bulk("Al", "fcc", a=4.05).repeat((3, 3, 3))  # primitive cell: 60° angles
    atoms.rattle(0.05, seed=0)
    atoms.wrap()
    vel = np.random.default_rng(0).normal(size=(len(atoms), 3))
    with LammpsDumpWriter(tmp_path / "tri.lammpstrj") as w:
        w.write(atoms.positions, vel, atoms.cell.array, atoms.numbers, step=7)
    back = ase.io.read(tmp_path / "tri.lammpstrj", format="lammps-dump-text")
    assert "xy xz yz pp pp pp" in (tmp_path / "tri.lammpstrj").read_text()
    np.testing.assert_allclose(back.cell.cellpar(), atoms.cell.cellpar(), atol=1e-6)
    # same structure up to a rotation: pair distances and speeds agree
    np.testing.assert_allclose(
        back.get_all_distances(mic=True), atoms.get_all_distances(mic=True), atol=1e-6
    )
    speeds = np.linalg.norm(velocity_from_ase(back.get_velocities()), axis=1)
    np.testing.assert_allclose(speeds, np.linalg.norm(vel, axis=1), atol=1e-6)


def test_read_structure(tmp_path):
    atoms = fcc(0)
    with pytest.raises(FileNotFoundError, match="nothere.extxyz"):
        read_structure(tmp_path / "nothere.extxyz")
    bad = tmp_path / "bad.extxyz"
    bad.write_text("this is not\na structure\n")
    with pytest.raises(ValueError, match="bad.extxyz"):
        read_structure(bad)
    ase.io.write(tmp_path / "s.extxyz", [atoms, atoms])
    got = read_structure(tmp_path / "s.extxyz")
    np.testing.assert_allclose(got.positions, atoms.positions, atol=1e-6)
    ase.io.write(tmp_path / "s.data", atoms, format="lammps-data", masses=True, units="metal")
    data = read_structure(tmp_path / "s.data")
    assert len(data) == 256 and set(data.get_chemical_symbols()) == {"Al"}
    np.testing.assert_allclose(data.positions, atoms.positions, atol=1e-6)
    copy = read_structure(atoms)
    assert copy is not atoms and len(copy) == len(atoms)


# ------------------------------------------------------------------------ inputs checked first
def _bad_structure(kind: str, path: Path) -> tuple[Path, str, str]:
    """A structure file with one problem: (file, field, what the message must expect)."""
    atoms = fcc(0)
    if kind == "species":
        atoms.numbers[:8] = 29  # Cu in an Al model
        field, expected = "species", "expected only Al (13)"
    elif kind == "nan-position":
        pos = atoms.positions
        pos[5, 1] = np.nan
        atoms.positions = pos
        field, expected = "positions", "atom index 5"
    elif kind == "inf-velocity":
        vel = atoms.get_velocities()
        vel[7] = np.inf
        atoms.set_velocities(vel)
        field, expected = "velocities", "expected finite velocities"
    elif kind == "small-box":  # 8.1 Å < 2 × 5.5 Å, the shipped equivariant model's cutoff
        atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((2, 2, 2))
        field, expected = "cell", "2 × 5.5 Å (the model's cutoff) = 11.000 Å"
    elif kind == "close-pair":  # atom 200 put 1.2 Å from atom 7 (through the boundary)
        pos = atoms.positions
        pos[200] = pos[7] + np.array([-1.2, 0.0, 0.0]) + atoms.cell[0]
        atoms.positions = pos
        field, expected = "positions", "atoms 7 and 200 1.200 Å apart"
    elif kind == "no-box":  # plain xyz: no Lattice, zero cell
        atoms.pbc = False
        atoms.cell = np.zeros((3, 3))
        path = path.with_suffix(".xyz")
        field, expected = "cell", "expected a 3-D periodic box"
    ase.io.write(path, atoms)
    return path, field, expected


@pytest.mark.parametrize(
    "kind", ["species", "nan-position", "inf-velocity", "small-box", "close-pair", "no-box"]
)
def test_cli_rollout_checks_the_structure_before_writing(tmp_path, capsys, kind):
    """A real checkpoint (pretrained:equivariant-al, cutoff 5.5 Å) and a real file: the
    message names the file, the field and the expectation; no output folder appears."""
    from equignnmd.cli import main

    path, field, expected = _bad_structure(kind, tmp_path / "start.extxyz")
    out = tmp_path / "ro"
    code = main(
        ["rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", str(path)]
        + ["--dt", "5", "--steps", "3", "--temperature", "300", "--out", str(out)]
        + ["--no-progress", "--device", "cpu"]
    )
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"structure file {path}" in err and f"field '{field}'" in err and expected in err
    assert "6.287" not in err  # the model's cutoff, not the paper's
    if kind == "close-pair":  # the guard's threshold (--min-distance, default 1.5 Å)
        assert "min_distance_A = 1.5 Å" in err and "--min-distance" in err, err
    assert not out.exists()


def test_rollout_refuses_a_close_pair_at_the_given_min_distance(tmp_path):
    """The pair check uses the run's own threshold: refused at 1.5 Å with the pair named,
    accepted at 1.0 Å; nothing is written when refused."""
    model = tiny_model("equivariant")
    atoms = fcc(0)
    pos = atoms.positions
    pos[3] = pos[0] + np.array([0.9, 0.9, 0.0])  # 1.273 Å from atom 0
    atoms.positions = pos
    out = tmp_path / "ro"
    with pytest.raises(ValueError, match=r"atoms 0 and 3 1\.273 Å apart .* 1\.5 Å"):
        Rollout(model, atoms, 1.0, steps=1, out_dir=out, min_distance_A=1.5, progress=False)
    assert not out.exists()
    with Rollout(model, atoms, 1.0, steps=1, out_dir=out, min_distance_A=1.0, progress=False) as ro:
        assert ro.run().completed


def test_rollout_api_checks_species_and_values_before_writing(tmp_path):
    model = tiny_model("equivariant")
    atoms = fcc(0)
    atoms.numbers[0] = 29
    with pytest.raises(ValueError, match=r"structure 0: field 'species' has Cu \(29\)"):
        Rollout(model, atoms, 1.0, steps=2, out_dir=tmp_path / "ro", progress=False)
    state = RolloutState.from_atoms([fcc(0)])
    state.velocities[3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"first run: field 'velocities' .* atom index 3"):
        Rollout(
            model, state, 1.0, steps=2, out_dir=tmp_path / "ro", progress=False,
            names=["first run"],
        )  # fmt: skip
    assert not (tmp_path / "ro").exists()


# ------------------------------------------------------------------------------------- speed
def _last_thermo_row(path: Path) -> dict[str, float]:
    lines = path.read_text().splitlines()
    header = lines[0].split(",")
    return dict(zip(header, (float(x) for x in lines[-1].split(","))))


def test_one_speed_definition_summary_thermo_and_result_agree(tmp_path):
    """Strides of the loop per wall second of the loop, cumulative over run() calls; ns/day =
    steps/s × stride. The result and thermo.csv's last row say the same; a second run()
    continues the count."""
    dt = 5.0
    with Rollout(
        Ballistic(), fcc(0), dt, steps=4, out_dir=tmp_path, write_every=2, progress=False
    ) as ro:
        ro.run()
        res = ro.run(4)
    assert res.step[-1] == 8 and res.wall_s[0] == 0.0 and np.all(np.diff(res.wall_s) > 0)
    row = _last_thermo_row(tmp_path / "thermo.csv")
    assert row["step"] == 8
    assert row["wall_s"] == pytest.approx(res.wall_s[-1], abs=1e-4)
    assert row["ns_per_day"] == pytest.approx(res.ns_per_day, rel=1e-5)
    assert res.steps_per_s == pytest.approx(8 / res.wall_s[-1])
    assert res.ns_per_day == pytest.approx(res.steps_per_s * dt * 86400 / 1e6)


def test_cli_rollout_summary_matches_the_last_thermo_row(tmp_path, capsys):
    from equignnmd.cli import main

    start = tmp_path / "start.extxyz"
    ase.io.write(start, fcc(0))
    out = tmp_path / "ro"
    code = main(
        ["rollout", "--checkpoint", "pretrained:equivariant-al", "--structure", str(start)]
        + ["--dt", "5", "--steps", "4", "--write-every", "2", "--out", str(out)]
        + ["--no-progress", "--device", "cpu"]
    )
    text = capsys.readouterr().out
    assert code == 0, text
    summary = text.split(" K: ")[1]  # "… replica(s), mean T 301.2 K: 12.3 steps/s, …"
    steps_s = float(summary.split(" steps/s")[0])
    ns_day = float(summary.split("steps/s, ")[1].split(" ns/day")[0])
    row = _last_thermo_row(out / "thermo.csv")
    assert row["step"] == 4
    assert ns_day == pytest.approx(row["ns_per_day"], rel=6e-3)  # printed to 3 digits
    assert steps_s == pytest.approx(4 / row["wall_s"], rel=6e-3)
    assert ns_day == pytest.approx(steps_s * 5 * 86400 / 1e6, rel=1e-2)
