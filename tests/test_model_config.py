"""Typed model hyperparameters: every built-in config and both shipped checkpoints validate; a
misspelt or unknown field, or a wrong type, is an error naming the file and the field; building,
loading and running a model never touches torch's global default dtype."""

from __future__ import annotations

import copy
from dataclasses import asdict, replace
from pathlib import Path

import pytest
import torch
import yaml
from ase.build import bulk
from torch_geometric.data import Batch

import equignnmd
from equignnmd.checkpoint import read_checkpoint, resolve_path
from equignnmd.config import CONFIG_DIR, ConfigError
from equignnmd.graph import make_data
from equignnmd.models import build_model, load_model_config, model_config
from equignnmd.models.equivariant import EquivariantConfig, EquivariantModel
from equignnmd.models.paper import PaperConfig
from equignnmd.models.symplectic import SymplecticConfig
from equignnmd.symmetry import rotation_error

RUN_CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))
SHIPPED = ("equivariant-al", "equivariant-al-v1", "paper-al")
CLASSES = {
    "equivariant": EquivariantConfig,
    "paper": PaperConfig,
    "symplectic": SymplecticConfig,
}


def write_yaml(path: Path, arch: str, model: dict) -> Path:
    path.write_text(yaml.safe_dump({"arch": arch, "model": model, "train": {"epochs": 1}}))
    return path


def small_equivariant() -> dict:
    return yaml.safe_load((CONFIG_DIR / "equivariant-small.yaml").read_text())["model"]


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.stem)
def test_every_builtin_config_validates_and_builds(path):
    arch, hparams = load_model_config(path)
    assert isinstance(hparams, CLASSES[arch])
    model = build_model(arch, **asdict(hparams))
    if getattr(hparams, "species", "unset") is None:
        # a paper config that leaves 'species' out takes the data's (default stats: Al), and
        # the built model names them so that its checkpoint rebuilds the same embedding table
        assert model.config["species"] == [13]
        hparams = replace(hparams, species=[13])
    assert model.hparams == hparams and model.config == asdict(hparams)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_checkpoints_validate(name):
    stored = read_checkpoint(f"pretrained:{name}")["config"]
    # equivariant-al-v1 was written before the switch existed: the loader reads it as
    # temperature-conditioned; paper-al and equivariant-al v2 (2026-12-06) store it, on
    assert ("temperature_conditioning" in stored) == (name != "equivariant-al-v1")
    older = {"temperature_conditioning": True, **stored}
    hparams = model_config(stored_arch := name.split("-")[0], older, name)
    model = equignnmd.load_checkpoint(f"pretrained:{name}", device="cpu")
    assert model.arch == stored_arch and model.hparams == hparams and model.temperature_input
    assert {k: model.config[k] for k in stored} == stored  # later fields take their defaults


def test_misspelt_yaml_field_names_the_file_and_the_field(tmp_path):
    model = small_equivariant()
    model["chanels"] = model.pop("channels")
    path = write_yaml(tmp_path / "typo.yaml", "equivariant", model)
    with pytest.raises(ConfigError) as err:
        load_model_config(path)
    msg = str(err.value)
    assert str(path) in msg and "[model]" in msg and "'chanels'" in msg
    assert "did you mean 'chanels' → 'channels'?" in msg and "EquivariantConfig" in msg


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("channels", "wide", "expected an integer"),
        ("use_cueq", "yes", "expected true or false"),
        ("radial_mlp", {"a": 1}, "expected a list"),
        ("cutoff", -1.0, "expected > 0"),
    ],
)
def test_wrong_yaml_value_names_the_file_the_field_and_what_was_expected(
    tmp_path, field, value, expected
):
    path = write_yaml(tmp_path / "bad.yaml", "equivariant", {**small_equivariant(), field: value})
    with pytest.raises(ConfigError, match=expected) as err:
        load_model_config(path)
    assert str(path) in str(err.value) and f"'{field}'" in str(err.value)


