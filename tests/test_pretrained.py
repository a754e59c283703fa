"""Shipped weights load by name, run, and beat the baselines on fresh LAMMPS data."""

import ase.build
import ase.data
import numpy as np
import pytest
import torch
from torch_geometric.loader import DataLoader

import equignnmd
from equignnmd.ase_md import predict
from equignnmd.checkpoint import resolve_path
from equignnmd.data.dataset import PairDataset
from equignnmd.onestep import stride_errors

SHIPPED = (
    "equivariant-al",
    "equivariant-al-v1",
    "paper-al",
    "symplectic-al",
    "equivariant-cu-snap",
    "equivariant-alcu",
    "equivariant-al-sevennet",
    "symplectic-al-sevennet",
)


@pytest.mark.parametrize("name", SHIPPED)
def test_pretrained_loads_and_predicts(name):
    model = equignnmd.load_checkpoint(f"pretrained:{name}", device="cpu")
    assert model.arch == name.split("-")[0]
    # the model's own element, at ASE's tabulated lattice constant (4×4×4 fcc cells ≥ 2 cutoffs)
    symbol = ase.data.chemical_symbols[model.stats.species[0]]
    atoms = ase.build.bulk(symbol, "fcc", cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.02, seed=1)
    rng = np.random.default_rng(0)
    atoms.set_velocities(rng.normal(scale=0.05, size=(len(atoms), 3)))  # ASE units
    disp, vel = predict(model, atoms, dt_fs=10.0, temperature_K=300.0)
    assert disp.shape == vel.shape == (256, 3)
    assert np.all(np.isfinite(disp)) and np.abs(disp).max() < 0.5
    if model.arch in ("equivariant", "symplectic"):  # momentum conserved by construction
        m = atoms.get_masses()[:, None]
        assert np.allclose((m * vel).sum(0), (m * atoms.get_velocities()).sum(0), atol=1e-5)
    card = resolve_path(f"pretrained:{name}").with_suffix(".md")
    assert card.exists() and "Metrics" in card.read_text()


def _errors(name, data, strides):
    """One-shot errors on a small LAMMPS set's held-out temperature (256 atoms: not the
    500-atom boxes the shipped models were trained on, and a seed they never saw)."""
    model = equignnmd.load_checkpoint(f"pretrained:{name}", device="cpu")
    ds = PairDataset(data, strides, "test", max_samples=8 * len(strides), dtype=model.dtype)
    return stride_errors(model, DataLoader(ds, batch_size=4))


def _ahead_of_taylor_past_verlet(errs) -> None:
    """Model < Taylor < r + vΔt at 20 and 50 fs, model < r + vΔt at 10 fs (one-shot errors
    of :func:`_errors` at 10, 20, 50 fs)."""
    for s in (20.0, 50.0):
        row = {k: v["pos_mean_A"] for k, v in errs[s].items()}
        assert row["model"] < row["taylor"] < row["ballistic"], (s, row)
    row = {k: v["pos_mean_A"] for k, v in errs[10.0].items()}
    assert row["model"] < row["ballistic"], row


def test_pretrained_equivariant_beats_taylor_past_verlet(tiny_dataset):
    _ahead_of_taylor_past_verlet(_errors("equivariant-al", tiny_dataset, [10.0, 20.0, 50.0]))


def test_pretrained_symplectic_beats_taylor_from_20_fs(tiny_dataset):
    errs = _errors("symplectic-al", tiny_dataset, [20.0, 50.0])
    for s in (20.0, 50.0):
        row = {k: v["pos_mean_A"] for k, v in errs[s].items()}
        assert row["model"] < 0.7 * row["taylor"] < row["ballistic"], (s, row)


