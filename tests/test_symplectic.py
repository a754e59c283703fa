"""The ``symplectic`` architecture: velocity Verlet over a learned potential is symplectic,
time-reversible and momentum-conserving by construction, whatever its coefficients (real
256-atom LAMMPS frames, a potential fitted to them, random stride corrections)."""

from __future__ import annotations

import pytest
import torch

from equignnmd import load_checkpoint
from equignnmd.cli import main
from equignnmd.data.dataset import PairDataset
from equignnmd.graph import collate, make_data
from equignnmd.models import build_model
from equignnmd.units import MVV2E

pytestmark = pytest.mark.usefixtures("one_thread_module")


def _model(tiny_dataset, seed: int | None = 0, spread: float = 0.05, **overrides):
    data = PairDataset(tiny_dataset, [10.0], "train", start_every_fs=100.0, dtype=torch.float64)
    model = build_model("symplectic", stats=data.statistics(), **overrides).double()
    report = model.initialise_from_data(tiny_dataset, frames_per_temperature=6)
    if seed is not None:  # corrections away from zero: the properties must not need δ = 0
        gen = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            model.stride_coefficients.normal_(0.0, spread, generator=gen)
    return model.eval(), data, report


@pytest.fixture(scope="module")
def fitted(tiny_dataset):
    return _model(tiny_dataset)


def _batch(data, dt_fs=20.0, pos=None, vel=None):
    """The first sample of ``data`` at stride ``dt_fs``, optionally at other positions and
    velocities."""
    batch = collate([data[0]])
    batch.dt_fs = torch.full_like(batch.dt_fs, dt_fs)
    if pos is not None:
        batch.pos = pos
    if vel is not None:
        batch.vel = vel
    return batch


def test_fresh_model_starts_from_the_fitted_potential(fitted):
    model, _, report = fitted
    # the fit reproduces the held-out forces to a few per cent of their RMS
    score = report["scores"]["test 350 K"]
    assert score["force_eV_per_A"] < 0.1 * score["force_rms_eV_per_A"]
    # every coefficient that exerts a force is trainable; the constants e₀ exert none
    n_const = model.potential.n_species
    assert torch.all(model.coefficient_scale[:-n_const] > 0)
    assert torch.all(model.coefficient_scale[-n_const:] == 0)


def test_time_reversal_and_momentum_are_exact(fitted):
    model, data, _ = fitted
    batch = _batch(data)
    with torch.no_grad():
        fwd = model(batch)
        back = model(_batch(data, pos=batch.pos + fwd.displacement, vel=-fwd.velocity))
    # step, flip the velocities, step, flip: back at the start (to float64 rounding)
    torch.testing.assert_close(back.displacement, -fwd.displacement, rtol=0, atol=1e-10)
    torch.testing.assert_close(-back.velocity, batch.vel, rtol=0, atol=1e-9)
    mass = batch.mass.unsqueeze(-1)
    torch.testing.assert_close(
        (mass * fwd.velocity).sum(0), (mass * batch.vel).sum(0), rtol=0, atol=1e-9
    )
    assert fwd.displacement.abs().max() > 0.01  # it did move


def test_map_is_symplectic(tiny_dataset):
    """JᵀΩJ = Ω for the map (q, p) → (q′, p′) of a 32-atom cell (cutoff 3.5 Å: the box is
    2 × 2 × 2 conventional cells), with random stride corrections and two steps per stride."""
    from ase.build import bulk

    model, _, _ = _model(tiny_dataset, seed=1, cutoff=3.5, max_substep_fs=10.0)
    atoms = bulk("Al", "fcc", a=4.08, cubic=True).repeat(2)
    gen = torch.Generator().manual_seed(3)
    n = len(atoms)
    small = make_data(
        atoms.positions + 0.1 * torch.randn(n, 3, generator=gen, dtype=torch.float64).numpy(),
        3.0 * torch.randn(n, 3, generator=gen, dtype=torch.float64).numpy(),  # Å/ps
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=20.0,
        temperature_K=300.0,
        dtype=torch.float64,
    )
    mass = small.mass.unsqueeze(-1)
    model.train()  # keep the force graph, so the map is differentiable

    def step(q, p):
        batch = collate([small])
        batch.pos, batch.vel = q, p / mass
        out = model(batch)
        return torch.cat([(q + out.displacement).reshape(-1), (mass * out.velocity).reshape(-1)])

    q0, p0 = small.pos.clone(), mass * small.vel
    jac = torch.autograd.functional.jacobian(step, (q0, p0))
    jac = torch.cat([jac[0].reshape(6 * n, -1), jac[1].reshape(6 * n, -1)], dim=1)
    eye = torch.eye(3 * n, dtype=torch.float64)
    zero = torch.zeros_like(eye)
    omega = torch.cat([torch.cat([zero, eye], 1), torch.cat([-eye, zero], 1)], 0)
    torch.testing.assert_close(jac.T @ omega @ jac, omega, rtol=0, atol=1e-8)
    # and not trivially: the forces couple positions into the momenta
    assert jac[3 * n :, : 3 * n].abs().max() > 1e-3


