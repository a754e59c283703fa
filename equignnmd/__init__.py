"""equignnmd: learned, force-free molecular dynamics with graph neural networks.

Units inside the package are LAMMPS ``metal`` (Å, ps, eV, amu, K); see :mod:`equignnmd.units`.
"""

from __future__ import annotations

__version__ = "0.1.0"


def load_checkpoint(path, device=None, **overrides):
    """Load a trained model; see :func:`equignnmd.checkpoint.load_checkpoint`."""
    from .checkpoint import load_checkpoint as _load

    return _load(path, device=device, **overrides)


__all__ = ["__version__", "load_checkpoint"]
