"""The learned energy head (potential/eam.py, potential/fit.py, `equignnmd energy-head`,
``--energy model``): fitted on the tiny real LAMMPS dataset, checked against LAMMPS itself,
stored in checkpoints outside the model's state dict, and conserved by a rollout."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from equignnmd import physics
from equignnmd.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
from equignnmd.cli import main
from equignnmd.data.format import open_trajectories
from equignnmd.potential import (
    EnergyHead,
    LammpsEnergy,
    ModelEnergy,
    fit_energy_head,
    load_energy_frames,
    make_energy_source,
)
from equignnmd.rollout import RolloutState, run_rollout

pytestmark = pytest.mark.usefixtures("one_thread_module")


@pytest.fixture(scope="module")
def model():
    return load_checkpoint("pretrained:equivariant-al")


@pytest.fixture(scope="module")
def fitted(model, tiny_dataset):
    head, report = fit_energy_head(model, tiny_dataset, {"frames_per_temperature": 8}, log=None)
    return head, report


def test_fit_reproduces_held_out_energies_and_forces(fitted):
    head, report = fitted
    assert report["fit_temperatures_K"] == [300.0]
    assert report["held_out_temperatures_K"] == [350.0]
    for name in ("val 300 K", "test 350 K"):
        s = report["scores"][name]
        # the reference forces are ~0.35 eV/Å; a head that learned nothing scores ~1× that
        assert s["force_eV_per_A"] < 0.15 * s["force_rms_eV_per_A"], (name, s)
        # energy fluctuations along the trajectory (~1.5 meV/atom) to a fraction of that
        assert s["energy_fluct_meV_per_atom"] < 0.5, (name, s)
    assert head.coefficients.dtype == torch.float64 and torch.isfinite(head.coefficients).all()


def test_head_tracks_lammps_energy_differences_off_the_data(fitted, tiny_dataset):
    """Rattle a held-out frame well beyond thermal noise: the head's energy change follows
    LAMMPS's own (what energy rescaling needs of a surrogate's slightly-off states)."""
    head, _ = fitted
    (frame,) = load_energy_frames(tiny_dataset, [350.0], 1, (0.5, 0.5))
    gen = torch.Generator().manual_seed(3)
    n = len(frame["pos"])
    cell, species, batch = frame["cell"][None], frame["species"], torch.zeros(n, dtype=torch.long)
    pos = [
        frame["pos"] + 0.04 * k * torch.randn(n, 3, generator=gen, dtype=torch.float64)
        for k in range(3)
    ]
    ref = LammpsEnergy("reference")
    u_ref = np.array([float(ref(p, cell, species, batch)[0]) for p in pos])
    ref.close()
    u_head = np.array([float(head(p, cell, species, batch)[0]) for p in pos])
    d_ref, d_head = np.diff(u_ref), np.diff(u_head)
    assert np.all(d_ref > 0)
    np.testing.assert_allclose(d_head, d_ref, rtol=0.1)


def test_head_forces_are_its_energy_gradient(fitted, tiny_dataset):
    head, _ = fitted
    (frame,) = load_energy_frames(tiny_dataset, [350.0], 1, (0.0, 0.0))
    n = len(frame["pos"])
    args = (frame["cell"][None], frame["species"], torch.zeros(n, dtype=torch.long))
    pos = frame["pos"].clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(head(pos, *args).sum(), pos)
    h = 1e-5
    for atom, axis in ((0, 0), (17, 2)):
        plus, minus = frame["pos"].clone(), frame["pos"].clone()
        plus[atom, axis] += h
        minus[atom, axis] -= h
        fd = (float(head(plus, *args)[0]) - float(head(minus, *args)[0])) / (2 * h)
        assert fd == pytest.approx(float(grad[atom, axis]), rel=1e-5, abs=1e-7)


def _two_species_replicas(tiny_dataset, seed: int):
    """A two-species head with a core (5-Å cutoff, 6 pair functions) and two held-out frames
    as two replicas with atoms relabelled Al / Cu at random (every species-pair block and
    both embedding blocks filled): (head, pos, cell, species, batch)."""
    frames = load_energy_frames(tiny_dataset, [350.0], 2, (0.0, 1.0))
    head = EnergyHead(
        {
            "cutoff": 5.0,
            "species": [13, 29],
            "num_radial": 6,
            "core_radius": 2.4,
            "core_strength": 50.0,
        }
    )
    head.density_scale.fill_(7.0)
    pos = torch.cat([f["pos"] for f in frames])
    cell = torch.stack([f["cell"] for f in frames])
    batch = torch.arange(2).repeat_interleave(len(frames[0]["pos"]))
    gen = torch.Generator().manual_seed(seed)
    species = torch.where(torch.rand(len(pos), generator=gen) < 0.5, 13, 29)
    return head, pos, cell, species, batch


def test_closed_form_force_design_is_the_autograd_one(tiny_dataset):
    """The fit's force design (``force_features``, one pass) equals −∂features/∂positions by
    autograd (one backward per coefficient), column by column, for a two-species head with a
    core (atoms relabelled at random, so every species-pair block and both embedding blocks
    are filled) and a frame of two replicas."""
    head, pos, cell, species, batch = _two_species_replicas(tiny_dataset, seed=0)
    n = len(pos) // 2
    design = head.force_features(pos, cell, species, batch)
    p = pos.clone().requires_grad_(True)
    feats = head.features(p, cell, species, batch, 2)
    assert design.shape == (2 * n, 3, feats.shape[1])
    for c in range(feats.shape[1]):
        (g,) = torch.autograd.grad(feats[:, c].sum(), p, retain_graph=True, allow_unused=True)
        want = torch.zeros_like(pos) if g is None else -g
        torch.testing.assert_close(design[..., c], want, rtol=1e-9, atol=1e-10)
    assert design[..., :-2].abs().amax(dim=(0, 1)).min() > 0  # every non-constant column acts


def test_virial_design_is_the_strain_derivative_of_the_features(tiny_dataset):
    """``virial_features`` (one pass) equals ∂features/∂ε by autograd through a strained
    copy of each system (positions and cell × (1 + ε)), column by column, for the
    two-species head with a core of the force-design test and two replicas."""
    from equignnmd.potential import VOIGT

    head, pos, cell, species, batch = _two_species_replicas(tiny_dataset, seed=1)
    design = head.virial_features(pos, cell, species, batch, 2)
    eps = torch.zeros(2, 3, 3, dtype=torch.float64, requires_grad=True)
    strain = torch.eye(3, dtype=torch.float64) + eps
    feats = head.features(
        torch.einsum("ni,nij->nj", pos, strain[batch]), cell @ strain, species, batch, 2
    )
    a, b = VOIGT
    assert design.shape == (2, 6, feats.shape[1])
    for c in range(feats.shape[1]):
        (g,) = torch.autograd.grad(feats[:, c].sum(), eps, retain_graph=True, allow_unused=True)
        want = torch.zeros(2, 6, dtype=torch.float64) if g is None else g[:, a, b]
        torch.testing.assert_close(design[..., c], want, rtol=1e-9, atol=1e-9)
    assert design[:, :3, :-2].abs().amax(dim=(0, 1)).min() > 0  # every column strains


def test_stress_rows_fit_the_reference_stresses(model, fitted, tiny_dataset):
    """LAMMPS's virials are its energy's strain derivative (a central difference of
    single points), and a fit with stress rows matches the held-out stresses better than
    one without them, at a force error within a few per cent of it."""
    (frame,) = load_energy_frames(tiny_dataset, [350.0], 1, (0.5, 0.5))
    n = len(frame["pos"])
    args = (frame["species"], torch.zeros(n, dtype=torch.long))
    ref = LammpsEnergy("reference")
    virial = ref.virials(frame["pos"], frame["cell"][None], *args)[0]
    h = 1e-5
    for k, (a, b) in enumerate(((0, 0), (2, 2), (1, 0))):  # xx, zz and a simple shear xy
        strain = torch.eye(3, dtype=torch.float64)
        strain[a, b] += h  # rows are vectors: x_b += h x_a (lower-triangular cells stay so)
        u = [
            float(ref(frame["pos"] @ m, (frame["cell"] @ m)[None], *args)[0])
            for m in (strain, 2 * torch.eye(3, dtype=torch.float64) - strain)
        ]
        voigt = (0, 2, 5)[k]
        assert (u[0] - u[1]) / (2 * h) == pytest.approx(float(virial[voigt]), rel=1e-4, abs=1e-4)
    ref.close()
    _, plain = fitted
    _, stressed = fit_energy_head(
        model, tiny_dataset, {"frames_per_temperature": 8, "stress_weight": 1.0}, log=None
    )
    with_rows, without = stressed["scores"]["test 350 K"], plain["scores"]["test 350 K"]
    assert "stress_GPa" not in without and with_rows["stress_rms_GPa"] > 0
    head = EnergyHead(fitted[0].config)
    head.load_state_dict(fitted[0].state_dict())
    from equignnmd.potential import reference_virials, score_energy_head

    frames = load_energy_frames(tiny_dataset, [350.0], 8, (0.0, 1.0))
    reference_virials(tiny_dataset, frames)
    before = score_energy_head(head, frames)
    assert with_rows["stress_GPa"] < 0.8 * before["stress_GPa"], (with_rows, before)
    assert with_rows["force_eV_per_A"] < 1.05 * without["force_eV_per_A"]


def test_checkpoint_keeps_the_head_outside_the_model_state(model, fitted, tmp_path):
    head, report = fitted
    path = tmp_path / "with_head.pt"
    fresh = load_checkpoint("pretrained:equivariant-al")
    keys = set(fresh.state_dict())
    fresh.attach_energy_head(head, report)
    assert set(fresh.state_dict()) == keys  # the surrogate's weights are all a state dict has
    save_checkpoint(path, fresh, fresh.data_summary)
    back = load_checkpoint(path)
    assert back.energy_head is not None and back.energy_head_fit["fit_frames"] == 8
    for k, v in model.state_dict().items():
        assert torch.equal(back.state_dict()[k], v), k
    # a float32 (or GPU) model keeps its head on the CPU in float64
    back.float()
    assert back.energy_head.coefficients.dtype == torch.float64
    torch.testing.assert_close(back.energy_head.coefficients, head.coefficients, rtol=0, atol=0)
    # saving again keeps it
    save_checkpoint(tmp_path / "again.pt", back)
    assert "energy_head" in read_checkpoint(tmp_path / "again.pt")


def test_energy_model_needs_a_head():
    bare = load_checkpoint("pretrained:equivariant-al")
    assert bare.energy_head is not None  # the shipped model carries one
    bare.attach_energy_head(None)
    with pytest.raises(ValueError, match="no energy head.*equignnmd energy-head"):
        make_energy_source("model", model=bare)


def test_head_refuses_species_it_was_not_fitted_on(fitted):
    head, _ = fitted
    with pytest.raises(ValueError, match=r"atomic numbers \[29\].*expected only \[13\]"):
        head(
            torch.zeros(2, 3),
            torch.eye(3)[None] * 12.0,
            torch.tensor([13, 29]),
            torch.zeros(2, dtype=torch.long),
        )
    with pytest.raises(ValueError, match="species"):
        EnergyHead({"species": []})


def test_nve_rollout_conserves_the_heads_energy(fitted, tiny_dataset, tmp_path):
    head, report = fitted
    m = load_checkpoint("pretrained:equivariant-al")
    m.attach_energy_head(head, report)
    tr = next(t for t in open_trajectories(tiny_dataset) if t.temperature_K == 350.0)
    frame = tr.frame(100, fields=("positions", "velocities"))
    state = RolloutState.from_arrays(
        [frame["positions"]], [frame["velocities"]], [frame["cell"]], [tr.species], [tr.masses]
    )
    source = ModelEnergy(m)
    u0 = float(source(state.positions, state.cell, state.species, state.batch)[0])
    k0 = float(physics.internal_kinetic_energy(state.velocities, state.masses, state.batch)[0])
    out = tmp_path / "ro"
    result = run_rollout(
        m, state, 20.0, steps=4, energy="model", progress=False, out_dir=out, write_every=1
    )
    assert result.completed
    rows = list(csv.DictReader(open(out / "thermo.csv")))
    total = np.array([float(r["total_energy_eV"]) for r in rows])
    assert len(total) == 5
    np.testing.assert_allclose(total, u0 + k0, rtol=0, atol=1e-6)  # thermo.csv's 10 digits
    # ... while the model moves energy between K and U (the rescale is not a no-op)
    u = np.array([float(r["potential_energy_eV"]) for r in rows])
    assert np.ptp(u) > 1e-3
    assert "energy head" in json.loads((out / "rollout.json").read_text())["energy"]


def test_cli_writes_a_checkpoint_with_a_head(tiny_dataset, tmp_path, capsys):
    def energy_head(out, *extra):
        args = ["--checkpoint", "pretrained:equivariant-al", "--data", str(tiny_dataset)]
        return main(["energy-head", *args, "--out", str(out), *extra])

    out = tmp_path / "ck" / "eq_E.pt"
    assert energy_head(out, "--frames", "4") == 0, capsys.readouterr().err
    assert load_checkpoint(out).energy_head is not None
    assert "force RMSE" in out.with_suffix(".energy-fit.md").read_text()
    bad = tmp_path / "bad" / "x.txt"
    assert energy_head(bad) == 2
    assert "not a .pt file" in capsys.readouterr().err
    assert not bad.parent.exists()
