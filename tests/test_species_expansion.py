"""Species expansion of the equivariant model (a fine-tune on an alloy from a one-element
checkpoint): ``pretrained:equivariant-al`` (species [13]) expanded to [13, 29] with Cu copied
from Al gives the checkpoint's outputs on a box of all-Al atoms and on the same box relabelled
all-Cu (Al masses), for the same statistics — float32 to its rounding, float64 to ~1e-15 — so
the rescaling for e3nn's fan-in normalisation is right; a mixed box runs and conserves
momentum. The trainer's path (``init_from`` on two-element data) is in
``tests/test_reference_sources.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from ase.build import bulk
from ase.data import atomic_masses

from equignnmd.checkpoint import load_checkpoint
from equignnmd.graph import make_data
from equignnmd.models import build_model
from equignnmd.models.equivariant import species_sources

pytestmark = pytest.mark.usefixtures("one_thread_module")

AL, CU = 13, 29
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-12}
"""Largest output difference allowed, Å and Å/ps (outputs are ~0.02 Å and ~4 Å/ps)."""


def rattled_box(species: np.ndarray, dtype: torch.dtype, seed: int = 0):
    """A 4×4×4 FCC Al box (256 atoms, a = 4.05 Å) rattled by 0.05 Å, random velocities
    (3 Å/ps per component), the given ``species`` (256,) with Al masses; Δt 10 fs, 300 K."""
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    rng = np.random.default_rng(seed)
    pos = atoms.positions + rng.normal(0.0, 0.05, atoms.positions.shape)
    vel = rng.normal(0.0, 3.0, pos.shape)
    masses = np.full(len(pos), atomic_masses[AL])
    return make_data(pos, vel, atoms.cell[:], species, masses, 10.0, 300.0, dtype=dtype)


def expanded(dtype: torch.dtype):
    """The checkpoint and its expansion to [Al, Cu] (Cu from Al), both with the checkpoint's
    statistics but the species, in ``dtype``, eval mode."""
    start = load_checkpoint("pretrained:equivariant-al", device="cpu").to(dtype).eval()
    stats = dataclasses.replace(start.stats, species=[AL, CU])
    torch.manual_seed(1)  # the random initial weights must all be overwritten
    model = build_model("equivariant", stats=stats, **start.config).to(dtype).eval()
    assert model.expand_species(start, {CU: AL}) == {AL: AL, CU: AL}
    return start, model


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_expanded_model_gives_the_checkpoints_outputs_on_one_species_boxes(dtype):
    """All-Al and all-Cu (Al masses) boxes through the expansion = all-Al through the
    checkpoint, displacement and velocity."""
    start, model = expanded(dtype)
    n = 256
    with torch.no_grad():
        ref = start(rattled_box(np.full(n, AL), dtype))
        worst = 0.0
        for z in (AL, CU):
            out = model(rattled_box(np.full(n, z), dtype))
            for got, want in zip(out, ref, strict=True):
                worst = max(worst, float((got - want).abs().max()))
    print(f"{dtype}: max |expanded − checkpoint| = {worst:.3g}")
    assert worst < TOLERANCE[dtype]
    # the outputs are not trivial: the learned part is far above the tolerance
    assert float((ref.velocity - rattled_box(np.full(n, AL), dtype).vel).abs().max()) > 0.1


def test_mixed_box_runs_and_conserves_momentum():
    """A quarter of the atoms Cu with Cu's mass: Σ m v is unchanged by a stride."""
    _, model = expanded(torch.float64)
    species = np.where(np.arange(256) % 4 == 0, CU, AL)
    batch = rattled_box(species, torch.float64)
    batch.mass = torch.where(batch.species == CU, atomic_masses[CU], atomic_masses[AL]).double()
    with torch.no_grad():
        out = model(batch)
    m = batch.mass.unsqueeze(-1)
    p0, p1 = (m * batch.vel).sum(0), (m * out.velocity).sum(0)
    torch.testing.assert_close(p1, p0, rtol=0.0, atol=1e-9)
    assert torch.isfinite(out.displacement).all()


def test_species_sources_default_and_map():
    """Default: the same element, else the checkpoint's first species; a map overrides."""
    assert species_sources([13], [13, 29]) == {13: 13, 29: 13}
    assert species_sources([13, 29], [29, 40, 13], {40: 29}) == {29: 29, 40: 29, 13: 13}
    with pytest.raises(ValueError, match="species map"):
        species_sources([13], [13, 29], {29: 40})
