"""Model registry: ``build_model(arch, stats=None, **overrides)``.

Architectures register themselves here by name; the trainer, checkpoints and rollout only ever
see :class:`~equignnmd.models.base.SurrogateModel`. Each architecture's hyperparameters are a
typed dataclass (``EquivariantConfig``, ``PaperConfig``; :func:`model_config`), read from the
``model:`` block of a YAML config by :func:`load_model_config` and checked field by field.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import ConfigError, read_yaml

if TYPE_CHECKING:
    from ..data.stats import TrainingStats
    from .base import SurrogateModel

# torch loads with the first model, not with the registry: `equignnmd --help` lists the
# architectures without it (PEP 562 module attributes)
_LAZY = {
    "Prediction": "equignnmd.models.base",
    "SurrogateModel": "equignnmd.models.base",
    "TrainingStats": "equignnmd.data.stats",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# name -> "module:Class", imported on demand so that importing the package stays cheap
REGISTRY: dict[str, str] = {
    "paper": "equignnmd.models.paper:PaperModel",
    "equivariant": "equignnmd.models.equivariant:EquivariantModel",
    "symplectic": "equignnmd.models.symplectic:SymplecticModel",
}


def model_class(arch: str) -> type[SurrogateModel]:
    if arch not in REGISTRY:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(REGISTRY))}")
    module_name, cls_name = REGISTRY[arch].split(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name == module_name:
            raise NotImplementedError(f"architecture {arch!r} is not yet available") from err
        raise
    return getattr(module, cls_name)


def model_config(
    arch: str,
    values: dict[str, Any] | None = None,
    source: str | None = None,
    consistent: bool = True,
):
    """The checked hyperparameter dataclass of ``arch`` from ``values`` (missing fields take
    their defaults). Errors (:class:`~equignnmd.config.ConfigError`) name ``source``, the field
    and what was expected; ``consistent=False`` checks names, types and ranges of the fields
    but not the constraints between them (:func:`~equignnmd.models.base.check_hparams`)."""
    from ..config import check_hparams

    cls = model_class(arch)
    source = source or f"{arch} model config"
    return check_hparams(cls.config_class, dict(values or {}), source, consistent)


def load_model_config(path: str | Path, arch: str | None = None):
    """``(arch, hyperparameters)`` of a YAML run config (its ``arch`` and ``model:`` sections).

    ``arch`` is the file's unless given (then both must agree). Every field of the ``model:``
    block is checked; errors name the file, the section and the field.
    """
    data = read_yaml(path)
    file_arch = data.get("arch")
    if arch and file_arch and arch != file_arch:
        raise ConfigError(f"{path}: field 'arch' is {file_arch!r}; expected {arch!r}")
    arch = arch or file_arch
    if not arch:
        raise ConfigError(f"{path}: field 'arch' is missing; expected one of {sorted(REGISTRY)}")
    if arch not in REGISTRY:
        raise ConfigError(f"{path}: field 'arch' is {arch!r}; expected one of {sorted(REGISTRY)}")
    return arch, model_config(arch, data.get("model") or {}, f"{path} [model]")


def build_model(
    arch: str, stats: TrainingStats | dict | None = None, **overrides: Any
) -> SurrogateModel:
    """Build a model from its default hyperparameters updated by ``overrides``.

    Unknown override keys and values of the wrong type are an error
    (:class:`~equignnmd.config.ConfigError`, a ``ValueError``) naming the field and the known
    ones.
    """
    from ..config import check_hparams
    from ..data.stats import TrainingStats

    cls = model_class(arch)
    config = check_hparams(cls.config_class, overrides, f"build_model({arch!r})")
    if isinstance(stats, dict):
        stats = TrainingStats.from_dict(stats)
    return cls(config, stats)


__all__ = [
    "Prediction",
    "REGISTRY",
    "SurrogateModel",
    "TrainingStats",
    "build_model",
    "load_model_config",
    "model_config",
]
