"""equignnmd: learned, force-free molecular dynamics with graph neural networks.

Units inside the package are LAMMPS ``metal`` (Å, ps, eV, amu, K); see :mod:`equignnmd.units`.
"""

from __future__ import annotations

from ._environment import apply_environment_defaults

# before anything of the package imports torch (see equignnmd._environment: OpenMP threads
# that spin instead of sleeping made torch up to 9× slower on a shared machine)
apply_environment_defaults()

__version__ = "0.1.0"


def load_checkpoint(path, device=None, **overrides):
    """Load a trained model; see :func:`equignnmd.checkpoint.load_checkpoint`."""
    from .checkpoint import load_checkpoint as _load

    return _load(path, device=device, **overrides)


__all__ = ["__version__", "load_checkpoint"]
