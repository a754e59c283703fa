"""Shipped weights load by name and run."""

import ase.build
import numpy as np
import pytest

import equignnmd


def test_pretrained_equivariant_loads_and_predicts():
    model = equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu")
    assert model.arch == "equivariant"
    atoms = ase.build.bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.02, seed=1)
    rng = np.random.default_rng(0)
    atoms.set_velocities(rng.normal(scale=0.05, size=(len(atoms), 3)))  # ASE units
    disp, vel = model.predict(atoms, dt_fs=10.0, temperature_K=300.0)
    assert disp.shape == vel.shape == (256, 3)
    assert np.all(np.isfinite(disp)) and np.abs(disp).max() < 0.5
    # momentum conserved by construction
    m = atoms.get_masses()[:, None]
    assert np.allclose((m * vel).sum(0), (m * atoms.get_velocities()).sum(0), atol=1e-5)


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
    a = eager.predict(atoms, dt_fs=20.0, temperature_K=300.0)
    b = cueq.predict(atoms, dt_fs=20.0, temperature_K=300.0)
    for x, y in zip(a, b):
        assert np.allclose(x, y, rtol=1e-4, atol=1e-6)
