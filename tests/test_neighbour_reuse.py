"""The rollout's model step keeps one neighbour list across strides (a Verlet skin list):
the same trajectory as a fresh search every stride, with far fewer searches."""

from __future__ import annotations

import ase.build
import numpy as np
import pytest
import torch

import equignnmd
from equignnmd.config import ConfigError
from equignnmd.rollout import RolloutConfig, run_rollout


@pytest.fixture(scope="module")
def model():
    return equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu")


def crystal_with_atoms_on_the_faces():
    """FCC Al at 450 K's lattice, shifted so that atoms sit on the cell faces: they cross the
    boundary (wrapped positions jump by a cell) within the first strides."""
    atoms = ase.build.bulk("Al", "fcc", a=4.0868, cubic=True).repeat((4, 4, 4))
    atoms.positions -= 1e-3
    atoms.wrap()
    return atoms


def rollout(model, skin_A: float, steps: int, dtype=torch.float64):
    m = model.to(dtype)
    return run_rollout(
        m,
        crystal_with_atoms_on_the_faces(),
        20.0,
        steps,
        temperature_K=450.0,
        seed=3,
        write_every=0,
        progress=False,
        neighbour_skin_A=skin_A,
    )


def test_reused_list_gives_the_fresh_lists_trajectory(model):
    fresh = rollout(model, 0.0, 12).final_state
    reused = rollout(model, 1.0, 12).final_state
    builds = reused.info["model"].neighbours.builds
    assert fresh.info["model"].neighbours is None  # skin 0: the model searched every stride
    assert 1 <= builds < 12, builds  # the initial build plus a few past skin/2
    # float64: the same pairs in another order, so equal to summation rounding over 12 strides
    np.testing.assert_allclose(reused.unwrapped, fresh.unwrapped, rtol=0, atol=1e-9)
    np.testing.assert_allclose(reused.velocities, fresh.velocities, rtol=0, atol=1e-7)
    # some atom crossed a face: the wrapped positions differ from the unwrapped ones
    assert float((reused.unwrapped - reused.positions).abs().max()) > 1.0


def test_negative_skin_is_a_clear_error():
    with pytest.raises(ConfigError, match="neighbour_skin_A.*≥ 0 Å"):
        RolloutConfig.of(dt_fs=20.0, steps=1, neighbour_skin_A=-0.5)