def test_a_long_stride_is_cut_into_steps_and_inference_mode_agrees(tiny_dataset):
    # a 20-fs stride of a model with 10-fs steps is two 10-fs strides; a batch mixing
    # strides steps each graph its own number of times
    model, data, _ = _model(tiny_dataset, seed=4, max_substep_fs=10.0)
    model._keep(None)
    with torch.inference_mode():  # as rollouts call it
        both = model(_batch(data, dt_fs=20.0))
        first = model(_batch(data, dt_fs=10.0))
        second = model(
            _batch(data, dt_fs=10.0, pos=data[0].pos + first.displacement, vel=first.velocity)
        )
        mixed = collate([data[0], data[0]])
        mixed.dt_fs = torch.tensor([20.0, 10.0], dtype=torch.float64)
        pair = model(mixed)
    torch.testing.assert_close(both.displacement, first.displacement + second.displacement)
    torch.testing.assert_close(both.velocity, second.velocity)
    n = len(data[0].pos)
    torch.testing.assert_close(pair.displacement[:n], both.displacement)
    torch.testing.assert_close(pair.displacement[n:], first.displacement)
    torch.testing.assert_close(pair.velocity[n:], first.velocity)


@pytest.mark.slow
def test_nve_energy_of_its_own_potential_stays_bounded(tiny_dataset):
    """The map conserves a shadow energy: the total energy of its own potential (kinetic +
    U at the stride's coefficients) fluctuates without a trend over 300 strides of 10 fs
    (small random corrections: large random ones can make the potential unbounded)."""
    model, data, _ = _model(tiny_dataset, seed=2, spread=0.02)
    batch = _batch(data, dt_fs=10.0)
    mass = batch.mass.unsqueeze(-1)
    dt = torch.tensor([10.0], dtype=torch.float64)
    pos, vel, energies = batch.pos.clone(), batch.vel.clone(), []
    with torch.no_grad():
        for _ in range(300):
            ke = 0.5 * MVV2E * float((mass * vel * vel).sum())
            pe = float(model.energy(pos, batch.cell, batch.species, batch.batch, dt)[0])
            energies.append((ke + pe) / len(pos))
            out = model(_batch(data, dt_fs=10.0, pos=pos, vel=vel))
            pos, vel = pos + out.displacement, out.velocity
    e = torch.tensor(energies) * 1000.0  # meV/atom
    spread = float(e.max() - e.min())
    assert spread < 2.0, spread
    assert abs(float(e[-100:].mean() - e[:100].mean())) < 0.25 * spread + 0.05


def test_train_resume_and_reload(tmp_path, tiny_dataset):
    out = tmp_path / "run"
    common = [
        "train",
        "--config",
        "symplectic",
        "--data",
        str(tiny_dataset),
        "--out",
        str(out),
        "--strides",
        "10,20",
        "--set",
        "samples_per_epoch=8",
        "--set",
        "max_val_samples=4",
        "--no-progress",
    ]
    assert main([*common, "--epochs", "1"]) == 0
    assert main([*common, "--epochs", "2", "--resume"]) == 0
    model = load_checkpoint(out / "best.pt", device="cpu").double().eval()
    assert model.arch == "symplectic"
    assert model.stride_coefficients.abs().max() > 0  # trained away from the fit
    assert model.coefficient_scale.abs().sum() > 0  # the fit travelled in the checkpoint
    assert model.energy_head is not None  # and is its own energy (--energy model)
    torch.testing.assert_close(
        model.energy_head.coefficients, model.potential.coefficients.double()
    )
    data = PairDataset(tiny_dataset, [20.0], "test", start_every_fs=100.0, dtype=torch.float64)
    with torch.no_grad():
        pred = model(collate([data[0]]))
    err = (pred.displacement - data[0].disp).norm(dim=-1).mean()
    ballistic = (data[0].vel * 0.02 - data[0].disp).norm(dim=-1).mean()
    assert err < 0.5 * ballistic  # better than r + vΔt on a held-out temperature


