"""The on-disk dataset format: one folder, one JSON index, one HDF5 file per trajectory.

Layout of a dataset folder::

    DATASET/
      dataset.json        index + provenance (format, units, trajectories, command line, ...)
      T0300K.h5           one trajectory (one temperature), see below
      T0350K.h5
      ...

Each trajectory file (HDF5, every per-frame array chunked one frame per chunk so that reading
frame t touches only frame t):

==================  ===========  =========  ==============================================
dataset             shape        dtype      meaning (LAMMPS metal units)
==================  ===========  =========  ==============================================
``species``         (N,)         int32      atomic numbers
``masses``          (N,)         float64    amu
``time_fs``         (F,)         float64    time of each frame, strictly increasing, fs
``cell``            (F, 3, 3)    float64    rows are lattice vectors, Å
``positions``       (F, N, 3)    float64    **unwrapped** positions, Å
``velocities``      (F, N, 3)    float32    Å/ps
``forces``          (F, N, 3)    float32    eV/Å (optional; needed by the Taylor baseline)
``descriptors``     (F, N, 5)    float32    CSP, CNA, Q4, Q6, CN (optional)
``thermo/<name>``   (F,)         float64    temperature_K, pressure_bar, volume_A3, pe_eV,
                                            ke_eV, etotal_eV (optional)
``energies``        (F, N)       float32    per-atom potential energy, eV; sums to pe_eV
                                            (optional: ``record_energies``)
``virial``          (F, 6)       float64    global virial W = Σ r_a f_b, eV, order xx yy zz
                                            xy xz yz; stress = −W / V (optional)
==================  ===========  =========  ==============================================

File attributes: ``format``, ``temperature_K`` (set point or label), ``frame_interval_fs``,
``units`` = ``"metal"``, ``source``; ``structure`` and ``label`` for files of a ``states``
dataset (``slab111_T0300K.h5``: structure ``slab``, label ``slab111``).

Writers append frame by frame to ``NAME.h5.partial`` and rename to ``NAME.h5`` only when the
trajectory is complete, so an interrupted run never leaves a file that looks finished.
Readers open files lazily and re-open after a fork, so they are safe in multi-worker
DataLoaders.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import h5py
import numpy as np

FORMAT = "equignnmd-dataset/1"
INDEX = "dataset.json"
PARTIAL = ".partial"
PER_FRAME = ("positions", "velocities", "forces", "descriptors")
DTYPES = {
    "positions": np.float64,
    "velocities": np.float32,
    "forces": np.float32,
    "descriptors": np.float32,
}
FINITE = ("cell", *PER_FRAME, "energies", "virial")
"""Per-frame float fields that must hold finite values (checked on every read)."""


def non_finite(name: str, values: np.ndarray) -> str | None:
    """``None`` when ``values`` (one frame of field ``name``) are all finite, else a short
    description of the first bad entry (its atom for per-atom fields)."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return None
    first = np.unravel_index(int(np.argmax(bad)), bad.shape)
    where = f"atom {first[0]}" if name != "cell" else f"entry {tuple(int(i) for i in first)}"
    return f"{int(bad.sum())} non-finite value(s), first at {where} ({values[first]})"


def trajectory_name(temperature_K: float, tag: str = "") -> str:
    return f"T{int(round(temperature_K)):04d}K{tag}.h5"