def test_the_trainer_checks_the_model_block_when_it_reads_the_file(tmp_path):
    from equignnmd.train import load_run_spec

    model = {**small_equivariant(), "vel_mpl": [16]}
    path = write_yaml(tmp_path / "run.yaml", "equivariant", model)
    with pytest.raises(ConfigError, match=r"'vel_mpl' → 'vel_mlp'") as err:
        load_run_spec(path)
    assert f"{path} [model]" in str(err.value)
    good = write_yaml(tmp_path / "good.yaml", "equivariant", small_equivariant())
    with pytest.raises(ConfigError, match="field 'layers': expected an integer"):
        load_run_spec(good, model_overrides={"layers": "many"})
    assert load_run_spec(good).model == small_equivariant()
    # constraints between fields are the model's: checked when it is built (a resumed run
    # ignores the file's model settings, with a warning)
    doc = yaml.safe_load((CONFIG_DIR / "paper-small.yaml").read_text())
    heads = write_yaml(tmp_path / "heads.yaml", "paper", {**doc["model"], "hidden": 16})
    spec = load_run_spec(heads)
    with pytest.raises(ConfigError, match="'heads' × 'head_dim' = 2 × 16"):
        build_model(spec.arch, **spec.model)


def test_paper_yaml_checks_the_attention_widths(tmp_path):
    doc = yaml.safe_load((CONFIG_DIR / "paper-small.yaml").read_text())
    path = write_yaml(tmp_path / "heads.yaml", "paper", {**doc["model"], "heads": 3})
    with pytest.raises(ConfigError, match="'heads' × 'head_dim' = 3 × 16") as err:
        load_model_config(path)
    assert str(path) in str(err.value) and "'hidden' = 32" in str(err.value)
    with pytest.raises(ConfigError, match="field 'arch' is 'paper'; expected 'equivariant'"):
        load_model_config(path, arch="equivariant")


def tampered_checkpoint(tmp_path: Path, name: str, change) -> Path:
    ckpt = torch.load(resolve_path(f"pretrained:{name}"), weights_only=True)
    change(ckpt["config"])
    path = tmp_path / f"{name}-tampered.pt"
    torch.save(ckpt, path)
    return path


def test_misspelt_checkpoint_field_names_the_checkpoint_and_the_field(tmp_path):
    path = tampered_checkpoint(
        tmp_path, "paper-al", lambda c: c.__setitem__("hiden", c.pop("hidden"))
    )
    with pytest.raises(ConfigError) as err:
        equignnmd.load_checkpoint(path, device="cpu")
    msg = str(err.value)
    assert f"checkpoint {path} [config]" in msg and "'hiden'" in msg and "'hidden'?" in msg


def test_wrong_checkpoint_type_names_the_checkpoint_and_the_field(tmp_path):
    path = tampered_checkpoint(tmp_path, "equivariant-al", lambda c: c.update(lmax="two"))
    with pytest.raises(ConfigError, match="field 'lmax': expected an integer") as err:
        equignnmd.load_checkpoint(path, device="cpu")
    assert str(path) in str(err.value)
    with pytest.raises(ConfigError, match="field 'use_cueq': expected true or false"):
        equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu", use_cueq="on")


def test_unknown_checkpoint_stats_field_names_the_checkpoint_and_the_field(tmp_path):
    ckpt = torch.load(resolve_path("pretrained:equivariant-al"), weights_only=True)
    ckpt["stats"]["vel_rms_ps"] = 1.0  # a field this version does not know: never dropped
    path = tmp_path / "stats-tampered.pt"
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"\[stats\]: unknown field\(s\) \['vel_rms_ps'\]") as err:
        equignnmd.load_checkpoint(path, device="cpu")
    assert str(path) in str(err.value)


def test_build_model_keywords_are_checked():
    with pytest.raises(ConfigError, match=r"build_model\('equivariant'\).*'layer' → 'layers'"):
        build_model("equivariant", layer=2)
    with pytest.raises(ConfigError, match="field 'blocks': expected an integer"):
        build_model("paper", blocks=2.5)
    assert build_model("paper", blocks=2.0).hparams.blocks == 2  # 2.0 is an integer