def test_zero_epochs_writes_the_fit_with_stress_rows(tmp_path, tiny_dataset, capsys):
    """``epochs: 0`` (the shipped recipe): no optimisation, the data-initialised model
    (a fit with stress rows) validated and written as best.pt and last.pt; its fit report
    scores stresses; a resume changes nothing; a negative count is refused first."""
    out = tmp_path / "fit"
    common = [
        "train", "--config", "symplectic", "--data", str(tiny_dataset), "--out", str(out),
        "--strides", "10,20", "--set", "max_val_samples=4", "--set", "model.stress_weight=1.0",
        "--no-progress",
    ]  # fmt: skip
    assert main([*common, "--epochs", "0"]) == 0
    best = load_checkpoint(out / "best.pt", device="cpu")
    assert best.stride_coefficients.abs().max() == 0  # δ = 0: the fit alone
    assert best.hparams.stress_weight == 1.0
    scores = best.energy_head_fit["scores"]["test 350 K"]
    assert 0 < scores["stress_GPa"] < scores["stress_rms_GPa"]
    torch.testing.assert_close(best.energy_head.coefficients, best.potential.coefficients)
    assert (out / "validation.md").exists() and not (out / "metrics.csv").exists()
    first = (out / "last.pt").read_bytes()
    assert main([*common, "--epochs", "0", "--resume"]) == 0
    resumed = load_checkpoint(out / "best.pt", device="cpu")
    torch.testing.assert_close(resumed.state_dict(), best.state_dict(), rtol=0, atol=0)
    assert (out / "last.pt").read_bytes() == first
    assert main([*common[:6], str(tmp_path / "no"), *common[7:], "--epochs", "-1"]) == 2
    assert "field 'epochs' must be ≥ 0" in capsys.readouterr().err
    assert not (tmp_path / "no").exists()


def test_a_stride_starting_where_the_last_ended_reuses_its_forces(fitted, monkeypatch):
    model, data, _ = fitted
    from equignnmd.graph import wrap_positions

    calls = []
    kernel = model.potential.energy_and_forces
    monkeypatch.setattr(
        model.potential, "energy_and_forces", lambda *a, **k: calls.append(1) or kernel(*a, **k)
    )
    start = _batch(data)
    n = int(model.substeps(start.dt_fs)[0])  # kick–drift–kick steps of the 20-fs stride
    model._keep(None)  # an earlier test may have ended a stride here (reversal)
    with torch.inference_mode():
        first = model(start)
        # as a rollout hands it on: wrapped, velocities changed by a thermostat
        pos = wrap_positions(start.pos + first.displacement, start.cell, start.batch)
        again = _batch(data, pos=pos, vel=0.9 * first.velocity)
        reused = model(again)
        assert len(calls) == (n + 1) + n  # the second stride starts with the first's forces
        model._keep(None)
        fresh = model(again)
    assert len(calls) == 3 * n + 2
    torch.testing.assert_close(reused.displacement, fresh.displacement, rtol=0, atol=1e-10)
    torch.testing.assert_close(reused.velocity, fresh.velocity, rtol=0, atol=1e-10)
    # a changed parameter is never served stale forces
    with torch.no_grad():
        model.stride_coefficients.add_(0.01)
    with torch.inference_mode():
        model(_batch(data, pos=pos + fresh.displacement, vel=fresh.velocity))
    with torch.no_grad():
        model.stride_coefficients.sub_(0.01)
    assert len(calls) == 4 * n + 3