class TrajectoryWriter:
    """Append frames to a trajectory file; :meth:`finish` makes it final (atomic rename)."""

    def __init__(
        self,
        path: str | Path,
        species,
        masses,
        temperature_K: float,
        frame_interval_fs: float,
        with_forces: bool = True,
        with_descriptors: bool = True,
        thermo_names: tuple[str, ...] = (),
        source: str = "",
        with_energies: bool = False,
    ):
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + PARTIAL)
        self.partial.unlink(missing_ok=True)
        self.n = len(species)
        self.f = h5py.File(self.partial, "w")
        f = self.f
        f.attrs.update(
            format=FORMAT,
            temperature_K=float(temperature_K),
            frame_interval_fs=float(frame_interval_fs),
            units="metal",
            source=source,
        )
        f.create_dataset("species", data=np.asarray(species, np.int32))
        f.create_dataset("masses", data=np.asarray(masses, np.float64))
        f.create_dataset("time_fs", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))
        f.create_dataset(
            "cell", shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float64, chunks=(256, 3, 3)
        )
        names = ["positions", "velocities"]
        names += ["forces"] if with_forces else []
        names += ["descriptors"] if with_descriptors else []
        for name in names:
            width = 5 if name == "descriptors" else 3
            f.create_dataset(
                name,
                shape=(0, self.n, width),
                maxshape=(None, self.n, width),
                dtype=DTYPES[name],
                chunks=(1, self.n, width),
            )
        self.names = names
        if with_energies:  # (F, N) per-atom and (F, 6) global
            for name, width, dtype in (("energies", self.n, np.float32), ("virial", 6, np.float64)):
                f.create_dataset(
                    name, shape=(0, width), maxshape=(None, width), dtype=dtype, chunks=(1, width)
                )
            self.names = [*names, "energies", "virial"]
        self.thermo_names = tuple(thermo_names)
        for name in self.thermo_names:
            f.create_dataset(
                f"thermo/{name}", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,)
            )
        self.count = 0

    def append(self, frame: dict[str, Any]) -> None:
        """Add one frame: keys ``time_fs``, ``cell``, ``positions``, ``velocities`` and, when
        the file has them, ``forces``, ``descriptors``, ``energies``, ``virial``, ``thermo``
        (dict)."""
        k = self.count
        f = self.f
        for name in ("time_fs", "cell", *self.names):
            f[name].resize(k + 1, axis=0)
        f["time_fs"][k] = frame["time_fs"]
        f["cell"][k] = frame["cell"]
        for name in self.names:
            f[name][k] = frame[name]
        for name in self.thermo_names:
            ds = f[f"thermo/{name}"]
            ds.resize(k + 1, axis=0)
            ds[k] = frame["thermo"][name]
        self.count += 1

    def finish(self) -> Path:
        self.f.attrs["n_frames"] = self.count
        self.f.close()
        os.replace(self.partial, self.path)
        return self.path

    def abort(self) -> None:
        try:
            self.f.close()
        finally:
            self.partial.unlink(missing_ok=True)


class Trajectory:
    """Lazy read access to one trajectory file; opens on first use, re-opens after fork."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.exists():
            raise FileNotFoundError(f"trajectory file {self.path} does not exist")
        self._file = None
        self._pid = None
        with h5py.File(self.path, "r") as f:
            self._validate(f)
            self.temperature_K = float(f.attrs["temperature_K"])
            self.frame_interval_fs = float(f.attrs["frame_interval_fs"])
            self.n_frames = int(f["positions"].shape[0])
            self.n_atoms = int(f["positions"].shape[1])
            self.species = f["species"][()].astype(np.int64)
            self.masses = f["masses"][()].astype(np.float64)
            self.time_fs = f["time_fs"][()]
            self.has_forces = "forces" in f
            self.has_descriptors = "descriptors" in f
            self.thermo_names = tuple(f["thermo"].keys()) if "thermo" in f else ()

    def _validate(self, f: h5py.File) -> None:
        where = f"trajectory file {self.path}"
        if f.attrs.get("format") != FORMAT:
            raise ValueError(
                f"{where}: attribute 'format' is {f.attrs.get('format')!r}; expected {FORMAT!r}"
            )
        for name in ("species", "masses", "time_fs", "cell", "positions", "velocities"):
            if name not in f:
                raise ValueError(f"{where}: missing dataset '{name}'")
        n_frames, n_atoms = f["positions"].shape[:2]
        if f["velocities"].shape != (n_frames, n_atoms, 3):
            raise ValueError(
                f"{where}: field 'velocities' has shape {f['velocities'].shape}; "
                f"expected {(n_frames, n_atoms, 3)}"
            )
        t = f["time_fs"][()]
        if len(t) != n_frames:
            raise ValueError(f"{where}: field 'time_fs' has {len(t)} entries; expected {n_frames}")
        if not np.isfinite(t).all():
            # NaN compares false with everything, so the ordering test below would pass it.
            bad = int(np.argmax(~np.isfinite(t)))
            raise ValueError(
                f"{where}: field 'time_fs' is {t[bad]} at frame {bad}; expected finite values"
            )
        if n_frames > 1 and np.any(np.diff(t) <= 0):
            bad = int(np.argmax(np.diff(t) <= 0))
            raise ValueError(
                f"{where}: field 'time_fs' must increase strictly; frame {bad + 1} "
                f"has {t[bad + 1]} fs after {t[bad]} fs"
            )

    @property
    def file(self) -> h5py.File:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file

    def frame(self, t: int, fields=("positions", "velocities", "forces", "descriptors")):
        """Arrays of frame ``t`` (only the requested fields that the file has) and its cell.

        ``cell`` (3, 3) Å, ``positions`` (N, 3) Å, ``velocities`` (N, 3) Å/ps, ``forces``
        (N, 3) eV/Å, ``descriptors`` (N, 5), ``time_fs``. Raises ``ValueError`` naming the
        file, field and frame when a float field holds NaN or inf: a blown-up frame would
        otherwise poison normalisation statistics and losses without a trace.
        """
        f = self.file
        out = {"cell": f["cell"][t], "time_fs": float(self.time_fs[t])}
        for name in fields:
            if name in f:
                out[name] = f[name][t]
        for name in FINITE:
            if name in out:
                self._check_finite(name, out[name], t)
        return out

    def _check_finite(self, name: str, values: np.ndarray, t: int) -> None:
        problem = non_finite(name, values)
        if problem is not None:
            raise ValueError(
                f"trajectory file {self.path}: field '{name}' of frame {t} has {problem}; "
                "expected finite values"
            )

    def read(self, name: str, frames=slice(None)) -> np.ndarray:
        """Field ``name`` for ``frames`` (index, slice or index array), as stored; per-frame
        float fields are checked for finiteness like :meth:`frame`."""
        values = self.file[name][frames]
        if name in FINITE:
            ids = np.arange(self.n_frames)[frames]
            if np.ndim(ids) == 0:
                self._check_finite(name, values, int(ids))
            elif not np.isfinite(values).all():
                bad = (~np.isfinite(values)).reshape(len(ids), -1).any(axis=1)
                k = int(np.argmax(bad))
                self._check_finite(name, values[k], int(ids[k]))
        return values

    def thermo(self, name: str) -> np.ndarray:
        return self.file[f"thermo/{name}"][()]

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            self._file.close()
        self._file = None

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_file"] = None
        state["_pid"] = None
        return state


def write_index(root: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``dataset.json`` atomically."""
    root = Path(root)
    path = root / INDEX
    tmp = path.with_name(INDEX + PARTIAL)
    tmp.write_text(json.dumps({"format": FORMAT, **meta}, indent=2, default=str))
    os.replace(tmp, path)
    return path


