"""Model registry: ``build_model(arch, stats=None, **overrides)``.

Architectures register themselves here by name; the trainer, checkpoints and rollout only ever
see :class:`~equignnmd.models.base.SurrogateModel`.
"""

from __future__ import annotations

import importlib
from typing import Any

from .base import Prediction, SurrogateModel, TrainingStats

# name -> "module:Class", imported on demand so that importing the package stays cheap
REGISTRY: dict[str, str] = {
    "paper": "equignnmd.models.paper:PaperModel",
    "equivariant": "equignnmd.models.equivariant:EquivariantModel",
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


def build_model(
    arch: str, stats: TrainingStats | dict | None = None, **overrides: Any
) -> SurrogateModel:
    """Build a model from its default config updated by ``overrides``.

    Each architecture class exposes ``default_config() -> dict``; unknown override keys are an
    error naming the known ones.
    """
    cls = model_class(arch)
    config = cls.default_config()
    unknown = sorted(set(overrides) - set(config))
    if unknown:
        raise ValueError(
            f"architecture {arch!r}: unknown hyperparameter(s) {unknown}; known: {sorted(config)}"
        )
    config.update(overrides)
    if isinstance(stats, dict):
        stats = TrainingStats.from_dict(stats)
    return cls(config, stats)


__all__ = ["Prediction", "REGISTRY", "SurrogateModel", "TrainingStats", "build_model"]