@pytest.mark.parametrize("cluster", [False, True])
def test_inside_lammps_periodic_and_as_an_open_cluster(fitted, cluster):
    """``fix equignnmd`` with the symplectic model gives the rollout engine's trajectory,
    also as the open cluster an MPI rank sees (ghosts out to the receptive field, 2 × cutoff
    per force evaluation)."""
    import numpy as np
    from lammps_driver import SETUP, gathered, unwrapped_by_id

    from equignnmd._lammps import new_lammps
    from equignnmd.lammps import SurrogateFix, _Box
    from equignnmd.rollout import RolloutState, run_rollout

    model, _, _ = fitted
    assert model.receptive_field_A(10.0) == pytest.approx(4 * model.cutoff)  # one 10-fs step
    assert model.receptive_field_A(50.0) == pytest.approx(12 * model.cutoff)  # five
    lmp = new_lammps()
    for command in SETUP:
        lmp.command(command)
    start, v0 = unwrapped_by_id(lmp), gathered(lmp, "v", 1, 3)
    cell = _Box.of(lmp).cell
    fix = SurrogateFix(lmp, model, dt_fs=10.0, cluster=cluster, outputs_cutoff_A=1.0)
    fix.run(2)
    assert fix.moved_steps == 2 and fix.stopped is None
    n = start.shape[0]
    first = RolloutState.from_arrays([start], [v0], [cell], [np.full(n, 13)], [np.full(n, 26.9815)])
    ref = run_rollout(model, first, dt_fs=10.0, steps=2, progress=False).final_state
    got = unwrapped_by_id(lmp)
    assert np.abs(got - start).max() > 0.03
    np.testing.assert_allclose(got, ref.unwrapped.numpy(), atol=1e-9)
    np.testing.assert_allclose(gathered(lmp, "v", 1, 3), ref.velocities.numpy(), atol=1e-8)
    lmp.close()


