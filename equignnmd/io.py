"""Structures in, trajectories out.

* :func:`read_structure`: anything ASE reads (extxyz, LAMMPS data, LAMMPS text dump, …) as an
  ``ase.Atoms``, with a clear error naming the file.
* Incremental trajectory writers, one frame at a time, each frame formatted in memory, written
  whole and flushed, so a reader can parse a file that a running (or crashed) rollout is still
  writing:

  - :class:`ExtxyzWriter`: extended XYZ through ``ase.io.write``. Velocities twice: ASE
    ``momenta`` (so ``atoms.get_velocities()`` works after ``ase.io.read``) and a ``vel``
    column in Å/ps (metal units); integer periodic ``image`` flags (unwrapped = positions +
    image @ cell); ``info``: ``step``, ``time_fs``, ``temperature_K`` and anything passed.
  - :class:`LammpsDumpWriter`: LAMMPS text dump, ``ITEM: ATOMS id type element x y z vx vy vz
    ix iy iz`` in metal units (Å, Å/ps); ``BOX BOUNDS pp pp pp`` for an orthogonal cell and
    ``xy xz yz pp pp pp`` otherwise (a general cell is rotated into LAMMPS' lower-triangular
    frame, positions and velocities with it). Types number the species present in increasing
    atomic number (1 = the lowest); the ``element`` column lets ``ase.io.read(path,
    format="lammps-dump-text")`` recover the species without ``specorder``.

Positions and velocities given to the writers are NumPy arrays in metal units.
"""

from __future__ import annotations

import io as _io
import os
from pathlib import Path

import numpy as np

from .units import velocity_to_ase

__all__ = [
    "ExtxyzWriter",
    "LammpsDumpWriter",
    "TRAJECTORY_SUFFIX",
    "image_flags",
    "open_writer",
    "read_structure",
]

TRAJECTORY_SUFFIX = {"extxyz": ".extxyz", "lammps-dump": ".lammpstrj"}

_FORMAT_BY_SUFFIX = {
    ".data": "lammps-data",
    ".lmp": "lammps-data",
    ".lammps": "lammps-data",
    ".lammpstrj": "lammps-dump-text",
    ".dump": "lammps-dump-text",
}


