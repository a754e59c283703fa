"""The training studies of ``benchmarks/frontier.py`` (the accuracy–cost frontier, the
``paper`` ablations): every variant names real fields of its config file and builds a model
whose switches take effect. A misspelt field would otherwise surface only after an hour of
training, as a failed run."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import asdict
from pathlib import Path

import pytest

from equignnmd.models import build_model, load_model_config

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def _frontier():
    spec = importlib.util.spec_from_file_location("frontier_study", BENCH / "frontier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


STUDIES = _frontier().STUDIES


@pytest.mark.parametrize(
    "study, variant", [(s, v) for s, st in STUDIES.items() for v in st.variants]
)
def test_every_variant_builds(study, variant):
    st = STUDIES[study]
    arch, hparams = load_model_config(st.config)
    fields = {**asdict(hparams), **st.base_model, **st.variants[variant], "compile": False}
    fields = {k: v for k, v in fields.items() if k in asdict(hparams)}
    assert set(st.base_model) | set(st.variants[variant]) <= set(asdict(hparams))
    model = build_model(arch, **fields)
    for key, value in {**st.base_model, **st.variants[variant]}.items():
        assert model.config[key] == value, (study, variant, key)
    assert st.held_out_K and st.strides_fs and st.budget_min > 0