def _fresh_data(tmp_path_factory, name: str, *options: str, cells: int = 4, ps: float = 0.3):
    """A 256-atom box (``cells``³ fcc cells) under a shipped model's own reference at 450 K
    (held out in every model's data that this file tests), ``ps`` of NPT then ``ps`` recorded
    every 5 fs, seed 31 (not the models' data seed); ``options`` name the elements and the
    reference."""
    from equignnmd.cli import main

    out = tmp_path_factory.mktemp(name) / name
    argv = [
        "generate", "-o", str(out), *options, "--cells", str(cells), "--temperatures", "450",
        "--test-temperatures", "450", "--equilibration-ps", str(ps), "--production-ps", str(ps),
        "--record-every-fs", "5", "--seed", "31", "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    return out


@pytest.fixture(scope="module")
def copper_snap(tmp_path_factory):
    """fcc Cu under the Zuo 2020 quadratic SNAP (the shipped Cu model's reference) at its own
    lattice constant (~25 s: SNAP costs ~90 µs per atom-step)."""
    return _fresh_data(
        tmp_path_factory, "cu", "--elements", "Cu", "--potential", "Cu_Zuo_JPCA2020.quadratic.snap"
    )


@pytest.fixture(scope="module")
def aluminium_copper_eam(tmp_path_factory):
    """Random fcc Al0.9Cu0.1 under Cai & Ye's AlCu.eam.alloy (the shipped alloy model's
    reference), sites drawn with another seed than the model's data (~3 s)."""
    return _fresh_data(
        tmp_path_factory, "alcu", "--elements", "Al,Cu", "--composition", "Al:0.9,Cu:0.1",
        "--potential", "AlCu.eam.alloy",
    )  # fmt: skip


@pytest.fixture(scope="module")
def aluminium_sevennet(tmp_path_factory):
    """fcc Al under SevenNet-0 (the SevenNet models' reference) at its 5-fs data step: 108
    atoms (3³ cells, the models' own box), 0.1 ps NPT then 0.1 ps recorded (~1 min on one
    thread: SevenNet-0 costs ~10 ms per atom-step); skipped where the mlip extra is not."""
    pytest.importorskip("sevenn", reason="SevenNet-0 needs the optional extra mlip")
    return _fresh_data(
        tmp_path_factory, "sevennet", "--calculator", "sevennet-0", "--elements", "Al",
        "--set", "timestep_fs=5", cells=3, ps=0.1,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread_module")
def test_pretrained_sevennet_models_beat_taylor_on_fresh_sevennet_data(aluminium_sevennet):
    """``equivariant-al-sevennet`` and the distilled ``symplectic-al-sevennet`` on SevenNet-0
    MD they never saw (another seed, the held-out 450 K): ahead of SevenNet-0's own Taylor
    step at 20 and 50 fs, ahead of r + vΔt at 10 fs."""
    for name in ("equivariant-al-sevennet", "symplectic-al-sevennet"):
        _ahead_of_taylor_past_verlet(_errors(name, aluminium_sevennet, [10.0, 20.0, 50.0]))


@pytest.mark.slow
def test_pretrained_copper_beats_taylor_on_fresh_snap_data(copper_snap):
    """``equivariant-cu-snap`` on SNAP Cu it never saw (a 256-atom box, another seed, its
    held-out 450 K): ahead of the one-force-call Taylor step at 20 and 50 fs, ahead of r + vΔt
    at 10 fs (measured at shipping: 0.0046 / 0.0073 Å at 20 fs on its own held-out data)."""
    _ahead_of_taylor_past_verlet(_errors("equivariant-cu-snap", copper_snap, [10.0, 20.0, 50.0]))


def test_pretrained_alloy_beats_taylor_on_fresh_eam_data(aluminium_copper_eam):
    """``equivariant-alcu`` on an Al0.9Cu0.1 box it never saw (256 atoms, other sites, another
    seed, its held-out 450 K): ahead of the Taylor step at 20 and 50 fs, ahead of r + vΔt at
    10 fs (measured at shipping: 0.0053 / 0.0127 Å at 20 fs on its own held-out data)."""
    errs = _errors("equivariant-alcu", aluminium_copper_eam, [10.0, 20.0, 50.0])
    _ahead_of_taylor_past_verlet(errs)


@pytest.mark.slow
def test_pretrained_paper_beats_ballistic_within_its_training_strides(tiny_dataset):
    """``paper-al`` (issue 15: 2 blocks with the ballistic skip, trained 1–10 fs) beats
    r + vΔt at every trained stride and stays within 1.5× the true-force Taylor step at 10 fs.
    Below that the Taylor step wins by 3–17×: with the barostat's box motion out of the
    targets its 1–5-fs error is 1e-6–2e-4 Å (seen: model 1.9e-5 / 8.7e-5 / 5.1e-4 Å, Taylor
    1.1e-6 / 1.3e-5 / 1.9e-4 Å at 1 / 2 / 5 fs), a precision the model, trained on pairs that
    still carried the 4e-4-Å box motion, never learned."""
    errs = _errors("paper-al", tiny_dataset, [1.0, 2.0, 5.0, 10.0])
    for s in (1.0, 2.0, 5.0, 10.0):
        row = {k: v["pos_mean_A"] for k, v in errs[s].items()}
        assert row["model"] < 0.5 * row["ballistic"], (s, row)
    row = {k: v["pos_mean_A"] for k, v in errs[10.0].items()}
    assert row["model"] < 1.5 * row["taylor"], row


def test_unknown_pretrained_name_lists_available():
    with pytest.raises(FileNotFoundError, match="equivariant-al"):
        equignnmd.load_checkpoint("pretrained:nope")


def test_kernel_overrides_on_load():
    eager = equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu")
    assert eager.config["use_cueq"] is False
    with pytest.raises(ValueError, match="cannot override"):
        equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu", nonsense=3)
    pytest.importorskip("cuequivariance_torch")
    cueq = equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu", use_cueq=True)
    assert cueq.config["use_cueq"] is True
    atoms = ase.build.bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=2)
    atoms.set_velocities(np.random.default_rng(1).normal(scale=0.05, size=(len(atoms), 3)))
    with torch.no_grad():
        a = predict(eager, atoms, dt_fs=20.0, temperature_K=300.0)
        b = predict(cueq, atoms, dt_fs=20.0, temperature_K=300.0)
    for x, y in zip(a, b):
        assert np.allclose(x, y, rtol=1e-4, atol=1e-6)
