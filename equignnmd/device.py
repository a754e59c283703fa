"""Where models run: one rule for the trainer, evaluation, fidelity runs and the CLI."""

from __future__ import annotations

import torch

__all__ = ["pick_device"]


def pick_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None): CUDA when present, else the CPU; otherwise the named device."""
    if name is None or str(name) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)