def test_closed_form_forces_are_the_autograd_gradient(fitted):
    """The rollout kernel (``EnergyHead.energy_and_forces``) against ``features @ c`` and its
    autograd gradient: one replica (the shared-coefficient path) and two replicas at
    different steps (per-edge coefficients)."""
    from equignnmd.graph import edge_vectors, neighbour_list

    model, data, _ = fitted
    one = collate([data[0]])
    two = collate([data[0], data[1]])
    for batch, h_fs in ((one, [20.0]), (two, [20.0, 12.5])):
        h = torch.tensor(h_fs, dtype=torch.float64)
        cell = batch.cell.reshape(-1, 3, 3)
        pos = batch.pos.clone().requires_grad_(True)
        energy = model.energy(pos, cell, batch.species, batch.batch, h)
        (grad,) = torch.autograd.grad(energy.sum(), pos)
        edge_index, shifts = neighbour_list(batch.pos, cell, model.cutoff, batch.batch)
        vectors = edge_vectors(batch.pos, cell, edge_index, shifts, batch.batch)
        with torch.no_grad():
            e, f = model.potential.energy_and_forces(
                batch.pos, batch.species, batch.batch, model.coefficients(h), edge_index, vectors
            )
        torch.testing.assert_close(e, energy.detach(), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(f, -grad, rtol=0, atol=1e-10)
        assert grad.abs().max() > 0.1  # thermal frames: real forces


def test_core_repulsion_keeps_a_close_pair_apart_and_leaves_the_fit_alone(tiny_dataset):
    """``core_radius`` / ``core_strength`` (issue 12, ``symplectic-al`` v2): below r_core the
    fitted pair function is replaced by its C² quadratic continuation and a fixed repulsion
    rises. The fit is unchanged (no fit frame comes that close), the closed-form forces stay
    the autograd gradient with a pair inside the core, and a pair pushed inside it is
    repelled ever harder as it closes."""
    from equignnmd.graph import edge_vectors, neighbour_list

    plain, data, _ = _model(tiny_dataset, seed=None)
    cored, _, _ = _model(tiny_dataset, seed=None, core_radius=2.2, core_strength=40.0)
    torch.testing.assert_close(cored.potential.coefficients, plain.potential.coefficients)
    # the continuation is C² at r_core: value, slope and curvature of every basis function
    g, dg = cored.potential.pair_basis(torch.tensor([2.2 - 1e-9, 2.2 + 1e-9], dtype=torch.float64))
    torch.testing.assert_close(g[0], g[1], rtol=0, atol=1e-7)
    torch.testing.assert_close(dg[0], dg[1], rtol=0, atol=1e-5)
    r = torch.tensor([2.2 - 2e-4, 2.2 - 1e-4, 2.2 + 1e-4, 2.2 + 2e-4], dtype=torch.float64)
    g, dg = cored.potential.pair_basis(r)
    curv_in, curv_out = (dg[1] - dg[0]) / 1e-4, (dg[3] - dg[2]) / 1e-4
    torch.testing.assert_close(curv_in, curv_out, rtol=0, atol=0.02 * float(curv_out.abs().max()))
    batch = collate([data[0]])
    cell = batch.cell.reshape(-1, 3, 3)
    h = torch.tensor([10.0], dtype=torch.float64)
    ei, shifts = neighbour_list(batch.pos, cell, 3.2, batch.batch)
    d = edge_vectors(batch.pos, cell, ei, shifts, batch.batch)  # r_src − r_dst (+ shift)
    bond = d[int(torch.argmin(torch.where(ei[1] == 0, d.norm(dim=-1), torch.inf)))]
    unit = bond / bond.norm()
    energies, pushes = [], []
    for r_pair in (2.0, 1.8, 1.6, 1.4):  # atom 0 moved along the bond to r_pair from j
        pos = batch.pos.clone()
        pos[0] = pos[0] + unit * (bond.norm() - r_pair)
        edge_index, shifts = neighbour_list(pos, cell, cored.cutoff, batch.batch)
        vectors = edge_vectors(pos, cell, edge_index, shifts, batch.batch)
        with torch.no_grad():
            e, f = cored.potential.energy_and_forces(
                pos, batch.species, batch.batch, cored.coefficients(h), edge_index, vectors
            )
        p = pos.clone().requires_grad_(True)
        energy = cored.energy(p, cell, batch.species, batch.batch, h)
        (grad,) = torch.autograd.grad(energy.sum(), p)
        torch.testing.assert_close(e, energy.detach(), rtol=1e-12, atol=1e-9)
        torch.testing.assert_close(f, -grad, rtol=0, atol=1e-10)
        energies.append(float(e))
        pushes.append(float(f[0] @ -unit))  # away from j
    assert all(b > a for a, b in zip(energies, energies[1:])), energies
    assert all(b > a > 0 for a, b in zip(pushes, pushes[1:])), pushes
    with pytest.raises(Exception, match="core_radius"):
        build_model("symplectic", stats=data.statistics(), core_radius=6.0, cutoff=5.5)


def test_tabulated_potential_is_the_closed_form(tiny_dataset):
    """Rollouts read the pair and density functions from cubic tables (``table_spacing_A``,
    the cost independent of the basis): energies and forces equal the closed form's, with
    the core on, for one replica and for two at different steps (a pair function per
    replica); a stride equals the closed-form stride; a changed parameter rebuilds the
    table."""
    from equignnmd.graph import edge_vectors, neighbour_list

    model, data, _ = _model(tiny_dataset, seed=5, core_radius=2.15, core_strength=400.0)
    assert model.hparams.table_spacing_A == 0.001  # the default: tables on
    one, two = collate([data[0]]), collate([data[0], data[1]])
    pos = one.pos.clone()
    pos[0] = pos[0] + torch.tensor([0.4, 0.3, 0.2], dtype=torch.float64)  # a close pair too
    one.pos = pos
    for batch, h_fs in ((one, [20.0]), (two, [20.0, 12.5])):
        h = torch.tensor(h_fs, dtype=torch.float64)
        cell = batch.cell.reshape(-1, 3, 3)
        edge_index, shifts = neighbour_list(batch.pos, cell, model.cutoff, batch.batch)
        vectors = edge_vectors(batch.pos, cell, edge_index, shifts, batch.batch)
        c = model.coefficients(h).detach()
        args = (batch.pos, batch.species, batch.batch, c, edge_index, vectors)
        table = model.potential.tabulate(c, model.hparams.table_spacing_A)
        assert table.n_pair_functions == len(h_fs)
        e0, f0 = model.potential.energy_and_forces(*args)
        e1, f1 = model.potential.energy_and_forces(*args, table)
        torch.testing.assert_close(e1, e0, rtol=0, atol=1e-9 * len(batch.pos))
        torch.testing.assert_close(f1, f0, rtol=0, atol=1e-7)
        assert f0.abs().max() > 0.1
    closed, _, _ = _model(
        tiny_dataset, seed=5, core_radius=2.15, core_strength=400.0, table_spacing_A=0.0
    )
    for m in (model, closed):
        m._keep(None)
    with torch.inference_mode():
        got, want = model(_batch(data)), closed(_batch(data))
        torch.testing.assert_close(got.displacement, want.displacement, rtol=0, atol=1e-10)
        torch.testing.assert_close(got.velocity, want.velocity, rtol=0, atol=1e-8)
    for m in (model, closed):  # new parameters: a new table, not the kept one
        with torch.no_grad():
            m.stride_coefficients.mul_(-1.0)
        m._keep(None)
    with torch.inference_mode():
        got, want = model(_batch(data)), closed(_batch(data))
    torch.testing.assert_close(got.velocity, want.velocity, rtol=0, atol=1e-8)
    with pytest.raises(Exception, match="table_spacing_A"):
        build_model("symplectic", stats=data.statistics(), table_spacing_A=-0.01)
