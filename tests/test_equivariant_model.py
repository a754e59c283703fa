"""The `equivariant` model: exact symmetries of the whole model, conservation, checkpoints,
configs and trainability.

Symmetry checks run the tiny model of ``configs/equivariant-small.yaml`` in float64 on rattled
4×4×4 FCC Al boxes (256 atoms, 16.2 Å) with velocities ~N(0, 5 Å/ps), through the reusable
functions of :mod:`equignnmd.symmetry`.
"""

from __future__ import annotations

import copy
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from ase.build import bulk
from torch_geometric.data import Batch

from equignnmd import symmetry as sym
from equignnmd.ase_md import predict
from equignnmd.graph import add_edges, make_data
from equignnmd.models import TrainingStats, build_model
from equignnmd.units import KB_EV_PER_K, MVV2E, velocity_to_ase

ROOT = Path(__file__).resolve().parents[1]
TOL64 = 1e-10
TOL32 = 1e-4
HAS_CUEQ = importlib.util.find_spec("cuequivariance_torch") is not None
needs_cueq = pytest.mark.skipif(
    not HAS_CUEQ, reason="cuEquivariance is not installed (pip install -e '.[cueq]')"
)

STATS = TrainingStats(
    vel_rms=5.0,
    strides_fs=[5.0, 10.0, 20.0, 50.0],
    disp_rms=[0.03, 0.06, 0.11, 0.25],
    dvel_rms=[0.5, 1.0, 2.0, 3.5],
    dt_range_fs=(5.0, 50.0),
    temperature_range_K=(100.0, 800.0),
)


def read_config(name: str) -> dict:
    return yaml.safe_load((ROOT / "configs" / name).read_text())