def read_index(root: str | Path) -> dict[str, Any]:
    """``dataset.json`` of the folder ``root``, checked (JSON object, format, trajectories);
    every error names the file."""
    root = Path(root)
    path = root / INDEX
    if not root.exists():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if not path.exists():
        raise FileNotFoundError(
            f"dataset folder {root}: no {INDEX}; expected a folder written by "
            "'equignnmd generate' or 'equignnmd convert'"
        )
    expected = (
        f"expected the dataset index, a JSON object with 'format' = {FORMAT!r} and a list "
        "'trajectories', as 'equignnmd generate' or 'equignnmd convert' write it"
    )
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
            f"{expected}"
        ) from None
    if not isinstance(meta, dict):
        raise ValueError(f"{path}: holds a JSON {type(meta).__name__}; {expected}")
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: field 'format' is {meta.get('format')!r}; expected {FORMAT!r}")
    if not isinstance(meta.get("trajectories"), list) or not meta["trajectories"]:
        raise ValueError(f"{path}: field 'trajectories' must be a non-empty list")
    return meta


def held_out_files(meta: dict[str, Any]) -> set[str]:
    """The trajectory files of a dataset index ``meta`` that are held out of training: an
    entry's own ``test`` flag (a held-out facet at a trained temperature), or a temperature
    listed in ``test_temperatures_K``."""
    held = {float(t) for t in meta.get("test_temperatures_K", [])}
    return {
        t["file"]
        for t in meta["trajectories"]
        if t.get("test") or float(t.get("temperature_K", -1.0)) in held
    }


def open_trajectories(root: str | Path) -> list[Trajectory]:
    root = Path(root)
    meta = read_index(root)
    return [Trajectory(root / t["file"]) for t in meta["trajectories"]]


def dataset_frame(root, frame: int, temperature_K: float | None = None):
    """Frame ``frame`` of a dataset's trajectory at ``temperature_K`` (default: the first) as
    ``(ase.Atoms with velocities in ASE units, the trajectory's temperature K)``."""
    import ase

    from ..units import velocity_to_ase

    trajs = open_trajectories(root)
    if temperature_K is not None:
        trajs = [t for t in trajs if abs(t.temperature_K - temperature_K) < 1e-6]
        if not trajs:
            raise ValueError(f"dataset {root}: no trajectory at {temperature_K:g} K")
    tr = trajs[0]
    if not -tr.n_frames <= frame < tr.n_frames:
        raise ValueError(
            f"trajectory file {tr.path}: frame {frame} out of range 0..{tr.n_frames - 1}"
        )
    f = tr.frame(frame, fields=("positions", "velocities"))
    atoms = ase.Atoms(
        numbers=tr.species, positions=f["positions"], cell=f["cell"], pbc=True, masses=tr.masses
    )
    atoms.set_velocities(velocity_to_ase(f["velocities"].astype(float)))
    return atoms, tr.temperature_K
