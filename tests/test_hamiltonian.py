"""A Hamiltonian surrogate reads no temperature: the ``temperature_conditioning`` switch of both
architectures (tiny untrained models of configs/*-small.yaml on a real 256-atom LAMMPS frame)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from equignnmd.data.dataset import PairDataset
from equignnmd.graph import collate
from equignnmd.models import build_model

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("arch", ["equivariant", "paper"])
def test_temperature_conditioning_switch(arch, tiny_dataset):
    data = PairDataset(tiny_dataset, [5.0], "train", start_every_fs=100.0, dtype=torch.float64)
    # one training temperature in the tiny set: give the label a range to be read in
    stats = replace(data.statistics(), temperature_range_K=(5.0, 800.0))
    cfg = yaml.safe_load((CONFIGS / f"{arch}-small.yaml").read_text())["model"]
    out = {}
    for conditioned in (True, False):
        torch.manual_seed(0)
        model = build_model(arch, stats=stats, **{**cfg, "temperature_conditioning": conditioned})
        model = model.double().eval()
        assert model.temperature_conditioned is conditioned
        preds = []
        for label in (150.0, 600.0):
            batch = collate([data[0]])
            batch.temperature_K = torch.full_like(batch.temperature_K, label)
            with torch.no_grad():
                preds.append(model(model.prepare(batch)).displacement)
        out[conditioned] = (model.state_dict(), preds)
    # the same parameters either way (a conditioned checkpoint can be fine-tuned without it)
    assert out[True][0].keys() == out[False][0].keys()
    for key, value in out[True][0].items():
        torch.testing.assert_close(value, out[False][0][key])
    # conditioned: the label changes the prediction; unconditioned: it does not
    assert not torch.allclose(*out[True][1])
    torch.testing.assert_close(*out[False][1], rtol=0, atol=0)
    # a misspelt switch is an error that names it
    with pytest.raises(ValueError, match="temperature_conditionin"):
        build_model(arch, stats=stats, **{**cfg, "temperature_conditionin": False})