# ----------------------------------------------------------------------------- global state
def frame(dtype: torch.dtype) -> Batch:
    atoms = bulk("Al", "fcc", a=4.05, cubic=True).repeat((4, 4, 4))
    atoms.rattle(0.05, seed=3)
    gen = torch.Generator().manual_seed(0)
    vel = torch.randn(len(atoms), 3, generator=gen, dtype=torch.float64) * 4.0
    data = make_data(
        atoms.positions,
        vel,
        atoms.cell.array,
        atoms.numbers,
        atoms.get_masses(),
        dt_fs=20.0,
        temperature_K=300.0,
        dtype=dtype,
    )
    return Batch.from_data_list([data])


@pytest.fixture
def no_default_dtype_changes(monkeypatch):
    """Any call of torch.set_default_dtype fails the test."""

    def refuse(dtype):
        raise AssertionError(f"torch.set_default_dtype({dtype}) called")

    monkeypatch.setattr(torch, "set_default_dtype", refuse)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_build_load_and_run_leave_the_default_dtype_alone(dtype, no_default_dtype_changes):
    default = torch.get_default_dtype()
    torch.manual_seed(0)
    model = build_model("equivariant", **small_equivariant()).to(dtype)
    assert model.dtype == dtype
    with torch.no_grad():
        out = model(frame(dtype))
    assert out.displacement.dtype == dtype
    for name in SHIPPED:
        loaded = equignnmd.load_checkpoint(f"pretrained:{name}", device="cpu").to(dtype)
        with torch.no_grad():
            loaded(loaded.prepare(frame(dtype)))
    assert torch.get_default_dtype() == default
    assert EquivariantModel._apply is torch.nn.Module._apply  # no dtype/device hook either


def test_a_float64_default_builds_a_float64_model():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        model = build_model("equivariant", **small_equivariant())
        assert model.dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert torch.get_default_dtype() == previous


@torch.no_grad()
def test_float32_round_trip_keeps_exact_constants():
    """float32 → float64 gives the outputs of a model that never left float64 (to float64
    rounding) and the shipped checkpoint's state_dict layout."""
    torch.manual_seed(0)
    model32 = build_model("equivariant", **small_equivariant()).float()
    model64 = copy.deepcopy(model32).double()  # float32 weights, exactly, in float64
    back = copy.deepcopy(model64).float().double()
    batch = frame(torch.float64)
    ref, out = model64(batch), back(batch)
    torch.testing.assert_close(out.displacement, ref.displacement, rtol=0, atol=1e-14)
    torch.testing.assert_close(out.velocity, ref.velocity, rtol=0, atol=1e-12)
    # the constants are exact, not float32-rounded: symmetries to float64 rounding and the
    # analytic Bessel basis and Gaussian centres
    assert rotation_error(back, batch, trials=2, seed=1) < 1e-12
    r = torch.linspace(0.5, back.cutoff, 7, dtype=torch.float64)
    n = torch.arange(1, back.hparams.num_radial + 1, dtype=torch.float64)
    rc = back.cutoff
    bessel = (2.0 / rc) ** 0.5 * torch.sin(n * torch.pi * r[:, None] / rc) / r[:, None]
    torch.testing.assert_close(back.radial_basis(r), bessel, rtol=0, atol=1e-15)
    lo, hi = back.stats.temperature_range_K
    t = torch.tensor([lo + (hi - lo) / 3.0], dtype=torch.float64)
    k = torch.arange(back.hparams.cond_basis, dtype=torch.float64)
    centres = lo + k * (hi - lo) / (back.hparams.cond_basis - 1)
    want = torch.exp(-back.temp_rbf.gamma * (t[:, None] - centres) ** 2)
    torch.testing.assert_close(back.temp_rbf(t), want, rtol=1e-14, atol=1e-15)
    shipped = read_checkpoint("pretrained:equivariant-al")["model"]
    loaded = equignnmd.load_checkpoint("pretrained:equivariant-al", device="cpu")
    assert list(loaded.state_dict()) == list(shipped)
    assert all(loaded.state_dict()[k].dtype == v.dtype for k, v in shipped.items())
