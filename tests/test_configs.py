"""Every built-in config resolves by name from the installed package data and validates."""

from __future__ import annotations

import pytest

from equignnmd.config import CONFIG_DIR, ConfigError, load_config, parse_overrides, resolve_config
from equignnmd.data.generate import GenerateConfig
from equignnmd.models import build_model
from equignnmd.train import load_run_spec

MODEL_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
DATA_CONFIGS = sorted(p.stem for p in (CONFIG_DIR / "data").glob("*.yaml"))


def test_the_builtin_configs_are_package_data():
    import importlib.resources

    assert CONFIG_DIR == importlib.resources.files("equignnmd.configs")
    assert {"equivariant-al", "paper-al", "equivariant-small"} <= set(MODEL_CONFIGS)
    assert {"quick", "reference", "paper"} <= set(DATA_CONFIGS)


@pytest.mark.parametrize("name", MODEL_CONFIGS)
def test_model_config_resolves_and_builds(name):
    path = resolve_config(name)
    assert path == CONFIG_DIR / f"{name}.yaml"
    spec = load_run_spec(path)
    model = build_model(spec.arch, **spec.model)
    # epochs 0 only where the model is its own fit to the data (symplectic-al)
    assert model.cutoff > 0 and spec.train.epochs >= (0 if spec.arch == "symplectic" else 1)


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_data_config_resolves_and_validates(name):
    path = resolve_config(name, "data")
    assert path == CONFIG_DIR / "data" / f"{name}.yaml"
    cfg = load_config(GenerateConfig, path)
    assert cfg.n_atoms > 0 and cfg.temperatures_K


def test_unknown_config_name_lists_the_known_ones():
    with pytest.raises(SystemExit, match="quick"):
        resolve_config("no-such-config", "data")


def test_exponent_notation_is_a_number_in_files_and_overrides(tmp_path):
    # PyYAML reads 3e-4 (no dot) as a string; a float field takes it as the number it is
    from equignnmd.train import TrainConfig

    path = tmp_path / "run.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1e-5\n")
    cfg = load_config(TrainConfig, path, parse_overrides(["max_minutes=2e1"]), section="train")
    assert (cfg.lr, cfg.weight_decay, cfg.max_minutes) == (3e-4, 1e-5, 20.0)
    with pytest.raises(ConfigError, match="field 'lr': expected a number, got 'fast'"):
        load_config(TrainConfig, path, parse_overrides(["lr=fast"]), section="train")


def test_field_docs_read_from_the_source_match_the_class():
    """The command line reads the configs' fields from their source files without importing
    them (``"module:Class"``); that agrees with reading the class itself."""
    import dataclasses

    from equignnmd.config import field_docs
    from equignnmd.rollout import RolloutConfig
    from equignnmd.train import TrainConfig

    for cls in (RolloutConfig, TrainConfig, GenerateConfig):
        docs = field_docs(f"{cls.__module__}:{cls.__name__}")
        assert docs == field_docs(cls)
        assert list(docs) == [f.name for f in dataclasses.fields(cls)]
    train = field_docs(TrainConfig)
    assert train["epochs"].doc == "training epochs"  # the first paragraph only
    assert train["strides_fs"].default == TrainConfig().strides_fs  # a default_factory's
    assert field_docs(RolloutConfig)["tau_fs"].annotation == "float | None"
    assert field_docs(GenerateConfig)["element"].default is dataclasses.MISSING  # a name
