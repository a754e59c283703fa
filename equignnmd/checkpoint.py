"""Checkpoints: one self-describing file per model, safe for ``torch.load(weights_only=True)``.

Contents (only tensors, dicts, lists, strings and numbers):

* ``format``: ``"equignnmd-checkpoint/1"``; ``package_version``
* ``arch``, ``config`` (hyperparameters), ``stats`` (training-split normalisation statistics)
* ``model``: the state dict; ``dtype``: ``"float32"`` or ``"float64"``
* ``data_summary``: what the model was trained on (dataset path, temperatures, strides, frames)
* ``trainer``: optional trainer state for ``--resume`` (epoch, optimiser, scheduler, RNG)

Files are written to a temporary name in the same folder and renamed, so a killed run never
leaves a half-written checkpoint.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

FORMAT = "equignnmd-checkpoint/1"
PRETRAINED_PREFIX = "pretrained:"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def checkpoint_dict(model, data_summary: dict | None = None, trainer: dict | None = None):
    from . import __version__

    return {
        "format": FORMAT,
        "package_version": __version__,
        "arch": model.arch,
        "config": dict(model.config),
        "stats": model.stats.to_dict(),
        "dtype": str(model.dtype).replace("torch.", ""),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "data_summary": dict(data_summary or {}),
        "trainer": trainer,
    }


def save_checkpoint(path, model, data_summary: dict | None = None, trainer: dict | None = None):
    """Write ``model`` (a :class:`SurrogateModel`) and optional trainer state atomically."""
    atomic_torch_save(checkpoint_dict(model, data_summary, trainer), path)


def resolve_path(path: str | os.PathLike) -> Path:
    text = str(path)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX) :]
        folder = Path(__file__).parent / "pretrained"
        candidate = folder / f"{name}.pt"
        if not candidate.exists():
            known = sorted(p.stem for p in folder.glob("*.pt")) if folder.exists() else []
            raise FileNotFoundError(
                f"pretrained model {name!r} not found in {folder}; available: {known or 'none'}"
            )
        return candidate
    return Path(path)


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    path = resolve_path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        raise ValueError(
            f"checkpoint {path}: cannot be read as an equignnmd checkpoint ({err})"
        ) from err
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"checkpoint {path}: field 'format' is {found!r}; expected {FORMAT!r}")
    return ckpt


def load_checkpoint(path: str | os.PathLike, device: str | torch.device | None = None, **overrides):
    """Rebuild a ready model (eval mode) from a checkpoint file or ``"pretrained:NAME"``.

    The stored hyperparameters are checked against the architecture's dataclass (an unknown or
    misspelt field, or a value of the wrong type, is a :class:`~equignnmd.config.ConfigError`
    naming the checkpoint file and the field; fields added since the checkpoint was written take
    their defaults). ``overrides`` replace hyperparameters that change kernels, not weights,
    e.g. ``use_cueq=True`` or ``compile=True`` for the equivariant model; a key the
    checkpoint's config does not have is refused.
    """
    from .config import ConfigError
    from .data.stats import TrainingStats
    from .device import pick_device
    from .models import REGISTRY, model_class, model_config

    ckpt = read_checkpoint(path)
    where = f"checkpoint {resolve_path(path)}"
    arch = ckpt.get("arch")
    if arch not in REGISTRY:
        raise ConfigError(f"{where}: field 'arch' is {arch!r}; expected one of {sorted(REGISTRY)}")
    config = ckpt.get("config")
    if not isinstance(config, dict):
        raise ConfigError(f"{where}: field 'config' is {config!r}; expected a mapping")
    # checkpoints older than the switch were all temperature-conditioned (new models are not)
    config = {"temperature_conditioning": True, **config}
    hparams = model_config(arch, config, f"{where} [config]")
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ConfigError(f"{where}: cannot override {unknown}; its config has {sorted(config)}")
    if overrides:
        values = {**config, **overrides}
        hparams = model_config(arch, values, f"load_checkpoint({str(path)!r}) overrides")
    model = model_class(arch)(
        hparams, TrainingStats.from_dict(ckpt.get("stats"), f"{where} [stats]")
    )
    model = model.to(getattr(torch, ckpt.get("dtype", "float32")))
    model.load_state_dict(ckpt["model"])
    model = model.to(pick_device(device)).eval()
    model.data_summary = ckpt.get("data_summary", {})
    return model
