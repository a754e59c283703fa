"""Environment defaults the package applies before torch loads (standard library only).

Spinning OpenMP threads made torch many times slower on a shared machine (58 s instead of
6.7 s for docs/ase.md's example on a loaded 2-core machine): libgomp reads
``OMP_WAIT_POLICY`` once, when torch loads it, and torch has no setting that changes it
afterwards. So ``import equignnmd`` (which every entry point — the command line, the Python
API, the ASE integrator and the LAMMPS fix — goes through before it imports torch) sets
:data:`OMP_DEFAULTS` where the user has not. Where torch was imported before equignnmd, the
setting reaches only child processes: export it yourself then.
"""

from __future__ import annotations

import os

__all__ = ["OMP_DEFAULTS", "apply_environment_defaults"]

OMP_DEFAULTS = {"OMP_WAIT_POLICY": "passive"}
"""Environment defaults applied unless the user set them."""


def apply_environment_defaults() -> dict[str, str]:
    """Set :data:`OMP_DEFAULTS` where the environment has no value; returns those set."""
    applied = {}
    for key, value in OMP_DEFAULTS.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