# ------------------------------------------------------------------------------------ reading
def read_structure(path_or_atoms, index=-1, format: str | None = None, **kwargs):
    """One structure as ``ase.Atoms`` (a copy when given an ``Atoms``).

    ``format`` is guessed from the suffix for LAMMPS files (``.data``/``.lmp`` →
    ``lammps-data`` with ``units="metal"``, ``style="atomic"``; ``.lammpstrj``/``.dump`` →
    ``lammps-dump-text``) and left to ASE otherwise. ``index`` picks the frame (default the
    last). Raises ``FileNotFoundError`` / ``ValueError`` naming the file.
    """
    import ase
    import ase.io

    if isinstance(path_or_atoms, ase.Atoms):
        return path_or_atoms.copy()
    path = Path(os.fspath(path_or_atoms))
    if not path.exists():
        raise FileNotFoundError(f"structure file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"structure file {path} is not a regular file")
    fmt = format or _FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if fmt == "lammps-data":
        kwargs.setdefault("units", "metal")
        kwargs.setdefault("atom_style", "atomic")
    try:
        if fmt == "lammps-data":
            atoms = ase.io.read(path, format=fmt, **kwargs)
        else:
            atoms = ase.io.read(path, index=index, format=fmt, **kwargs)
    except Exception as err:
        how = f"format {fmt!r}" if fmt else "ASE's format detection"
        raise ValueError(f"structure file {path}: cannot be read with {how} ({err})") from err
    if isinstance(atoms, list):
        if not atoms:
            raise ValueError(f"structure file {path}: no frames at index {index!r}")
        atoms = atoms[-1]
    if len(atoms) == 0:
        raise ValueError(f"structure file {path}: contains no atoms")
    return atoms


# ------------------------------------------------------------------------------------ helpers
def image_flags(unwrapped: np.ndarray, wrapped: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Integer periodic images n with unwrapped = wrapped + n @ cell, (N, 3)."""
    frac = np.linalg.solve(np.asarray(cell, float).T, (unwrapped - wrapped).T).T
    return np.rint(frac).astype(np.int64)


class _FrameWriter:
    """Shared file handling: append-mode text file, one flush per frame, context manager."""

    def __init__(self, path: str | os.PathLike, append: bool = False):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = open(self.path, "a" if append else "w")  # noqa: SIM115 - kept open
        self.frames = 0

    def _emit(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        self.frames += 1

    def close(self) -> None:
        if not self._fh.closed:
            self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class ExtxyzWriter(_FrameWriter):
    """Extended XYZ frames (see the module docstring for the columns)."""

    def write(
        self,
        positions: np.ndarray,
        velocities: np.ndarray,
        cell: np.ndarray,
        numbers: np.ndarray,
        masses: np.ndarray | None = None,
        image: np.ndarray | None = None,
        step: int = 0,
        time_fs: float = 0.0,
        temperature_K: float | None = None,
        info: dict | None = None,
    ) -> None:
        import ase
        import ase.io

        atoms = ase.Atoms(numbers=numbers, positions=positions, cell=cell, pbc=True)
        if masses is not None and not np.allclose(masses, atoms.get_masses(), rtol=1e-6):
            atoms.set_masses(masses)
        atoms.set_velocities(velocity_to_ase(np.asarray(velocities, float)))
        atoms.new_array("vel", np.asarray(velocities, float))
        if image is not None:
            atoms.new_array("image", np.asarray(image, dtype=np.int64))
        atoms.info["step"] = int(step)
        atoms.info["time_fs"] = float(time_fs)
        if temperature_K is not None:
            atoms.info["temperature_K"] = float(temperature_K)
        atoms.info.update(info or {})
        buf = _io.StringIO()
        ase.io.write(buf, atoms, format="extxyz")
        self._emit(buf.getvalue())


def _lammps_frame(cell: np.ndarray):
    """Rotation Q (3, 3) and LAMMPS box (lo/hi bounds, tilts) for a cell with rows a, b, c.

    In the rotated frame r' = r @ Q the cell is lower triangular: a' = (lx, 0, 0),
    b' = (xy, ly, 0), c' = (xz, yz, lz), with lx, ly, lz > 0 (LAMMPS' restricted triclinic).
    """
    cell = np.asarray(cell, float)
    q, r = np.linalg.qr(cell.T)  # cell.T = q r  ->  cell @ q = r.T (lower triangular)
    sign = np.sign(np.diag(r))
    sign[sign == 0] = 1.0
    q = q * sign  # flip columns so that the diagonal is positive
    low = cell @ q
    low[np.abs(low) < 1e-12 * np.abs(low).max()] = 0.0
    lx, ly, lz = low[0, 0], low[1, 1], low[2, 2]
    xy, xz, yz = low[1, 0], low[2, 0], low[2, 1]
    return q, (lx, ly, lz, xy, xz, yz)


class LammpsDumpWriter(_FrameWriter):
    """LAMMPS text dump frames (see the module docstring for the layout)."""

    float_format = "%.8f"

    def __init__(self, path, append: bool = False, species_order: list[int] | None = None):
        super().__init__(path, append)
        self.species_order = list(species_order) if species_order is not None else None

    def write(
        self,
        positions: np.ndarray,
        velocities: np.ndarray,
        cell: np.ndarray,
        numbers: np.ndarray,
        masses: np.ndarray | None = None,
        image: np.ndarray | None = None,
        step: int = 0,
        time_fs: float = 0.0,
        temperature_K: float | None = None,
        info: dict | None = None,
    ) -> None:
        from ase.data import chemical_symbols

        cell = np.asarray(cell, float)
        pos = np.asarray(positions, float)
        vel = np.asarray(velocities, float)
        numbers = np.asarray(numbers, int)
        n = pos.shape[0]
        if self.species_order is None:
            self.species_order = np.unique(numbers).tolist()
        # type = 1 + position in species_order, found by binary search in the sorted order
        order = np.asarray(self.species_order, dtype=np.int64)
        by_z = np.argsort(order, kind="stable")
        slot = np.searchsorted(order[by_z], numbers).clip(max=len(order) - 1)
        known = order[by_z][slot] == numbers
        if not known.all():
            raise ValueError(
                f"{self.path}: atomic numbers {np.unique(numbers[~known]).tolist()} are not in "
                f"this dump's species order {self.species_order}"
            )
        types = by_z[slot] + 1
        elements = np.asarray(chemical_symbols)[numbers]
        if image is None:
            image = np.zeros((n, 3), dtype=np.int64)

        off_diagonal = np.abs(cell - np.diag(np.diag(cell))).max() > 1e-10 * np.abs(cell).max()
        if off_diagonal or np.any(np.diag(cell) <= 0):
            q, (lx, ly, lz, xy, xz, yz) = _lammps_frame(cell)
            pos, vel = pos @ q, vel @ q
            bounds = (
                f"ITEM: BOX BOUNDS xy xz yz pp pp pp\n"
                f"{min(0.0, xy, xz, xy + xz):.10f} {lx + max(0.0, xy, xz, xy + xz):.10f} "
                f"{xy:.10f}\n"
                f"{min(0.0, yz):.10f} {ly + max(0.0, yz):.10f} {xz:.10f}\n"
                f"0.0000000000 {lz:.10f} {yz:.10f}\n"
            )
        else:
            lx, ly, lz = np.diag(cell)
            bounds = (
                "ITEM: BOX BOUNDS pp pp pp\n"
                f"0.0000000000 {lx:.10f}\n0.0000000000 {ly:.10f}\n0.0000000000 {lz:.10f}\n"
            )

        buf = _io.StringIO()
        buf.write(f"ITEM: TIMESTEP\n{int(step)}\nITEM: NUMBER OF ATOMS\n{n}\n{bounds}")
        buf.write("ITEM: ATOMS id type element x y z vx vy vz ix iy iz\n")
        table = np.empty(
            n,
            dtype=[("id", "i8"), ("type", "i8"), ("el", "U3")]
            + [(c, "f8") for c in ("x", "y", "z", "vx", "vy", "vz")]
            + [(c, "i8") for c in ("ix", "iy", "iz")],
        )
        table["id"] = np.arange(1, n + 1)
        table["type"] = types
        table["el"] = elements
        for k, c in enumerate(("x", "y", "z")):
            table[c] = pos[:, k]
            table["v" + c] = vel[:, k]
            table["i" + c] = np.asarray(image)[:, k]
        f = self.float_format
        np.savetxt(buf, table, fmt=["%d", "%d", "%s"] + [f] * 6 + ["%d"] * 3)
        self._emit(buf.getvalue())


def open_writer(path, fmt: str = "extxyz", append: bool = False, **kwargs):
    """A trajectory writer for ``fmt`` "extxyz" or "lammps-dump"."""
    if fmt == "extxyz":
        return ExtxyzWriter(path, append=append)
    if fmt in ("lammps-dump", "lammps-dump-text", "lammpstrj"):
        return LammpsDumpWriter(path, append=append, **kwargs)
    raise ValueError(f"unknown trajectory format {fmt!r}; expected 'extxyz' or 'lammps-dump'")


# --------------------------------------------------------------------------------- reports
def json_safe(x, skip_private: bool = False):
    """Strict-JSON form of a result: NaN/inf become ``null``, NumPy values Python ones; with
    ``skip_private`` dict keys starting with ``_`` (in-memory extras such as curves) are left
    out."""
    if isinstance(x, dict):
        return {
            str(k): json_safe(v, skip_private)
            for k, v in x.items()
            if not (skip_private and str(k).startswith("_"))
        }
    if isinstance(x, (list, tuple)):
        return [json_safe(v, skip_private) for v in x]
    if isinstance(x, (float, np.floating)):
        return float(x) if np.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.ndarray):
        return json_safe(x.tolist(), skip_private)
    return x


def write_atomic(path: str | os.PathLike, text: str) -> None:
    """Write via a temporary name and rename, so a killed run never leaves half a file."""
    path = Path(path)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
