"""Reference runs kept on disk, so that a fidelity run against a costly reference resumes.

An ML potential as the reference (SevenNet-0: ~10 ms per atom-step here) makes the reference
side of ``equignnmd fidelity`` hours long, and it does not depend on the model: the
equilibrated state, the velocity-Verlet ladder and the reference's NVT runs are the same for
every checkpoint scored against them. :class:`ReferenceCache` keeps each such result in its
folder under a key made of everything that decides it (the reference, the material, the
settings that enter the run, a digest of the start state), written atomically when the run
ends. A killed benchmark re-run with the same ``reference_cache`` repeats only what had not
finished; a second checkpoint runs only its own side. A changed setting gives another key,
never a stale result.

The files are Python pickles of plain dicts and numpy arrays that this package wrote: a
cache folder is trusted like a checkpoint (do not point it at files from elsewhere).
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ReferenceCache", "state_digest"]


def state_digest(state: dict) -> str:
    """A SHA-256 (16 hex digits) of a state's arrays (``positions``, ``velocities``,
    ``cell``, ``species`` where present): the start of a run, in its key."""
    h = hashlib.sha256()
    for name in ("positions", "velocities", "cell", "species"):
        if state.get(name) is not None:
            a = np.ascontiguousarray(state[name])
            h.update(name.encode() + str(a.dtype).encode() + a.tobytes())
    return h.hexdigest()[:16]


class ReferenceCache:
    """Results of reference runs in ``folder`` (None or "": no cache, every call runs)."""

    def __init__(self, folder: str | os.PathLike | None):
        self.folder = Path(folder) if folder else None
        self.hits = 0

    def path(self, kind: str, key: dict) -> Path | None:
        """Where the result of run ``kind`` with ``key`` lives (None without a folder)."""
        if self.folder is None:
            return None
        text = json.dumps({"kind": kind, **key}, sort_keys=True, default=repr)
        return self.folder / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:20]}.pkl"

    def run(self, kind: str, key: dict, fn: Callable[..., Any], *args, **kwargs) -> Any:
        """``fn(*args, **kwargs)``'s result for ``key`` (which must name everything in them
        that decides it): read back when a finished run left it, else run and keep it
        (written to a temporary name, then renamed: a killed run leaves nothing)."""
        path = self.path(kind, key)
        if path is not None and path.exists():
            with path.open("rb") as f:
                self.hits += 1
                return pickle.load(f)
        result = fn(*args, **kwargs)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".partial")
            with tmp.open("wb") as f:
                pickle.dump(result, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        return result
