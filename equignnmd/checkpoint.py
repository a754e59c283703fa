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

import dataclasses
import os
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used: the CLI lists pretrained names cheaply
    import torch

FORMAT = "equignnmd-checkpoint/1"
PRETRAINED_PREFIX = "pretrained:"
PRETRAINED_DIR = Path(__file__).parent / "pretrained"
"""Where the shipped checkpoints (``pretrained:NAME`` = ``NAME.pt``) live."""


def pretrained_names() -> list[str]:
    """The shipped ``pretrained:`` names, sorted (read from the package; no torch import)."""
    return sorted(p.stem for p in PRETRAINED_DIR.glob("*.pt")) if PRETRAINED_DIR.is_dir() else []


def expected_checkpoint() -> str:
    """What a checkpoint argument should be, for error messages."""
    names = ", ".join(pretrained_names()) or "none in this installation"
    return (
        "a checkpoint file written by `equignnmd train` (RUN/best.pt or RUN/last.pt) or "
        f"pretrained:NAME with NAME one of: {names}"
    )


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def checkpoint_dict(model, data_summary: dict | None = None, trainer: dict | None = None):
    from ._version import __version__

    head = getattr(model, "energy_head", None)
    out = {
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
    box = getattr(model, "novelty_box", None)
    if box is not None:
        out["novelty"] = box.to_dict()
    if head is not None:
        out["energy_head"] = {
            "config": dict(head.config),
            "state": {k: v.detach().cpu() for k, v in head.state_dict().items()},
            "fit": dict(model.energy_head_fit or {}),
        }
    return out


def save_checkpoint(path, model, data_summary: dict | None = None, trainer: dict | None = None):
    """Write ``model`` (a :class:`SurrogateModel`) and optional trainer state atomically."""
    atomic_torch_save(checkpoint_dict(model, data_summary, trainer), path)


def resolve_path(path: str | os.PathLike) -> Path:
    """The file of a checkpoint argument: ``pretrained:NAME`` → the shipped ``NAME.pt``, else
    ``path`` itself. An unknown ``pretrained:`` name is a ``FileNotFoundError`` listing the
    shipped names."""
    text = str(path)
    if text.startswith(PRETRAINED_PREFIX):
        name = text[len(PRETRAINED_PREFIX) :]
        candidate = PRETRAINED_DIR / f"{name}.pt"
        if not name or not candidate.is_file():
            raise FileNotFoundError(
                f"checkpoint {text!r}: no shipped pretrained model named {name!r} (in "
                f"{PRETRAINED_DIR}); expected pretrained:NAME with NAME one of: "
                f"{', '.join(pretrained_names()) or 'none in this installation'}"
            )
        return candidate
    return Path(path)


def _why_unreadable(path: Path) -> str:
    """What is wrong with a file ``torch.load(weights_only=True)`` refused, in our words."""
    size = path.stat().st_size
    if size == 0:
        return "the file is empty (0 bytes)"
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        return f"it is not a torch zip archive ({size} bytes starting {head!r})"
    if not zipfile.is_zipfile(path):
        return (
            f"it is a zip archive cut short or damaged ({size} bytes, no end-of-archive record): "
            "a truncated download or copy, or a run killed while writing"
        )
    return (
        "its contents are not the plain tensors, dicts, lists, strings and numbers of an "
        "equignnmd checkpoint (safe loading refused an object in it)"
    )


def read_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """The checkpoint dict of a file or ``pretrained:NAME``, read with safe loading
    (``torch.load(weights_only=True)``: tensors and plain containers only, never code).

    Raises ``FileNotFoundError`` (missing file, unknown pretrained name) or ``ValueError``
    (not a readable equignnmd checkpoint), each naming the file and what was expected.
    """
    import torch

    path = resolve_path(path)
    if not path.exists():
        raise FileNotFoundError(
            f"checkpoint {path}: the file does not exist; expected {expected_checkpoint()}"
        )
    if path.is_dir():
        raise ValueError(f"checkpoint {path}: is a folder; expected {expected_checkpoint()}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:
        # torch's own message advises turning safe loading off: never pass that on
        raise ValueError(
            f"checkpoint {path}: not a readable equignnmd checkpoint: {_why_unreadable(path)}; "
            f"expected {expected_checkpoint()}"
        ) from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(
            f"checkpoint {path}: not an equignnmd checkpoint: field 'format' is {found!r} (an "
            f"equignnmd checkpoint has {FORMAT!r}); expected {expected_checkpoint()}"
        )
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
    import torch

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
    # checkpoints older than the switch were all temperature-conditioned (new models are not);
    # an architecture without the switch (a potential, ``symplectic``) reads no temperature
    fields = {f.name for f in dataclasses.fields(model_class(arch).config_class)}
    if "temperature_conditioning" in fields:
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
    if ckpt.get("energy_head") is not None:
        model.attach_energy_head(*energy_head_of(ckpt["energy_head"], where))
    if ckpt.get("novelty") is not None:
        from .novelty import NoveltyBox

        model.novelty_box = NoveltyBox.from_dict(ckpt["novelty"], f"{where} [novelty]")
    return model


def energy_head_of(section, where: str):
    """(EnergyHead, fit report) of a checkpoint's ``energy_head`` section."""
    from .config import ConfigError, check_hparams
    from .potential import EnergyHead, EnergyHeadConfig

    if not isinstance(section, dict) or not isinstance(section.get("state"), dict):
        raise ConfigError(
            f"{where}: field 'energy_head' is not a mapping with 'config' and 'state'; "
            "expected the section `equignnmd energy-head` writes"
        )
    head = EnergyHead(
        check_hparams(EnergyHeadConfig, section.get("config") or {}, f"{where} [energy_head]")
    )
    try:
        head.load_state_dict(section["state"])
    except RuntimeError as err:
        raise ConfigError(
            f"{where}: field 'energy_head.state' does not fit its config: {err}"
        ) from None
    return head, section.get("fit") or {}
