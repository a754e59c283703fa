"""Where a file came from: the SHA-256 that datasets record for their potentials, calculators
and converted inputs. Only the standard library, at the bottom of the package."""

from __future__ import annotations

import hashlib
from pathlib import Path

__all__ = ["file_sha256"]


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of the file at ``path``, read in 1-MB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
