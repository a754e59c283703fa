"""``equignnmd convert``: bring LAMMPS dumps and ASE trajectories into the dataset format.

Every input file becomes one trajectory (one HDF5 file, see :mod:`equignnmd.data.format`) in
the output folder, named from its temperature and the input's name (``T0300K_run1.h5``);
``dataset.json`` is written last, with provenance (source files and their SHA-256, the
command line, units, how positions were unwrapped and where the temperature came from).

Inputs
------
**LAMMPS text dumps** (``dump custom`` / ``dump atom``, optionally ``.gz``), recognised by
their first line starting with ``ITEM:``. Units are assumed to be LAMMPS ``metal`` (Å, ps,
velocities Å/ps, forces eV/Å); a dump that says otherwise (``ITEM: UNITS``) is refused.
Columns may come in any order; per frame the whole ``ITEM: ATOMS`` block is parsed at once by
NumPy (no per-atom Python loop):

* ``id`` (optional): atoms are sorted by id in every frame (else kept in file order);
* ``type`` + the ``species`` argument, or ``element``: the chemical species;
* positions, first match wins: ``xu yu zu`` (unwrapped), ``xsu ysu zsu`` (scaled unwrapped),
  ``x y z`` + ``ix iy iz``, ``xs ys zs`` + ``ix iy iz`` (unwrapped with the image flags),
  ``x y z`` or ``xs ys zs`` alone (unwrapped by minimum-image continuity between consecutive
  frames, which the metadata records);
* ``vx vy vz`` (required), ``fx fy fz`` (optional), ``mass`` (optional).

Boxes: ``ITEM: BOX BOUNDS pp pp pp`` (orthogonal), ``ITEM: BOX BOUNDS xy xz yz pp pp pp``
(restricted triclinic; the bounding box and tilts are turned into lattice vectors as in the
LAMMPS "Howto triclinic" page) and ``ITEM: BOX BOUNDS abc origin pp pp pp`` (general
triclinic). Frame times are the ``TIMESTEP`` numbers × ``timestep_fs`` (required, unless the
dump carries ``ITEM: TIME``, in ps).

**ASE-readable trajectories** (extxyz, ``.traj``, anything ``ase.io.iread`` reads) that carry
velocities (``momenta``). Positions, wrapped or not, are unwrapped by minimum-image continuity;
velocities are converted from ASE units to Å/ps; times come from ``atoms.info`` (``time_fs``
in fs, ``time_ps`` in ps, ``time`` taken as fs), else frame index × ``frame_interval_fs`` (or
× ``timestep_fs``).

Temperature (a label of the trajectory): the ``temperature_K`` argument, else
``atoms.info['temperature_K']`` (ASE), else the mean kinetic temperature of the file
(:func:`equignnmd.physics.kinetic_temperature`, 3N − 3 degrees of freedom). A given label
more than 20 % (:data:`LABEL_LIMIT`) from that measurement is refused (``ValueError``) unless
``allow_temperature_mismatch``; one more than 5 % (:data:`LABEL_TOLERANCE`) off, or an allowed
one, is a ``UserWarning``, kept in the trajectory's ``dataset.json`` entry as
``temperature_warning``. Masses: ``masses_amu``, else a dump's ``mass`` column or the ASE
file's masses, else :data:`ase.data.atomic_masses` of the species.

Velocity units are checked against the motion (unless ``check_velocities=False``): over
consecutive frames at most :data:`VELOCITY_CHECK_MAX_FS` apart, the finite-difference velocity
Δr/Δt of the unwrapped positions must be the mean velocity of the two frames within a factor
:data:`VELOCITY_FACTOR_LIMIT`; a file outside that is refused, naming the units its velocities
look like (Å/fs of LAMMPS ``units real``, ...). Frames further apart cannot be checked this
way; the ``dataset.json`` entry says so (``velocity_check``, ``velocity_factor``).

Frames must be evenly spaced in time (that spacing is ``frame_interval_fs``), strictly
increasing, keep the same atoms, and hold only finite numbers; every error names the file, the
field and what was expected, and a failed conversion leaves no file behind and no output
folder it created. Every input is read and checked before any trajectory gets its final name
(until then it is a ``.partial`` file) and before ``dataset.json`` is written. Minimum-image
continuity assumes no atom moves half a box between two frames (true for any sensible MD
output).
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import units
from ..outputs import claim_output
from ..provenance import file_sha256
from .format import PARTIAL, TrajectoryWriter, trajectory_name, write_index

UNITS = "metal (Å, ps, eV, amu, K; velocities Å/ps; times in fs)"
THERMO = ("temperature_K", "ke_eV", "volume_A3")
_POSITION_SETS = (  # (columns, scaled, unwrapped, uses image flags if present)
    (("xu", "yu", "zu"), False, True),
    (("xsu", "ysu", "zsu"), True, True),
    (("x", "y", "z"), False, False),
    (("xs", "ys", "zs"), True, False),
)
_STRING_COLUMNS = ("element",)
_NUMERIC_COLUMNS = {"id", "type", "mass", "vx", "vy", "vz", "fx", "fy", "fz", "ix", "iy", "iz"}
_NUMERIC_COLUMNS |= {c for cols, _, _ in _POSITION_SETS for c in cols}


@dataclass
class _Frame:
    """One frame as read from a file, before unwrapping and checks."""

    label: str  # "frame 3 (TIMESTEP 15)"
    time_fs: float
    cell: np.ndarray  # (3, 3) rows = lattice vectors
    positions: np.ndarray  # (N, 3) Å, unwrapped if ``unwrapped``
    unwrapped: bool
    velocities: np.ndarray  # (N, 3) Å/ps
    forces: np.ndarray | None
    species: np.ndarray  # (N,) atomic numbers
    masses: np.ndarray | None  # (N,) amu from the file, if it has them
    pbc: np.ndarray  # (3,) bool
    temperature_K: float | None = None  # from the file (ASE info)


# ------------------------------------------------------------------------------ species / mass
def _parse_species(species: int | str | Sequence | None) -> list[int] | None:
    """``species`` argument → atomic number of LAMMPS type 1, 2, ... (one value: every type)."""
    if species is None:
        return None
    from ase.data import atomic_numbers, chemical_symbols

    if isinstance(species, str):
        items: list[Any] = [s.strip() for s in species.split(",") if s.strip()]
    elif isinstance(species, (int, np.integer)):
        items = [int(species)]
    else:
        items = list(species)
    out = []
    for item in items:
        z = None
        if isinstance(item, (int, np.integer)) or (isinstance(item, str) and item.isdigit()):
            z = int(item)
            z = z if 0 < z < len(chemical_symbols) else None
        elif isinstance(item, str):
            z = atomic_numbers.get(item) or atomic_numbers.get(item.capitalize())
        if not z:
            raise ValueError(
                f"argument 'species' = {species!r}: {item!r} is not a known element; expected "
                "an element symbol or atomic number (comma-separated for LAMMPS types 1, 2, ...)"
            )
        out.append(z)
    if not out:
        raise ValueError(f"argument 'species' = {species!r}: expected an element")
    return out


def _elements_to_numbers(symbols: np.ndarray, where: str) -> np.ndarray:
    from ase.data import atomic_numbers

    unique, inverse = np.unique(symbols, return_inverse=True)
    numbers = []
    for s in unique:
        z = atomic_numbers.get(str(s))
        if not z:
            raise ValueError(
                f"{where}: column 'element' has {str(s)!r}; expected an element symbol"
            )
        numbers.append(z)
    return np.asarray(numbers, np.int64)[inverse.reshape(-1)]


def _types_to_numbers(types: np.ndarray, species: list[int] | None, where: str) -> np.ndarray:
    if species is None:
        raise ValueError(
            f"{where}: column 'type' gives LAMMPS atom types but not the element; expected the "
            "'species' argument (--species Al, or 'Al,Cu' for types 1, 2) or an 'element' column"
        )
    t = types.astype(np.int64)
    if len(species) == 1:
        return np.full(len(t), species[0], np.int64)
    if t.min() < 1 or t.max() > len(species):
        raise ValueError(
            f"{where}: column 'type' has types {int(t.min())}..{int(t.max())}; argument "
            f"'species' names {len(species)} types ({species})"
        )
    return np.asarray(species, np.int64)[t - 1]


# ------------------------------------------------------------------------------ LAMMPS dumps
def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt")
    return open(path)


def _is_dump(path: Path) -> bool:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            head = f.read(64)
    except OSError:
        return False
    return head.lstrip().startswith(b"ITEM:")


def _box(flags: list[str], rows: np.ndarray, where: str):
    """``ITEM: BOX BOUNDS`` → (cell rows, origin, pbc)."""
    bounds = [f for f in flags if f not in ("xy", "xz", "yz", "abc", "origin")]
    pbc = np.array([b == "pp" for b in bounds] if len(bounds) == 3 else [True] * 3)
    if "abc" in flags:  # general triclinic: a, b, c and the origin
        if rows.shape != (3, 4):
            raise ValueError(f"{where}: 'BOX BOUNDS abc origin' expects 3 lines of 4 numbers")
        return rows[:, :3].copy(), rows[:, 3].copy(), pbc
    if "xy" in flags:
        if rows.shape != (3, 3):
            raise ValueError(f"{where}: 'BOX BOUNDS xy xz yz' expects 3 lines of 3 numbers")
        (xlo_b, xhi_b, xy), (ylo_b, yhi_b, xz), (zlo_b, zhi_b, yz) = rows
        xlo = xlo_b - min(0.0, xy, xz, xy + xz)
        xhi = xhi_b - max(0.0, xy, xz, xy + xz)
        ylo = ylo_b - min(0.0, yz)
        yhi = yhi_b - max(0.0, yz)
        cell = np.array([[xhi - xlo, 0, 0], [xy, yhi - ylo, 0], [xz, yz, zhi_b - zlo_b]], float)
        return cell, np.array([xlo, ylo, zlo_b]), pbc
    if rows.shape[0] != 3 or rows.shape[1] < 2:
        raise ValueError(f"{where}: 'BOX BOUNDS' expects 3 lines 'lo hi'")
    return np.diag(rows[:, 1] - rows[:, 0]), rows[:, 0].copy(), pbc


def _parse_atoms(block: str, n: int, cols: list[str], where: str) -> tuple[np.ndarray, dict]:
    """The ``ITEM: ATOMS`` block → (n, ncol) float array (+ string columns), vectorised."""
    ncol = len(cols)
    if not any(c in _STRING_COLUMNS for c in cols):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                data = np.fromstring(block, sep=" ")
            if data.size == n * ncol:
                return data.reshape(n, ncol), {}
        except (ValueError, DeprecationWarning):
            pass
    tokens = np.array(block.split())
    if tokens.size != n * ncol:
        raise ValueError(
            f"{where}: section 'ITEM: ATOMS' has {tokens.size} values; expected {n} atoms × "
            f"{ncol} columns ({' '.join(cols)}); the file is truncated or malformed"
        )
    tokens = tokens.reshape(n, ncol)
    data = np.full((n, ncol), np.nan)
    strings = {}
    for i, c in enumerate(cols):
        if c in _STRING_COLUMNS:
            strings[c] = tokens[:, i]
            continue
        try:
            data[:, i] = tokens[:, i].astype(np.float64)
        except ValueError:
            if c in _NUMERIC_COLUMNS:
                raise ValueError(
                    f"{where}: column '{c}' holds non-numbers; expected numbers"
                ) from None
    return data, strings


def _read_dump(
    path: Path, timestep_fs: float | None, species: list[int] | None, info: dict
) -> Iterator[_Frame]:
    """Frames of a LAMMPS text dump; fills ``info`` (columns, unwrapping, time source)."""
    name = f"LAMMPS dump {path}"
    ids0 = None
    last = "none (no complete frame)"  # the last complete frame, for messages on truncation
    with _open_text(path) as f:

        def value_line(where: str, item: str, expected: str) -> str:
            """The line after a header ``item``, or an error if the file ends there."""
            line = f.readline()
            if not line.strip():
                raise ValueError(
                    f"{where}: the file ends right after {item!r}; expected {expected} on the "
                    f"next line (the dump is truncated; last complete frame: {last})"
                )
            return line

        for k in itertools.count():
            line = f.readline()
            while line and not line.strip():
                line = f.readline()
            if not line:
                return
            where = f"{name}: frame {k}"
            step = n = flags = rows = cols = time_ps = None
            while True:
                item = line.strip()
                if not item.startswith("ITEM:"):
                    raise ValueError(f"{where}: line {item[:40]!r}; expected an 'ITEM:' header")
                head = item[5:].strip()
                try:
                    if head == "UNITS":
                        style = f.readline().strip()
                        if style != "metal":
                            raise ValueError(
                                f"{where}: field 'UNITS' is {style!r}; expected 'metal' "
                                "(Å, ps, eV): re-run LAMMPS with 'units metal'"
                            )
                    elif head == "TIME":
                        time_ps = float(value_line(where, item, "the time in ps"))
                    elif head == "TIMESTEP":
                        text = value_line(where, item, "the step number (an integer)").strip()
                        if not re.fullmatch(r"[+-]?\d+", text):
                            raise ValueError(
                                f"{where}: section {item!r} holds {text[:40]!r}; expected the "
                                "step number (an integer)"
                            )
                        step = int(text)
                        where = f"{name}: frame {k} (TIMESTEP {step})"
                    elif head.startswith("NUMBER OF ATOMS"):
                        n = int(value_line(where, item, "the number of atoms"))
                    elif head.startswith("BOX BOUNDS"):
                        flags = head.split()[2:]
                        rows = np.array([f.readline().split() for _ in range(3)], dtype=float)
                    elif head.startswith("ATOMS"):
                        cols = head.split()[1:]
                        break
                    else:
                        raise ValueError(f"{where}: unknown section {item!r}")
                except ValueError as err:
                    if str(err).startswith(where):
                        raise
                    raise ValueError(f"{where}: section {item!r} is malformed ({err})") from None
                line = f.readline()
                if not line:
                    raise ValueError(
                        f"{where}: the file ends after {item!r}, inside the frame's header; "
                        "expected the rest of the header (ITEM: NUMBER OF ATOMS, BOX BOUNDS, "
                        f"ATOMS) and the atom lines (the dump is truncated; last complete "
                        f"frame: {last})"
                    )
            for field, value in (("TIMESTEP", step), ("NUMBER OF ATOMS", n), ("BOX BOUNDS", rows)):
                if value is None:
                    raise ValueError(f"{where}: no 'ITEM: {field}' section before 'ITEM: ATOMS'")
            where = f"{name}: frame {k} (TIMESTEP {step})"
            if n <= 0:
                raise ValueError(f"{where}: field 'NUMBER OF ATOMS' is {n}; expected > 0")
            cell, origin, pbc = _box(flags, rows, where)
            data, strings = _parse_atoms("".join(itertools.islice(f, n)), n, cols, where)
            col = {c: i for i, c in enumerate(cols)}

            def get(names, col=col, data=data):
                return data[:, [col[c] for c in names]] if all(c in col for c in names) else None

            if get(("vx", "vy", "vz")) is None:
                raise ValueError(
                    f"{where}: fields 'vx vy vz' (velocities) are missing from the columns "
                    f"'{' '.join(cols)}'; expected a 'dump custom' with vx vy vz"
                )
            pos_set = next((s for s in _POSITION_SETS if all(c in col for c in s[0])), None)
            if pos_set is None:
                raise ValueError(
                    f"{where}: no positions among the columns '{' '.join(cols)}'; expected "
                    "'x y z', 'xu yu zu', 'xs ys zs' or 'xsu ysu zsu' (field 'positions')"
                )
            names, scaled, unwrapped = pos_set
            pos = get(names)
            image = None if unwrapped else get(("ix", "iy", "iz"))
            if scaled:
                pos = origin + (pos if image is None else pos + image) @ cell
            elif image is not None:
                pos = pos + image @ cell
            if "element" in strings:
                numbers = _elements_to_numbers(strings["element"], where)
            elif "type" in col:
                numbers = _types_to_numbers(data[:, col["type"]], species, where)
            else:
                raise ValueError(
                    f"{where}: neither column 'type' nor 'element' is present; expected one"
                )
            if time_ps is not None and timestep_fs is None:
                time_fs, info["time_source"] = time_ps * units.FS_PER_PS, "ITEM: TIME (ps)"
            elif timestep_fs is None:
                raise ValueError(
                    f"{name}: field 'timestep_fs' is required for LAMMPS dumps (the TIMESTEP "
                    "numbers are steps); expected the MD timestep in fs (--timestep-fs)"
                )
            else:
                time_fs = step * timestep_fs
                info["time_source"] = f"TIMESTEP × timestep_fs ({timestep_fs} fs)"
            frame = _Frame(
                label=f"frame {k} (TIMESTEP {step})",
                time_fs=time_fs,
                cell=cell,
                positions=pos,
                unwrapped=unwrapped or image is not None,
                velocities=get(("vx", "vy", "vz")),
                forces=get(("fx", "fy", "fz")),
                species=numbers,
                masses=data[:, col["mass"]] if "mass" in col else None,
                pbc=pbc,
            )
            if "id" in col:
                ids = data[:, col["id"]].astype(np.int64)
                order = np.argsort(ids, kind="stable")
                ids = ids[order]
                if ids0 is None:
                    if np.any(np.diff(ids) == 0):
                        dup = int(ids[np.argmax(np.diff(ids) == 0)])
                        raise ValueError(f"{where}: column 'id' repeats atom id {dup}")
                    ids0 = ids
                elif len(ids) == len(ids0) and not np.array_equal(ids, ids0):
                    raise ValueError(
                        f"{where}: column 'id' holds other atom ids than frame 0; expected the "
                        "same atoms in every frame"
                    )
                for field in ("positions", "velocities", "forces", "species", "masses"):
                    value = getattr(frame, field)
                    if value is not None:
                        setattr(frame, field, value[order])
            if k == 0:
                info["columns"] = cols
                info["positions_columns"] = " ".join(names)
                info["unwrapping"] = (
                    f"none needed ({' '.join(names)} are unwrapped)"
                    if unwrapped
                    else f"image flags ix iy iz with {' '.join(names)}"
                    if image is not None
                    else f"minimum-image continuity between consecutive frames ({' '.join(names)}"
                    " are wrapped and the dump has no image flags)"
                )
                info["atom_order"] = "sorted by id" if "id" in col else "file order (no id)"
            last = f"frame {k} (TIMESTEP {step})"
            yield frame


# ------------------------------------------------------------------------------ ASE files
def _read_ase(
    path: Path, timestep_fs: float | None, frame_interval_fs: float | None, info: dict
) -> Iterator[_Frame]:
    import ase.io

    name = f"ASE file {path}"
    try:
        frames = ase.io.iread(str(path), index=":")
        it = iter(frames)
        atoms = next(it)
    except StopIteration:
        raise ValueError(f"{name}: field 'frames' is empty; expected at least 2 frames") from None
    except Exception as err:
        raise ValueError(
            f"{name}: not a LAMMPS dump (first line 'ITEM: ...') and ASE cannot read it "
            f"({type(err).__name__}: {err}); expected a LAMMPS text dump or an ASE-readable "
            "trajectory with velocities (extxyz, .traj)"
        ) from None
    info["unwrapping"] = "minimum-image continuity between consecutive frames"
    info["atom_order"] = "file order"
    spacing = frame_interval_fs if frame_interval_fs is not None else timestep_fs
    for k in itertools.count():
        where = f"{name}: frame {k}"
        if "momenta" not in atoms.arrays:
            raise ValueError(
                f"{where}: field 'velocities' is missing (no 'momenta' array; has "
                f"{sorted(atoms.arrays)}); expected a trajectory with velocities"
            )
        cell = np.array(atoms.cell.array, dtype=np.float64)
        if abs(np.linalg.det(cell)) < 1e-9:
            raise ValueError(
                f"{where}: field 'cell' is {cell.tolist()}; expected a 3-D periodic box"
            )
        forces = None
        if atoms.calc is not None and "forces" in getattr(atoms.calc, "results", {}):
            forces = np.asarray(atoms.calc.results["forces"], np.float64)
        elif "forces" in atoms.arrays:
            forces = np.asarray(atoms.arrays["forces"], np.float64)
        t_info = atoms.info
        if "time_fs" in t_info:
            time_fs, source = float(t_info["time_fs"]), "atoms.info['time_fs'] (fs)"
        elif "time_ps" in t_info:
            time_fs, source = float(t_info["time_ps"]) * units.FS_PER_PS, "atoms.info['time_ps']"
        elif "time" in t_info:
            time_fs, source = float(t_info["time"]), "atoms.info['time'] (taken as fs)"
        elif spacing is not None:
            time_fs, source = k * spacing, f"frame index × {spacing} fs"
        else:
            raise ValueError(
                f"{where}: field 'time' is not in atoms.info (time_fs, time_ps or time); "
                "expected it there or the 'timestep_fs' / 'frame_interval_fs' argument "
                "(fs between frames)"
            )
        info.setdefault("time_source", source)
        temperature = t_info.get("temperature_K")
        yield _Frame(
            label=f"frame {k}",
            time_fs=time_fs,
            cell=cell,
            positions=np.array(atoms.positions, np.float64),
            unwrapped=False,
            velocities=units.velocity_from_ase(np.asarray(atoms.get_velocities(), np.float64)),
            forces=forces,
            species=np.array(atoms.numbers, np.int64),
            masses=np.array(atoms.arrays["masses"], np.float64)
            if "masses" in atoms.arrays
            else None,
            pbc=np.array(atoms.pbc, bool),
            temperature_K=None if temperature is None else float(temperature),
        )
        try:
            atoms = next(it)
        except StopIteration:
            return
        except Exception as err:
            raise ValueError(
                f"{name}: frame {k + 1} cannot be read ({type(err).__name__}: {err})"
            ) from None


# ------------------------------------------------------------------------------ one input
def _kinetic(masses: np.ndarray, v: np.ndarray) -> tuple[float, float]:
    """(kinetic energy eV, kinetic temperature K) of one frame (:mod:`equignnmd.analysis`)."""
    from .. import analysis

    v = v.astype(np.float64)
    return analysis.kinetic_energy(v, masses), analysis.kinetic_temperature(v, masses)


LABEL_TOLERANCE = 0.05
"""A temperature label further than this fraction from the measured mean kinetic temperature
of the file is warned about (and noted in ``dataset.json``)."""
LABEL_LIMIT = 0.20
"""... and further than this fraction it is refused, unless ``allow_temperature_mismatch``."""
VELOCITY_CHECK_MAX_FS = 5.0
"""Frames at most this far apart (fs) check the velocities against Δr/Δt; further apart the
motion between frames is no longer close enough to a straight line for the test."""
VELOCITY_FACTOR_LIMIT = 2.0
"""Δr/Δt must equal the velocities times a factor within [1/limit, limit]."""
_VELOCITY_UNITS = {  # Δr/Δt ≈ factor × v (v as read, in Å/ps) → what v looks like, per input kind
    "dump": (
        (units.FS_PER_PS, "Å/fs (LAMMPS 'units real')"),
        (21876.9, "Bohr per atomic time unit (LAMMPS 'units electron')"),
        (1 / units.ASE_VELOCITY_PER_A_PS, "ASE units (Å per 10.18 fs)"),
        (10.0, "nm/ps"),
        (0.01, "m/s (LAMMPS 'units si'; nm/ns of 'units nano')"),
        (1e-4, "cm/s (LAMMPS 'units cgs')"),
    ),
    # ASE files: units.velocity_from_ase has turned ASE units into Å/ps already
    "ASE": (
        (
            units.ASE_VELOCITY_PER_A_PS,
            "Å/ps written as ASE velocities (ASE's are Å/ps × "
            f"{units.ASE_VELOCITY_PER_A_PS:.5f}: equignnmd.units.velocity_to_ase)",
        ),
        (units.FS_PER_PS * units.ASE_VELOCITY_PER_A_PS, "Å/fs written as ASE velocities"),
    ),
}


def _label_off(label_K: float, measured_K: float, tolerance: float = LABEL_TOLERANCE) -> bool:
    """Whether a temperature label is further than ``tolerance`` (a fraction) from the measured
    kinetic temperature."""
    return measured_K > 0 and abs(label_K - measured_K) > tolerance * measured_K


def _velocity_factor(pos0, pos1, v0, v1, dt_fs: float) -> float:
    """Least-squares factor f with Δr/Δt ≈ f · v̄ over all atoms of one frame pair.

    ``pos0``, ``pos1``: (N, 3) unwrapped positions, Å; ``v0``, ``v1``: (N, 3) velocities as
    read (Å/ps if the file is right); ``dt_fs``: time between the frames. Δr/Δt is regressed on
    v̄ = (v0 + v1) / 2, not the reverse: files round positions to a fixed absolute precision
    (a few decimals of Å) and velocities to a relative one, so the rounding noise sits in
    Δr/Δt, where it averages out instead of pulling the factor towards 0.
    """
    fd = (pos1 - pos0) * (units.FS_PER_PS / dt_fs)  # Å/ps
    vbar = 0.5 * (v0 + v1)
    norm = float(np.sum(vbar * vbar))
    return float(np.sum(fd * vbar)) / norm if norm > 0 else math.inf


def _velocity_problem(name: str, kind: str, factor: float, pairs: int, dt_fs: float) -> str:
    """The error for velocities that disagree with the motion by ``factor`` (Δr/Δt ≈ f v̄)."""
    guesses = [
        (abs(math.log(factor / f)), text)
        for f, text in _VELOCITY_UNITS[kind]
        if factor > 0 and math.isfinite(factor)
    ]
    best = min(guesses, default=(math.inf, ""))
    if best[0] < math.log(1.5):
        likely = (
            f"The velocities look like {best[1]}, not Å/ps (LAMMPS 'units metal'), or the "
            "frame times are off by that factor (check timestep_fs / --timestep-fs)"
        )
    else:
        likely = (
            "No common velocity unit gives this factor: check the frame times (timestep_fs), "
            "which columns hold the velocities and that positions and velocities belong to "
            "the same atoms (a factor near 0 or negative: they do not follow each other)"
        )
    return (
        f"{name}: field 'velocities' disagrees with the motion of the atoms: over {pairs} "
        f"pair(s) of frames {dt_fs:g} fs apart, Δr/Δt of the unwrapped positions ≈ "
        f"{factor:.4g} × the velocities (median over the pairs); expected a factor 1 (within "
        f"{VELOCITY_FACTOR_LIMIT:g}×) for velocities in Å/ps. {likely}. "
        "To convert anyway: --skip-velocity-check (check_velocities=False)"
    )


def _stem(path: Path) -> str:
    name = path.name[:-3] if path.name.endswith(".gz") else path.name
    stem = Path(name).stem or "traj"
    return re.sub(r"[^A-Za-z0-9_-]+", "_", stem)


def _convert_one(
    path: Path,
    out: Path,
    provisional: str,
    *,
    timestep_fs: float | None,
    temperature_K: float | None,
    species: list[int] | None,
    masses_amu: float | None,
    frame_interval_fs: float | None,
    check_velocities: bool = True,
    allow_temperature_mismatch: bool = False,
) -> tuple[TrajectoryWriter, dict]:
    """Write ``path`` to ``out/provisional`` (still ``.partial``); return the open writer.

    Raises ``ValueError`` (the writer aborted) when the file is malformed, its velocities
    disagree with its motion (``check_velocities``) or its temperature label is more than
    :data:`LABEL_LIMIT` off (unless ``allow_temperature_mismatch``)."""
    info: dict[str, Any] = {}
    dump = _is_dump(path)
    if dump:
        fmt = "LAMMPS text dump (units metal)"
        frames = _read_dump(path, timestep_fs, species, info)
        name = f"LAMMPS dump {path}"
    else:
        fmt = "ASE"
        frames = _read_ase(path, timestep_fs, frame_interval_fs, info)
        name = f"ASE file {path}"
    writer = None
    try:
        n = times = spec = masses = None
        image = s_prev = prev = None
        temps, vmax, factors = [], 0.0, []  # factors: Δr/Δt ≈ f v̄ of each close frame pair
        for k, fr in enumerate(frames):
            where = f"{name}: {fr.label}"
            if k == 0:
                n = len(fr.species)
                spec = fr.species
                if np.any(spec <= 0):
                    raise ValueError(
                        f"{where}: field 'species' has atomic number 0 (unknown element); "
                        "expected known elements"
                    )
                if not dump and species is not None:
                    # an ASE file names its own elements: the argument may list them (any
                    # order, as for a dump's types) but must not leave one out
                    extra = sorted(set(spec.tolist()) - set(species))
                    if extra:
                        raise ValueError(
                            f"{where}: field 'species' holds {sorted(set(spec.tolist()))}; the "
                            f"'species' argument names {species}, not {extra}; expected every "
                            "element of the file among them"
                        )
                from ase.data import atomic_masses

                if masses_amu is not None:
                    if len(np.unique(spec)) > 1:
                        raise ValueError(
                            f"{where}: argument 'masses_amu' = {masses_amu} is one mass but the "
                            f"field 'species' has {np.unique(spec).tolist()}; expected one species"
                        )
                    masses = np.full(n, float(masses_amu))
                    info["masses"] = "argument masses_amu"
                elif fr.masses is not None:
                    masses, info["masses"] = fr.masses, "from the file"
                else:
                    masses, info["masses"] = atomic_masses[spec], "ase.data.atomic_masses"
                if not np.all(np.isfinite(masses) & (masses > 0)):
                    raise ValueError(
                        f"{where}: field 'masses' ({info['masses']}) has non-positive or "
                        "non-finite values; expected masses in amu > 0"
                    )
                times = [fr.time_fs]
                info["has_forces"] = fr.forces is not None
                writer = TrajectoryWriter(
                    out / provisional,
                    species=spec,
                    masses=masses,
                    temperature_K=temperature_K if temperature_K is not None else 0.0,
                    frame_interval_fs=frame_interval_fs or 0.0,
                    with_forces=fr.forces is not None,
                    with_descriptors=False,
                    thermo_names=THERMO,
                    source=f"equignnmd convert of {fmt} {path.name}",
                )
            else:
                if len(fr.species) != n:
                    field = "NUMBER OF ATOMS" if dump else "atoms"
                    raise ValueError(
                        f"{where}: field '{field}' is {len(fr.species)}; expected {n} as in "
                        "frame 0 (the atom count must not change)"
                    )
                if not np.array_equal(fr.species, spec):
                    raise ValueError(
                        f"{where}: field 'species' differs from frame 0; expected the same atoms"
                    )
                if (fr.forces is not None) != info["has_forces"]:
                    state = "present" if fr.forces is not None else "missing"
                    raise ValueError(
                        f"{where}: field 'forces' is {state} unlike frame 0; expected every "
                        "frame to have forces or none"
                    )
                dt, t_prev = fr.time_fs - times[-1], times[-1]
                tfield = "TIMESTEP" if dump else "time"
                if not dt > 0:
                    raise ValueError(
                        f"{where}: field '{tfield}' gives {fr.time_fs} fs after {t_prev} fs; "
                        "expected strictly increasing times (duplicate or out-of-order frame)"
                    )
                interval = times[1] - times[0] if k > 1 else dt
                if k == 1 and frame_interval_fs is not None:
                    if abs(dt - frame_interval_fs) > 1e-6 * frame_interval_fs:
                        raise ValueError(
                            f"{where}: argument 'frame_interval_fs' = {frame_interval_fs} but "
                            f"field '{tfield}' gives frames {dt} fs apart"
                        )
                if abs(dt - interval) > 1e-5 * interval + 1e-9:
                    raise ValueError(
                        f"{where}: field '{tfield}' gives {dt} fs since the previous frame; "
                        f"expected evenly spaced frames, {interval} fs apart (frame_interval_fs)"
                    )
                times.append(fr.time_fs)
            for field in ("positions", "velocities", "forces"):
                value = getattr(fr, field)
                if value is not None and not np.all(np.isfinite(value)):
                    atom = int(np.argmax(~np.all(np.isfinite(value), axis=1)))
                    raise ValueError(
                        f"{where}: field '{field}' has NaN or inf (atom index {atom}); "
                        "expected finite numbers"
                    )
            if not np.all(np.isfinite(fr.cell)):
                raise ValueError(f"{where}: field 'cell' has NaN or inf; expected finite numbers")
            pos = fr.positions
            if not fr.unwrapped:  # minimum-image continuity: track integer image counts
                s = np.linalg.solve(fr.cell.T, pos.T).T
                if image is None:
                    image = np.zeros_like(s)
                else:
                    jump = np.round(s - s_prev) * fr.pbc
                    image -= jump
                s_prev = s
                pos = pos + image @ fr.cell
            if k and dt <= VELOCITY_CHECK_MAX_FS * (1 + 1e-9):
                factors.append(_velocity_factor(prev[0], pos, prev[1], fr.velocities, dt))
            prev = pos, fr.velocities
            ke, temp = _kinetic(masses, fr.velocities)
            temps.append(temp)
            vmax = max(vmax, float(np.max(np.abs(fr.velocities))))
            frame = {
                "time_fs": fr.time_fs,
                "cell": fr.cell,
                "positions": pos,
                "velocities": fr.velocities,
                "thermo": {
                    "temperature_K": temp,
                    "ke_eV": ke,
                    "volume_A3": abs(float(np.linalg.det(fr.cell))),
                },
            }
            if fr.forces is not None:
                frame["forces"] = fr.forces
            writer.append(frame)
            if temperature_K is None and fr.temperature_K is not None:
                info.setdefault("file_temperature_K", fr.temperature_K)
        if writer is None or writer.count < 2:
            raise ValueError(
                f"{name}: field 'frames' has {0 if writer is None else writer.count} frame(s); "
                "expected at least 2 evenly spaced frames"
            )
        if vmax == 0.0:
            raise ValueError(
                f"{name}: field 'velocities' is zero in every frame; expected a trajectory with "
                "velocities"
            )
        if temperature_K is not None:
            temperature, t_source = float(temperature_K), "command line / argument"
        elif "file_temperature_K" in info:
            temperature = info.pop("file_temperature_K")
            t_source = "atoms.info['temperature_K']"
        else:
            temperature = float(np.mean(temps))
            t_source = (
                "mean kinetic temperature of the file (centre-of-mass motion removed, 3N-3 "
                "degrees of freedom)"
            )
        interval = times[1] - times[0]
        factor = float(np.median(factors)) if factors else None
        limit = VELOCITY_FACTOR_LIMIT
        if factor is None:
            check = (
                f"not possible: frames are {interval:g} fs apart; Δr/Δt measures the velocities "
                f"only for frames at most {VELOCITY_CHECK_MAX_FS:g} fs apart"
            )
        else:
            passed = 1 / limit <= factor <= limit
            if check_velocities and not passed:
                kind = "dump" if dump else "ASE"
                raise ValueError(_velocity_problem(name, kind, factor, len(factors), interval))
            check = (
                f"{'passed' if passed else 'failed'}: Δr/Δt ≈ {factor:.4g} × the velocities "
                f"(median over {len(factors)} frame pairs {interval:g} fs apart); expected 1 "
                f"within a factor {limit:g}"
            )
        if not check_velocities:
            check = f"not enforced (check_velocities=False); {check}"
        info.update(velocity_check=check, velocity_factor=factor)
        measured = float(np.mean(temps))
        if "kinetic" not in t_source and _label_off(temperature, measured):
            off = f"{100 * (temperature / measured - 1):+.0f} %"
            note = (
                f"{name}: temperature label {temperature:g} K ({t_source}) differs from the "
                f"measured mean kinetic temperature {measured:.1f} K by {off}; expected "
                f"them within {100 * LABEL_TOLERANCE:g} % (check the label, the velocity "
                "units and masses)"
            )
            if _label_off(temperature, measured, LABEL_LIMIT):
                if not allow_temperature_mismatch:
                    raise ValueError(
                        f"{name}: temperature label {temperature:g} K ({t_source}) differs "
                        f"from the measured mean kinetic temperature {measured:.1f} K by {off}; "
                        f"expected them within {100 * LABEL_LIMIT:g} % (check the label, the "
                        "velocity units and masses). To keep the label anyway: "
                        "--allow-temperature-mismatch (allow_temperature_mismatch=True)"
                    )
                note += "; kept by allow_temperature_mismatch"
            warnings.warn(note, UserWarning, stacklevel=3)
            info["temperature_warning"] = note
        writer.f.attrs["temperature_K"] = temperature
        writer.f.attrs["frame_interval_fs"] = interval
        info.update(
            format=fmt,
            temperature_K=temperature,
            temperature_source=t_source,
            mean_kinetic_temperature_K=measured,
            frame_interval_fs=interval,
            first_time_fs=times[0],
            atoms=n,
            frames=writer.count,
            species=sorted(set(spec.tolist())),
        )
        return writer, info
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    finally:
        frames.close()


# ------------------------------------------------------------------------------ public API
def convert(
    inputs: list[str | Path],
    output: str | Path,
    timestep_fs: float | None = None,
    temperature_K: float | list[float] | None = None,
    test_temperatures_K: Sequence[float] = (),
    species: int | str | None = None,
    masses_amu: float | None = None,
    frame_interval_fs: float | None = None,
    command_line: str = "",
    check_velocities: bool = True,
    allow_temperature_mismatch: bool = False,
    overwrite: bool = False,
) -> Path:
    """Convert LAMMPS dumps / ASE trajectories into a dataset folder; returns its path.

    ``timestep_fs``: MD timestep of a dump's TIMESTEP numbers (required for dumps without
    ``ITEM: TIME``); for ASE files without times, fs between frames when ``frame_interval_fs``
    is not given. ``temperature_K``: one value or one per input (default: file / kinetic).
    ``test_temperatures_K``: trajectories at these temperatures are marked ``test``.
    ``species``: element of LAMMPS types (symbol or atomic number; ``"Al,Cu"`` for types 1, 2;
    one value for every type); ASE files carry their own, which must then be among it. Every
    atom keeps its own species and mass (several species are written as they are).
    ``masses_amu``: mass of every atom (default from the file or the element).
    ``frame_interval_fs``: expected spacing of the frames (checked), see also ``timestep_fs``.
    ``check_velocities``: refuse files whose velocities (Å/ps) disagree with Δr/Δt of frames
    ≤ 5 fs apart by more than a factor 2 (False: convert them anyway, noted in dataset.json).
    ``allow_temperature_mismatch``: keep a temperature label more than 20 % off the measured
    kinetic temperature (a warning and a note) instead of refusing the file.
    ``overwrite``: write into an ``output`` folder that holds anything (else refused first,
    :func:`equignnmd.outputs.claim_output`).

    Every input is read and checked before any trajectory is given its final name and before
    ``dataset.json`` is written; on failure nothing written is left behind.
    """
    from .._version import __version__

    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    paths = [Path(p) for p in inputs]
    if not paths:
        raise ValueError("argument 'inputs' is empty; expected at least one file")
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"input file {p} does not exist (field 'inputs')")
        if not p.is_file():
            raise ValueError(f"input file {p} is not a file (field 'inputs'); expected a file")
    if temperature_K is None or isinstance(temperature_K, (int, float)):
        temps = [temperature_K] * len(paths)
    else:
        temps = [float(t) for t in temperature_K]
        if len(temps) == 1:
            temps = temps * len(paths)
        if len(temps) != len(paths):
            raise ValueError(
                f"argument 'temperature_K' has {len(temps)} values; expected 1 or one per input "
                f"({len(paths)})"
            )
    for t in temps:
        if t is not None and not (math.isfinite(t) and t >= 0):
            raise ValueError(f"argument 'temperature_K' = {t}; expected a finite value ≥ 0 K")
    for arg, value in (("timestep_fs", timestep_fs), ("frame_interval_fs", frame_interval_fs)):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ValueError(f"argument '{arg}' = {value}; expected a positive number of fs")
    if masses_amu is not None and not (math.isfinite(masses_amu) and masses_amu > 0):
        raise ValueError(f"argument 'masses_amu' = {masses_amu}; expected a positive mass in amu")
    species_list = _parse_species(species)
    test = [float(t) for t in test_temperatures_K]
    out = claim_output(output, overwrite=overwrite, what="dataset folder", option="output")
    created = [d for d in (out, *out.parents) if not d.exists()]  # removed again on failure
    out.mkdir(parents=True, exist_ok=True)

    entries, used, writers, done = [], set(), [], []
    try:
        for k, (path, temp) in enumerate(zip(paths, temps)):
            provisional = f".convert-{k}-{_stem(path)}.h5"
            writer, info = _convert_one(
                path,
                out,
                provisional,
                timestep_fs=timestep_fs,
                temperature_K=temp,
                species=species_list,
                masses_amu=masses_amu,
                frame_interval_fs=frame_interval_fs,
                check_velocities=check_velocities,
                allow_temperature_mismatch=allow_temperature_mismatch,
            )
            writers.append(writer)
            name = trajectory_name(info["temperature_K"], f"_{_stem(path)}")
            base, i = name, 2
            while name in used:
                name = base.replace(".h5", f"_{i}.h5")
                i += 1
            used.add(name)
            writer.path = out / name
            temperature = info.pop("temperature_K")
            entries.append(
                {
                    "file": name,
                    "temperature_K": temperature,
                    "atoms": info.pop("atoms"),
                    "frames": info.pop("frames"),
                    "test": any(abs(temperature - t) < 1e-6 for t in test),
                    "source": str(path.resolve()),
                    "source_sha256": file_sha256(path),
                    **info,
                }
            )
        for writer in writers:  # every input passed: only now the final names
            done.append(writer.finish())
    except BaseException:
        for writer in writers[len(done) :]:
            writer.abort()
        for p in done:  # never leave half a dataset that looks finished
            p.unlink(missing_ok=True)
        for p in out.glob(f".convert-*{PARTIAL}"):
            p.unlink(missing_ok=True)
        for folder in created:  # deepest first; a folder that holds something else stays
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    intervals = sorted({e["frame_interval_fs"] for e in entries})
    meta = {
        "units": UNITS,
        "created_by": f"equignnmd {__version__} convert",
        "package_version": __version__,
        "command_line": command_line,
        "sources": [{"path": e["source"], "sha256": e["source_sha256"]} for e in entries],
        "timestep_fs": timestep_fs,
        "frame_interval_fs": intervals[0] if len(intervals) == 1 else intervals,
        "temperatures_K": [e["temperature_K"] for e in entries],
        "test_temperatures_K": test,
        "conventions": (
            "LAMMPS dumps are read as units metal (velocities Å/ps, forces eV/Å); ASE velocities "
            "are converted to Å/ps; positions are unwrapped; thermo/* are computed from the "
            "velocities, masses and cell (temperature with 3N-3 degrees of freedom)"
        ),
        "trajectories": entries,
    }
    write_index(out, meta)
    return out
