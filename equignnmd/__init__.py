"""equignnmd: learned, force-free molecular dynamics with graph neural networks.

Units inside the package are LAMMPS ``metal`` (Å, ps, eV, amu, K); see :mod:`equignnmd.units`.
``load_checkpoint`` is :func:`equignnmd.checkpoint.load_checkpoint` (torch loads when it runs).
"""

from ._environment import apply_environment_defaults

# before anything of the package imports torch (see equignnmd._environment: OpenMP threads
# that spin instead of sleeping made torch up to 9× slower on a shared machine)
apply_environment_defaults()

from ._version import __version__  # noqa: E402
from .checkpoint import load_checkpoint  # noqa: E402

__all__ = ["__version__", "load_checkpoint"]