def small_model(stats=STATS, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = {**read_config("equivariant-small.yaml")["model"], **overrides}
    return build_model("equivariant", stats, **cfg)


def fcc_atoms(seed: int, rattle: float = 0.1):
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    rng = np.random.default_rng(seed)
    atoms.positions = atoms.positions + rng.normal(0.0, rattle, atoms.positions.shape)
    return atoms, rng


def fcc_data(seed: int, dt_fs: float = 20.0, temperature_K: float = 300.0, drift=(0, 0, 0)):
    atoms, rng = fcc_atoms(seed)
    vel = rng.normal(0.0, 5.0, (len(atoms), 3)) + np.asarray(drift, float)
    return make_data(
        atoms.positions,
        vel,
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=dt_fs,
        temperature_K=temperature_K,
        dtype=torch.float64,
    )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: one thread is as fast, and far more robust on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def model64():
    return small_model().double().eval()


@pytest.fixture(scope="module")
def batch64():
    # two systems with different strides and temperatures: per-graph handling is exercised
    return Batch.from_data_list([fcc_data(0, 20.0, 300.0), fcc_data(1, 5.0, 700.0)])


# ----------------------------------------------------------------------------- symmetries
def test_rotations_and_reflections_float64(model64, batch64):
    err = sym.rotation_error(model64, batch64, trials=4, seed=1)
    assert err < TOL64, f"rotation/reflection error {err:.2e}"


def test_rotations_and_reflections_float32(model64, batch64):
    model32 = copy.deepcopy(model64).float()
    err = sym.rotation_error(model32, batch64, trials=2, seed=2)
    assert err < TOL32, f"float32 rotation/reflection error {err:.2e}"


def test_improper_rotation_changes_output(model64, batch64):
    """Sanity check of the check: a pure reflection really changes the outputs."""
    graphs = sym._graphs(batch64)
    d0, _ = sym.run_model(model64, graphs)
    flipped = []
    for g in graphs:
        g = g.clone()
        for key in ("pos", "vel", "cell"):
            g[key] = g[key] * torch.tensor([-1.0, 1.0, 1.0], dtype=torch.float64)
        flipped.append(g)
    d1, _ = sym.run_model(model64, flipped)
    assert (d1 - d0).abs().max() > 1e-3
    torch.testing.assert_close(d1[:, 0], -d0[:, 0], rtol=0, atol=1e-12)


def test_translation_and_boundary_crossing(model64, batch64):
    assert sym.translation_error(model64, batch64, seed=3) < TOL64
    assert sym.boundary_crossing_error(model64, batch64, fraction=0.3, seed=4) < TOL64


def test_permutation(model64, batch64):
    assert sym.permutation_error(model64, batch64, seed=5) < TOL64


def test_replica_locality(model64):
    err = sym.replica_error(model64, fcc_data(2, 10.0, 400.0), reps=(2, 2, 2))
    assert err < TOL64, f"2×2×2 replica error {err:.2e}"


def test_momentum_and_centre_of_mass(model64, batch64):
    assert sym.momentum_error(model64, batch64) < TOL64
    assert sym.com_error(model64, batch64) < TOL64
    assert sym.com_error(model64, batch64, at_rest=True) < TOL64


@torch.no_grad()
def test_drifting_and_resting_systems(model64):
    """A drifting box: its centre of mass moves by v_drift Δt; at rest it stays put."""
    data = fcc_data(3, 20.0, drift=(3.0, -1.0, 0.5))
    m = data.mass.unsqueeze(-1)
    out = model64(Batch.from_data_list([data]))
    p_in, p_out = (m * data.vel).sum(0), (m * out.velocity).sum(0)
    torch.testing.assert_close(p_out, p_in, rtol=0, atol=1e-10 * float(p_in.norm()))
    com_shift = (m * out.displacement).sum(0) / m.sum()
    v_com = p_in / m.sum()
    torch.testing.assert_close(com_shift, v_com * 0.020, rtol=1e-12, atol=1e-14)

    data.vel = data.vel - (m * data.vel).sum(0) / m.sum()
    out = model64(Batch.from_data_list([data]))
    assert float(((m * out.displacement).sum(0) / m.sum()).abs().max()) < 1e-14  # Å
    assert float((m * out.velocity).sum(0).abs().max()) < 1e-10


def test_symmetry_report_runs_on_float32_model(batch64):
    report = sym.symmetry_report(small_model().float(), batch64)
    assert set(report) >= {"rotation_reflection", "translation", "replica_2x2x2", "momentum"}
    assert all(v < TOL32 for v in report.values()), report


# ----------------------------------------------------------------------------- behaviour
@torch.no_grad()
def test_output_shapes_and_stride_dependence(model64):
    data = fcc_data(4, 10.0)
    out10 = model64(Batch.from_data_list([data]))
    assert out10.displacement.shape == (256, 3) and out10.velocity.shape == (256, 3)
    assert out10.displacement.dtype == torch.float64
    data50 = data.clone()
    data50.dt_fs = torch.tensor([50.0], dtype=torch.float64)
    out50 = model64(Batch.from_data_list([data50]))
    # displacements grow with the stride: ballistic part ×5 from 10 to 50 fs, the learned
    # remainder ½ s_v(Δt) Δt · o_d ×17.5 (for O(1) untrained outputs o_d)
    assert out50.displacement.norm() > 2.0 * out10.displacement.norm()
    # with a zero readout the step is exactly ballistic at every stride
    silent = copy.deepcopy(model64)
    silent.readout.weight.zero_()
    for d, dt_fs in ((data, 10.0), (data50, 50.0)):
        out = silent(Batch.from_data_list([d]))
        torch.testing.assert_close(out.displacement, d.vel * dt_fs / 1000.0, rtol=0, atol=1e-15)
        torch.testing.assert_close(out.velocity, d.vel, rtol=0, atol=1e-15)


@torch.no_grad()
def test_precomputed_edges_and_float32_inputs(model64):
    data = fcc_data(5, 20.0)
    ref = model64(Batch.from_data_list([data]))
    with_edges = add_edges(Batch.from_data_list([data]), model64.cutoff)
    out = model64(with_edges)
    torch.testing.assert_close(out.displacement, ref.displacement, rtol=0, atol=1e-13)
    as32 = data.clone()
    for key in ("pos", "vel", "mass", "cell", "dt_fs", "temperature_K"):
        as32[key] = as32[key].float()
    out32 = model64(Batch.from_data_list([as32]))  # cast to the model's dtype
    assert out32.displacement.dtype == torch.float64
    torch.testing.assert_close(out32.velocity, ref.velocity, rtol=1e-5, atol=1e-5)


def test_dvel_scale_interpolation(model64):
    dt = torch.tensor([2.5, 5.0, 7.5, 20.0, 50.0, 80.0], dtype=torch.float64)
    got = model64.dvel_scale(dt)
    want = torch.tensor([0.25, 0.5, 0.75, 2.0, 3.5, 3.5], dtype=torch.float64)
    torch.testing.assert_close(got, want)


def test_unknown_species_is_refused(model64):
    data = fcc_data(6)
    data.species[0] = 29
    with pytest.raises(ValueError, match="species"):
        model64(Batch.from_data_list([data]))


def test_configs_build():
    for name, channels in (("equivariant.yaml", 64), ("equivariant-small.yaml", 8)):
        cfg = read_config(name)
        assert cfg["arch"] == "equivariant"
        assert cfg["train"]["strides_fs"] == [5, 10, 20, 50]
        assert {"epochs", "batch_size", "lr", "weight_decay", "velocity_weight"} <= set(
            cfg["train"]
        )
        model = build_model(cfg["arch"], STATS, **cfg["model"])
        assert model.config["channels"] == channels
        assert sum(p.numel() for p in model.parameters()) > 0
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        build_model("equivariant", STATS, channel=3)


# ----------------------------------------------------------------------------- persistence
@torch.no_grad()
def test_checkpoint_round_trip_and_predict(tmp_path, model64):
    from equignnmd import load_checkpoint
    from equignnmd.checkpoint import save_checkpoint

    batch = Batch.from_data_list([fcc_data(7, 20.0)])
    ref = model64(batch)
    path = tmp_path / "eq.pt"
    save_checkpoint(path, model64, data_summary={"note": "test"})
    loaded = load_checkpoint(path, device="cpu")
    assert loaded.arch == "equivariant" and loaded.dtype == torch.float64
    out = loaded(batch)
    torch.testing.assert_close(out.displacement, ref.displacement, rtol=0, atol=0)
    torch.testing.assert_close(out.velocity, ref.velocity, rtol=0, atol=0)

    atoms, rng = fcc_atoms(8)
    atoms.set_velocities(velocity_to_ase(rng.normal(0.0, 5.0, (len(atoms), 3))))
    disp, vel = predict(loaded, atoms, dt_fs=20.0)
    assert disp.shape == (256, 3) and vel.shape == (256, 3)
    assert np.isfinite(disp).all() and np.isfinite(vel).all()
    m = atoms.get_masses()[:, None]
    np.testing.assert_allclose((m * vel).sum(0), (m * atoms.get_velocities()).sum(0), atol=1e-10)


# ----------------------------------------------------------------------------- training
def _emt_pair(seed: int, dt_fs: float, temperature_K: float = 300.0):
    """A real MD pair: EMT aluminium, velocity Verlet with 1 fs steps."""
    from ase import units
    from ase.calculators.emt import EMT
    from ase.md.verlet import VelocityVerlet

    from equignnmd.units import velocity_from_ase

    atoms, rng = fcc_atoms(seed, rattle=0.05)
    sigma = math.sqrt(KB_EV_PER_K * temperature_K / (atoms.get_masses()[0] * MVV2E))  # Å/ps
    atoms.set_velocities(velocity_to_ase(rng.normal(0.0, sigma, (len(atoms), 3))))
    atoms.calc = EMT()
    pos0, vel0 = atoms.positions.copy(), velocity_from_ase(atoms.get_velocities())
    VelocityVerlet(atoms, timestep=1.0 * units.fs).run(int(dt_fs))
    return make_data(
        pos0,
        vel0,
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=dt_fs,
        temperature_K=temperature_K,
        disp=atoms.positions - pos0,
        vel_next=velocity_from_ase(atoms.get_velocities()),
    )


@pytest.mark.slow
def test_tiny_model_overfits_md_pairs_and_gradients_reach_all_layers():
    data = [_emt_pair(0, 10.0), _emt_pair(1, 20.0)]
    vel_rms = float(torch.cat([d.vel for d in data]).pow(2).mean().sqrt())
    dvel = [float((d.vel_next - d.vel).pow(2).mean().sqrt()) for d in data]
    stats = TrainingStats(
        vel_rms=vel_rms,
        strides_fs=[10.0, 20.0],
        disp_rms=[float(d.disp.pow(2).mean().sqrt()) for d in data],
        dvel_rms=dvel,
        dt_range_fs=(10.0, 20.0),
        temperature_range_K=(300.0, 300.0),
    )
    model = small_model(stats, seed=0)
    batch = add_edges(Batch.from_data_list(data), model.cutoff)
    s_v = model.dvel_scale(batch.dt_fs)[batch.batch].unsqueeze(-1)
    s_d = 0.5 * s_v * (batch.dt_fs[batch.batch] * 1e-3).unsqueeze(-1)

    def loss_fn():
        out = model(batch)
        return (((out.displacement - batch.disp) / s_d) ** 2).mean() + (
            ((out.velocity - batch.vel_next) / s_v) ** 2
        ).mean()

    loss0 = loss_fn()
    loss0.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"no gradient reaches {name}"
        assert torch.isfinite(p.grad).all(), name
        assert float(p.grad.abs().sum()) > 0.0, f"zero gradient for {name}"

    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first, best = float(loss0), float(loss0)
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        best = min(best, float(loss))
        if first / best >= 10.0:
            break
    assert first / best >= 10.0, f"loss fell only {first / best:.1f}× ({first:.3g} → {best:.3g})"


# ----------------------------------------------------------------------------- backends
@pytest.mark.parametrize("odd_parity", [False, True])
def test_channelwise_tp_equals_e3nn_with_exact_wigner_3j(odd_parity):
    """The velocity product's own forward (exact float64 3j blocks cast at use) against e3nn's
    forward of the same ``o3.TensorProduct`` once its ``_w3j_*`` buffers hold exact values."""
    from e3nn import o3

    from equignnmd.models._tp_base import channelwise_tp
    from equignnmd.models.irreps import hidden_irreps

    hidden = hidden_irreps(4, 2, odd_parity)
    sh = o3.Irreps.spherical_harmonics(2)
    tp = channelwise_tp(hidden, sh, hidden).double()
    buffers = dict(tp.named_buffers())
    w3j = [name for name in buffers if "_w3j_" in name]
    assert w3j  # e3nn's own copies: in the state_dict, not read by the forward
    for name in w3j:
        ls = [int(c) for c in name.rsplit("_w3j_", 1)[1].split("_")]
        buffers[name].copy_(o3.wigner_3j(*ls, dtype=torch.float64))
    gen = torch.Generator().manual_seed(0)
    x1 = torch.randn(9, hidden.dim, generator=gen, dtype=torch.float64)
    x2 = torch.randn(9, sh.dim, generator=gen, dtype=torch.float64)
    w = torch.randn(9, tp.weight_numel, generator=gen, dtype=torch.float64)
    want = o3.TensorProduct.forward(tp, x1, x2, w)
    torch.testing.assert_close(tp(x1, x2, w), want, rtol=0, atol=1e-13)


def vacancy_data(seed: int, a: float = 4.05):
    """A rattled 4×4×4 FCC box of lattice constant ``a`` (Å) less two atoms, float32."""
    atoms, rng = fcc_atoms(seed)
    atoms.set_cell(atoms.cell.array * a / 4.05, scale_atoms=True)
    del atoms[[0, 50]]
    data = make_data(
        atoms.positions,
        rng.normal(0.0, 5.0, (len(atoms), 3)),
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=20.0,
        temperature_K=300.0,
    )
    for key in ("pos", "vel", "mass", "cell"):
        data[key] = data[key].float()
    return data


def padding(model, batch) -> float:
    """Slots of the compiled forward's node-major table per edge of ``batch``."""
    from equignnmd.graph import neighbour_list, node_major_edges

    edge_index, shifts = neighbour_list(batch.pos, batch.cell.reshape(-1, 3, 3), model.cutoff,
                                        batch.batch)  # fmt: skip
    return node_major_edges(edge_index, shifts, batch.num_nodes)[2].numel() / shifts.shape[0]


@pytest.mark.parametrize("odd_parity", [False, True])
def test_channelwise_tp_pointwise_form_equals_its_forward(odd_parity):
    """The compiled forward's form of the velocity product (sums over the 3j nonzeros) is the
    eager product, in float64."""
    from e3nn import o3

    from equignnmd.models._tp_base import channelwise_tp
    from equignnmd.models.irreps import hidden_irreps

    hidden = hidden_irreps(4, 2, odd_parity)
    sh = o3.Irreps.spherical_harmonics(2)
    tp = channelwise_tp(hidden, sh, hidden).double()
    gen = torch.Generator().manual_seed(1)
    x1 = torch.randn(9, hidden.dim, generator=gen, dtype=torch.float64)
    x2 = torch.randn(9, sh.dim, generator=gen, dtype=torch.float64)
    w = torch.randn(9, tp.weight_numel, generator=gen, dtype=torch.float64)
    got = tp._pointwise(x1, x2, w.split(tp.weight_sizes, dim=-1))
    torch.testing.assert_close(got, tp(x1, x2, w), rtol=0, atol=1e-13)


@pytest.mark.slow
def test_compiled_forward_matches_eager():
    """The compiled forward (neighbours summed over the node-major table, or over the flat list
    where the table would be mostly padding) gives the eager forward's outputs: one FCC box;
    two boxes with vacancies (unequal neighbour counts: padding slots); a dense and a dilated
    box together (the flat list)."""
    from equignnmd.models.equivariant import MAX_PADDING

    model = small_model().eval()
    one = Batch.from_data_list([fcc_data(9, 20.0)])
    for key in ("pos", "vel", "mass", "cell", "dt_fs", "temperature_K"):
        one[key] = one[key].float()
    vacancies = Batch.from_data_list([vacancy_data(1), vacancy_data(2)])
    mixed = Batch.from_data_list([vacancy_data(3), vacancy_data(4, a=4.6)])
    assert 1.0 < padding(model, vacancies) <= MAX_PADDING < padding(model, mixed)
    compiled = copy.deepcopy(model).compiled()
    for batch in (one, vacancies, mixed):
        with torch.inference_mode():  # ~30-90 s of compilation on a 2-core CPU, per layout
            ref, out = model(batch), compiled(batch)
        torch.testing.assert_close(out.displacement, ref.displacement, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(out.velocity, ref.velocity, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_compiled_training_gradients_match_eager():
    """Training with ``compile: true`` (the trainer's 3-5× faster path on the CPU) computes
    the same loss gradients as eager: the broadcast contraction's backward included, and for
    a two-stride unrolled loss."""
    model = small_model().train()
    batch = Batch.from_data_list([fcc_data(14, 20.0), fcc_data(15, 50.0)])
    for key in ("pos", "vel", "mass", "cell", "dt_fs", "temperature_K"):
        batch[key] = batch[key].float()

    def grads(m, unroll):
        out = m(batch)
        loss = out.displacement.pow(2).sum() + 1e-3 * out.velocity.pow(2).sum()
        if unroll:
            # a second stride from the first one's outputs (an unrolled loss): inputs that
            # carry gradients make the compiled model recompile, which once failed to lower
            nxt = batch.clone()
            nxt.pos, nxt.vel = batch.pos + out.displacement, out.velocity
            loss = loss + m(nxt).displacement.pow(2).sum()
        return dict(
            zip(
                [n for n, _ in m.named_parameters()],
                torch.autograd.grad(loss, list(m.parameters()), allow_unused=True),
            )
        )

    compiled = copy.deepcopy(model).compiled()
    for unroll in (False, True):
        ref = grads(model, unroll)
        got = grads(compiled, unroll)  # ~30-90 s of compilation (forward and backward), 2 cores
        assert ref.keys() == got.keys()
        for name, g in ref.items():
            if g is None:
                assert got[name] is None, name
                continue
            torch.testing.assert_close(got[name], g, rtol=1e-3, atol=1e-6, msg=f"{name} {unroll}")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_matches_cpu():
    model = small_model().double().eval()
    batch = Batch.from_data_list([fcc_data(10, 20.0), fcc_data(11, 50.0)])
    ref = model(batch)
    out = copy.deepcopy(model).cuda()(batch.cuda())
    torch.testing.assert_close(out.displacement.cpu(), ref.displacement, rtol=0, atol=1e-10)
    torch.testing.assert_close(out.velocity.cpu(), ref.velocity, rtol=0, atol=1e-9)
    assert sym.rotation_error(copy.deepcopy(model).cuda(), batch) < TOL64


# ----------------------------------------------------------------------------- cuEquivariance
def cueq_pair(dtype=torch.float64, **overrides):
    """The small model with e3nn kernels and the same weights with ``use_cueq: true``."""
    ref = small_model(**overrides).to(dtype).eval()
    cueq = small_model(seed=1, use_cueq=True, **overrides).to(dtype).eval()
    cueq.load_state_dict(ref.state_dict())
    return ref, cueq


def cueq_batch():
    return Batch.from_data_list([fcc_data(12, 20.0, 300.0), fcc_data(13, 5.0, 700.0)])


def assert_outputs_close(out, ref, rtol: float, atol: float):
    for name in ("displacement", "velocity"):
        got, want = getattr(out, name).detach().cpu(), getattr(ref, name).detach().cpu()
        scale = float(want.abs().max())
        torch.testing.assert_close(got, want, rtol=rtol, atol=atol * scale, msg=name)


def test_use_cueq_without_the_package_raises_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuequivariance_torch", None)
    with pytest.raises(ImportError, match="pip install cuequivariance-torch"):
        build_model("equivariant", STATS, channels=4, layers=1, use_cueq=True)


@needs_cueq
@pytest.mark.parametrize("odd_parity", [False, True])
def test_cueq_matches_e3nn_float64_cpu(odd_parity):
    """Same checkpoint, both backends: outputs and every parameter gradient agree to 1e-10."""
    ref, cueq = cueq_pair(odd_parity=odd_parity)
    assert {k: v.shape for k, v in cueq.state_dict().items()} == {
        k: v.shape for k, v in ref.state_dict().items()
    }
    assert cueq.layers[0].conv.cueq.method("cpu") == "naive"
    batch = cueq_batch()
    outs = []
    for model in (ref, cueq):
        model.zero_grad()
        out = model(batch)
        (out.displacement.pow(2).sum() + out.velocity.pow(2).sum()).backward()
        outs.append(out)
    assert_outputs_close(outs[1], outs[0], rtol=0, atol=TOL64)
    grads = dict(cueq.named_parameters())
    for name, p in ref.named_parameters():
        scale = float(p.grad.abs().max())
        torch.testing.assert_close(grads[name].grad, p.grad, rtol=0, atol=TOL64 * scale)


@needs_cueq
@torch.no_grad()
def test_cueq_matches_e3nn_float32_cpu():
    ref, cueq = cueq_pair(torch.float32)
    batch = cueq_batch()
    assert_outputs_close(cueq(batch), ref(batch), rtol=1e-5, atol=1e-5)


@pytest.mark.slow
@needs_cueq
def test_cueq_rotations_and_dtype_round_trip():
    """Rotated / reflected inputs give rotated outputs with cueq on; float32 → float64 keeps the
    exact Clebsch-Gordan values, and copies of the model keep the state_dict layout."""
    ref, cueq = cueq_pair()
    batch = cueq_batch()
    assert sym.rotation_error(cueq, batch, trials=4, seed=6) < TOL64
    back = copy.deepcopy(cueq).float().double()
    assert list(back.state_dict()) == list(ref.state_dict())
    with torch.no_grad():
        assert_outputs_close(back(batch), ref(batch), rtol=0, atol=TOL64)
    assert sym.rotation_error(copy.deepcopy(cueq).float(), batch, trials=2, seed=7) < TOL32


@needs_cueq
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_cueq_matches_e3nn_on_cuda(dtype):
    """On a GPU: cuEquivariance's CUDA kernels (``uniform_1d``, with cuequivariance-ops-torch-cu12
    installed; its torch fallback otherwise) against the e3nn path on the same GPU."""
    ref, cueq = cueq_pair(dtype)
    ref, cueq = ref.cuda(), cueq.cuda()
    batch = cueq_batch().cuda()
    with torch.no_grad():
        out, want = cueq(batch), ref(batch)
    tol = (0, TOL64) if dtype == torch.float64 else (1e-5, 1e-5)
    assert_outputs_close(out, want, *tol)
    if dtype == torch.float64:
        assert sym.rotation_error(cueq, batch, trials=2, seed=8) < TOL64
