"""Nothing is overwritten by surprise: where a command writes, it first claims the place.

:func:`claim_output` is called by every command that writes (``generate``, ``convert``,
``train``, ``rollout``, ``evaluate``, ``fidelity``, ``energy-head``, ``lammps``, ``baselines
--json``) before any work starts: an output folder that holds anything, or an output file
that exists, is refused with an :class:`OutputExistsError` naming the place, what is in it
and the flags that accept it (``--overwrite``; ``--resume`` where the command can continue
what is there). Only the standard library: the CLI calls it before torch is imported.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["OutputExistsError", "claim_output", "describe_contents"]


class OutputExistsError(FileExistsError):
    """An output folder is not empty, or an output file exists (the message says which, what
    it holds and the flags that accept it)."""


def _size_text(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:.1f} {unit}"
    return f"{n_bytes} B"


def describe_contents(path: str | os.PathLike, shown: int = 4) -> str:
    """``"thermo.csv, replica_000.extxyz, rollout.json (3 entries, 11.8 MB)"``: the first
    ``shown`` names of a folder (largest first) with the count and total size; for a file,
    its size."""
    path = Path(path)
    if not path.is_dir():
        return _size_text(path.stat().st_size)
    entries = []
    total = 0
    for entry in path.iterdir():
        try:
            size = (
                sum(f.stat().st_size for f in entry.rglob("*") if f.is_file())
                if entry.is_dir()
                else entry.stat().st_size
            )
        except OSError:  # a file that went away while we looked
            size = 0
        total += size
        entries.append((size, entry.name + ("/" if entry.is_dir() else "")))
    entries.sort(key=lambda e: (-e[0], e[1]))
    names = ", ".join(name for _, name in entries[:shown])
    more = ", …" if len(entries) > shown else ""
    return f"{names}{more} ({len(entries)} entries, {_size_text(total)})"


def claim_output(
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    resume: bool | None = None,
    what: str = "output folder",
    option: str = "--out",
) -> Path:
    """Refuse a non-empty output place unless the caller accepts it; returns ``Path(path)``.

    Args:
        path: the folder (or, with ``what`` naming a file, the file) the command will write.
        overwrite: the user gave ``--overwrite``: the place is accepted as it is (the command
            replaces what it writes there).
        resume: ``None`` when the command cannot continue earlier work; else whether the user
            gave ``--resume`` (accepted too, and the message offers the flag).
        what: how the message names the place ("output folder", "checkpoint file", …).
        option: the option that named it (for the message).

    Raises:
        OutputExistsError: a folder that holds anything, or an existing file, without the
            flag that accepts it; a file where a folder is expected (or the reverse) always.
    """
    path = Path(path)
    folder = "folder" in what
    if path.exists() and folder != path.is_dir():
        kind = "a folder" if path.is_dir() else "a file"
        raise OutputExistsError(
            f"{what} {path} ({option}) is {kind}; expected "
            f"{'a folder' if folder else 'a file name'} (choose another {option})"
        )
    if overwrite or resume or not path.exists():
        return path
    if folder and not any(path.iterdir()):
        return path
    # the command line's flags, or the API's arguments where the caller named an argument
    over, cont = (
        ("--overwrite", "--resume") if option.startswith("-") else ("overwrite=True", "resume=True")
    )
    flags = f"{over} to replace it"
    if resume is not None:
        flags = f"{cont} to continue the run that is there, or {flags}"
    raise OutputExistsError(
        f"{what} {path} ({option}) already holds {describe_contents(path)}; nothing was "
        f"written. Give {flags}, or choose another {option}"
    )
