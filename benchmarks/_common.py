"""Shared machinery of the benchmark suite: run plan, result tables, timing, memory, structures.

Imported by ``benchmarks/conftest.py``, the test modules and the MPI worker
``benchmarks/_lammps_bench.py`` (which runs outside pytest, so nothing here imports pytest).
Units are the package's (LAMMPS ``metal``): Å, ps, amu, K; strides and timesteps in fs.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import threading
import time
from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from equignnmd.materials import ALUMINIUM

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
LATTICE_A = ALUMINIUM.lattice_A  # the package's one Al record
TEMPERATURE_K = 300.0
ARCHS = ("paper", "equivariant")
SHIPPED = ("paper-al", "equivariant-al")
"""Configs of the shipped reference models (``configs/<name>.yaml``): smaller than the
architectures' defaults, and what ``pretrained:<name>`` users actually run."""
MODELS = ARCHS + SHIPPED
"""Names the throughput, headline and FLOP tables measure; a name is a config file."""
LAMMPS_DT_FS = (1.0, 5.0)
ENV_FULL = "EQUIGNNMD_BENCH_FULL"
ENV_SMOKE = "EQUIGNNMD_BENCH_SMOKE"


# ------------------------------------------------------------------------------ run plan
@dataclass(frozen=True)
class Plan:
    """What one run measures. ``smoke`` < 1 min, ``default`` a few minutes on 2 cores,
    ``full`` paper-scale sizes (up to 32 000 atoms; long)."""

    mode: str
    throughput_sizes: tuple[int, ...]
    strides_fs: tuple[float, ...]
    compiled_sizes: tuple[int, ...]
    float64_sizes: tuple[int, ...]
    gpu_sizes: tuple[int, ...]
    scaling_sizes: tuple[int, ...]
    replicas: tuple[int, ...]
    replica_atom_cap: int
    lammps_modes: tuple[str, ...]
    measure_all_strides_up_to: int
    """Boxes with more atoms are timed at the first stride only; their other stride rows are
    derived from that time (the step's cost does not depend on Δt)."""
    one_thread_rows: bool
    lammps_target_s: float
    step_budget_s: float
    min_rounds: int
    max_rounds: int
    matmul_s: float
    profile_atoms: int
    training: bool
    train_samples: int
    accuracy: bool
    accuracy_epochs: int
    accuracy_samples: int
    accuracy_configs: str
    """``small`` (configs/*-small.yaml) or ``default`` (configs/*.yaml) for the trained model."""
    rollout_steps: int
    eval_pairs: int
    dataset: dict = field(default_factory=dict)
    """GenerateConfig overrides of the small reference dataset (training and accuracy)."""

    def warmup_rounds(self, total_atoms: int, mode: str) -> int:
        if self.mode == "smoke":
            return 1
        if mode == "compiled":
            return 2  # the first call compiles; the second shows whether it recompiles
        return 2 if total_atoms <= 2048 else 1

    def rounds(self, step_s: float) -> int:
        if not math.isfinite(step_s) or step_s <= 0:
            return self.min_rounds
        return int(min(self.max_rounds, max(self.min_rounds, self.step_budget_s // step_s)))


def make_plan(mode: str) -> Plan:
    common = dict(
        strides_fs=(10.0, 20.0, 50.0),
        replicas=(1, 8, 32),
        lammps_modes=("serial", "openmp", "mpi"),
        gpu_sizes=(256, 4000),
    )
    if mode == "smoke":
        return Plan(
            mode=mode,
            throughput_sizes=(256,),
            strides_fs=(10.0,),
            compiled_sizes=(),
            float64_sizes=(),
            gpu_sizes=(256,),
            scaling_sizes=(256, 500),
            replicas=(),
            replica_atom_cap=512,
            lammps_modes=("serial",),
            measure_all_strides_up_to=256,
            one_thread_rows=False,
            lammps_target_s=0.3,
            step_budget_s=0.5,
            min_rounds=1,
            max_rounds=2,
            matmul_s=0.3,
            profile_atoms=256,
            training=False,
            train_samples=0,
            accuracy=False,
            accuracy_epochs=0,
            accuracy_samples=0,
            accuracy_configs="small",
            rollout_steps=0,
            eval_pairs=0,
        )
    if mode == "full":
        return Plan(
            mode=mode,
            throughput_sizes=(256, 4000, 32000),
            compiled_sizes=(256, 4000, 32000),
            float64_sizes=(256, 4000),
            scaling_sizes=(256, 500, 2048, 4000, 13500, 32000),
            replica_atom_cap=10**9,
            measure_all_strides_up_to=10**9,
            one_thread_rows=True,
            lammps_target_s=3.0,
            step_budget_s=10.0,
            min_rounds=2,
            max_rounds=30,
            matmul_s=2.0,
            profile_atoms=4000,
            training=True,
            train_samples=32,
            accuracy=True,
            accuracy_epochs=10,
            accuracy_samples=256,
            accuracy_configs="small",
            rollout_steps=200,
            eval_pairs=32,
            dataset=dict(
                temperatures_K=[300.0, 350.0, 800.0],
                test_temperatures_K=[350.0],
                equilibration_ps=1.0,
                production_ps=2.0,
            ),
            **common,
        )
    return Plan(
        mode="default",
        throughput_sizes=(256, 4000),
        compiled_sizes=(256,),
        float64_sizes=(256,),
        scaling_sizes=(256, 500, 2048, 4000),
        replica_atom_cap=8192,
        measure_all_strides_up_to=4000,
        one_thread_rows=True,
        lammps_target_s=1.0,
        step_budget_s=2.0,
        min_rounds=1,
        max_rounds=5,
        matmul_s=1.0,
        profile_atoms=4000,
        training=True,
        train_samples=8,
        accuracy=True,
        accuracy_epochs=2,
        accuracy_samples=48,
        accuracy_configs="small",
        rollout_steps=20,
        eval_pairs=8,
        dataset=dict(
            temperatures_K=[300.0, 350.0],
            test_temperatures_K=[350.0],
            equilibration_ps=0.5,
            production_ps=0.4,
        ),
        **common,
    )


# ------------------------------------------------------------------------------ structures
def cells_for(atoms: int) -> int:
    """n of an n×n×n conventional FCC supercell with ``atoms`` = 4 n³ atoms."""
    n = round((atoms / 4) ** (1 / 3))
    if 4 * n**3 != atoms:
        raise ValueError(f"{atoms} atoms is not 4 n³ (an n×n×n FCC supercell)")
    return n


def _config_file(name: str, small: bool = False) -> dict:
    import yaml

    path = REPO / "configs" / f"{name}{'-small' if small else ''}.yaml"
    return yaml.safe_load(path.read_text()) or {}


def model_config(arch: str, small: bool = False) -> dict:
    """The ``model:`` section of ``configs/<arch>.yaml`` (or ``<arch>-small.yaml``); ``arch``
    may also name a shipped model's config (``equivariant-al``)."""
    return dict(_config_file(arch, small).get("model") or {})


def arch_of(name: str) -> str:
    """The architecture behind a model name of :data:`MODELS` (its config's ``arch``)."""
    return str(_config_file(name).get("arch") or name)


def smallest_box_atoms(arch: str) -> int:
    """Atoms of the smallest cubic Al supercell whose width is ≥ 2 × the model's cutoff."""
    cutoff = float(model_config(arch).get("cutoff", 6.287))
    return 4 * math.ceil(2.0 * cutoff / LATTICE_A - 1e-9) ** 3


def initial_arrays(atoms: int, seed: int = 0) -> dict[str, np.ndarray]:
    """The benchmark box: FCC Al at a = 4.05 Å, lattice sites, Maxwell–Boltzmann velocities
    at 300 K (zero net momentum, seeded). Metal units (velocities Å/ps)."""
    from ase.build import bulk

    from equignnmd.thermostats import maxwell_boltzmann

    n = cells_for(atoms)
    crystal = bulk("Al", "fcc", a=LATTICE_A, cubic=True).repeat((n, n, n))
    masses = torch.as_tensor(crystal.get_masses(), dtype=torch.float64)
    gen = torch.Generator().manual_seed(int(seed))
    vel = maxwell_boltzmann(masses, TEMPERATURE_K, gen)
    return {
        "positions": crystal.positions.copy(),
        "velocities": vel.numpy(),
        "cell": crystal.cell.array.copy(),
        "species": crystal.numbers.copy(),
        "masses": crystal.get_masses().copy(),
    }


def make_state(atoms: int, replicas: int = 1, device: str = "cpu", seed: int = 0):
    """A :class:`~equignnmd.rollout.RolloutState` of ``replicas`` copies of the box; replica r
    draws its velocities with seed ``seed + r``."""
    from equignnmd.rollout import RolloutState

    arrays = [initial_arrays(atoms, seed + r) for r in range(replicas)]
    return RolloutState.from_arrays(
        [a["positions"] for a in arrays],
        [a["velocities"] for a in arrays],
        [a["cell"] for a in arrays],
        [a["species"] for a in arrays],
        [a["masses"] for a in arrays],
        device=device,
    )


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


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "?"


def machine_info() -> dict[str, Any]:
    """CPU, cores, memory, library versions, thread counts, GPU and git state."""
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    try:
        meminfo = Path("/proc/meminfo").read_text()
        mem_gib = int(_first(r"^MemTotal:\s+(\d+)", meminfo, "0")) / 2**20
    except OSError:
        mem_gib = float("nan")
    cores = usable_cores()
    info: dict[str, Any] = {
        "cpu": _first(r"^model name\s*:\s*(.+)$", cpuinfo, platform.processor() or "?"),
        "cores": cores,
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
        from _lammps_bench import lammps_info

        info.update(lammps_info())
    except Exception as err:  # noqa: BLE001 - reported in the table header
        info["lammps"] = f"unavailable ({type(err).__name__}: {err})"
    info.update(git_state())
    return info


def git_state() -> dict[str, Any]:
    def run(*args):
        out = subprocess.run(
            ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10, check=False
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


# ------------------------------------------------------------------------------ timing
class Timed:
    """Callable wrapper that records the wall time of every call (and the peak memory of the
    first one); what pytest-benchmark runs, so the tables do not depend on its settings."""

    def __init__(self, fn, device: str = "cpu"):
        self.fn = fn
        self.device = device
        self.times: list[float] = []
        self.peak_mb: float | None = None
        self.memory_method = ""
        self.result = None

    def __call__(self):
        first = not self.times
        mem = PeakMemory(self.device) if first else nullcontext()
        with mem:
            t0 = time.perf_counter()
            self.result = self.fn()
            elapsed = time.perf_counter() - t0
        if first:
            self.peak_mb, self.memory_method = mem.mb, mem.method
        self.times.append(elapsed)
        return self.result


def run_timed(timed: Timed, rounds: int, benchmark=None) -> None:
    """``rounds`` timed calls, through pytest-benchmark's ``pedantic`` when given."""
    if benchmark is not None:
        benchmark.pedantic(timed, rounds=rounds, iterations=1, warmup_rounds=0)
    if not timed.times:  # no benchmark fixture, or benchmarking disabled/skipped
        for _ in range(rounds):
            timed()


def fit_exponent(xs, ys) -> tuple[float, float]:
    """Least-squares slope of log y against log x, and R² (nan with fewer than 2 points)."""
    x = np.log(np.asarray(xs, float))
    y = np.log(np.asarray(ys, float))
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2:
        return float("nan"), float("nan")
    slope, icpt = np.polyfit(x, y, 1)
    resid = y - (slope * x + icpt)
    total = ((y - y.mean()) ** 2).sum()
    r2 = 1.0 - (resid**2).sum() / total if total > 0 else float("nan")
    return float(slope), float(r2)


def short_error(err: BaseException, limit: int = 240) -> str:
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    msg = f"{type(err).__name__}: {first}"
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# ------------------------------------------------------------------------------ surrogate steps
@dataclass(frozen=True)
class StepCase:
    """One surrogate step measurement: model, box, stride, execution mode, dtype, device."""

    arch: str
    atoms: int
    stride_fs: float = 10.0
    mode: str = "eager"
    dtype: str = "float32"
    device: str = "cpu"
    replicas: int = 1
    threads: int | None = None
    """torch intra-op threads; None = the session's setting."""

    @property
    def total_atoms(self) -> int:
        return self.atoms * self.replicas

    @property
    def id(self) -> str:
        rep = f"-x{self.replicas}" if self.replicas > 1 else ""
        threads = f"-{self.threads}thread" if self.threads else ""
        return (
            f"{self.arch}-{self.atoms}{rep}-{self.stride_fs:g}fs-{self.mode}-{self.dtype}"
            f"-{self.device}{threads}"
        )

    def shape_key(self) -> tuple:
        return (
            self.arch,
            self.atoms,
            self.replicas,
            self.mode,
            self.dtype,
            self.device,
            self.threads,
        )


@dataclass
class Measurement:
    case: StepCase
    times_s: list[float] = field(default_factory=list)
    warmup_s: list[float] = field(default_factory=list)
    peak_mb: float | None = None
    memory_method: str = ""
    error: str | None = None
    skipped: bool = False
    notes: list[str] = field(default_factory=list)
    guard: str | None = None

    @property
    def step_s(self) -> float:
        """Median of the timed rounds, s."""
        return statistics.median(self.times_s) if self.times_s else float("nan")

    @property
    def min_s(self) -> float:
        return min(self.times_s) if self.times_s else float("nan")


def compile_model(model):
    """``model.compiled()`` (each architecture knows what pays to compile); (model, note)."""
    return model.compiled(), model.compiled_note


class SurrogateStep:
    """One real rollout step from a fixed state: :func:`equignnmd.rollout.advance` (batch,
    descriptors, neighbour list, model, position/velocity update, momentum removal) and the
    per-step stability guard of :class:`~equignnmd.rollout.Rollout` (no file output)."""

    def __init__(self, model, state, stride_fs: float, device: str):
        from equignnmd.rollout import StabilityGuard

        self.model, self.state, self.stride_fs, self.device = model, state, stride_fs, device
        self.guard = StabilityGuard(
            reference_K=torch.full((state.n_replicas,), TEMPERATURE_K, dtype=torch.float64)
        )
        self.problem = None

    def __call__(self):
        from equignnmd.rollout import advance

        new, _ = advance(self.model, self.state, self.stride_fs, TEMPERATURE_K)
        _, self.problem = self.guard.check(new)
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()
        return new


class Engine:
    """Builds and caches models and states, and measures (memoised) surrogate steps, so that
    every table of one run draws on the same measurements."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._models: dict[tuple, tuple[Any, str]] = {}
        self._states: dict[tuple, Any] = {}
        self._warm: dict[tuple, list[float]] = {}
        self._measured: dict[StepCase, Measurement] = {}

    def model(self, arch: str, mode: str = "eager", dtype: str = "float32", device="cpu"):
        key = (arch, mode, dtype, device)
        if key not in self._models:
            from equignnmd.models import build_model

            model = build_model(arch_of(arch), **model_config(arch))
            model = model.to(getattr(torch, dtype)).to(device).eval()
            note = ""
            if mode == "compiled":
                model, note = compile_model(model)
            self._models[key] = (model, note)
        return self._models[key]

    def state(self, atoms: int, replicas: int = 1, device: str = "cpu"):
        key = (atoms, replicas, device)
        if key not in self._states:
            self._states[key] = make_state(atoms, replicas, device)
        return self._states[key]

    def cached(self, case: StepCase) -> Measurement | None:
        return self._measured.get(case)

    def measure(self, case: StepCase, benchmark=None) -> Measurement:
        """Warm up (once per model, box and thread count), then time adaptive rounds.

        ``benchmark`` is pytest-benchmark's fixture or a callable returning it (fetched only
        when the case has not been measured yet)."""
        if case in self._measured:
            return self._measured[case]
        if callable(benchmark) and not hasattr(benchmark, "pedantic"):
            benchmark = benchmark()
        previous_threads = torch.get_num_threads()
        if case.threads:
            torch.set_num_threads(case.threads)
        try:
            return self._measure(case, benchmark)
        finally:
            torch.set_num_threads(previous_threads)

    def memory_guard(self, case: StepCase) -> str | None:
        """Why a box above 4000 atoms would not fit in free memory (linear extrapolation of
        the largest measured smaller box of the same model, dtype and device), or None."""
        if case.total_atoms <= 4000 or case.device != "cpu":
            return None
        done = [
            m
            for c, m in self._measured.items()
            if c.arch == case.arch
            and c.dtype == case.dtype
            and c.device == case.device
            and c.total_atoms < case.total_atoms
            and m.peak_mb
        ]
        if not done:
            return None
        last = max(done, key=lambda m: m.case.total_atoms)
        need = last.peak_mb * case.total_atoms / last.case.total_atoms
        free = available_memory_mb()
        if need > 0.7 * free:
            return (
                f"needs about {need / 1024:.1f} GiB (extrapolated from "
                f"{last.case.total_atoms} atoms), {free / 1024:.1f} GiB available"
            )
        return None

    def _measure(self, case: StepCase, benchmark) -> Measurement:
        m = Measurement(case)
        too_big = self.memory_guard(case)
        if too_big:
            m.error, m.skipped = f"not measured: {too_big}", True
            self._measured[case] = m
            return m
        try:
            model, note = self.model(case.arch, case.mode, case.dtype, case.device)
            if note:
                m.notes.append(note)
            state = self.state(case.atoms, case.replicas, case.device)
            step = SurrogateStep(model, state, case.stride_fs, case.device)
            key = case.shape_key()
            if key not in self._warm:
                warm = []
                for _ in range(self.plan.warmup_rounds(case.total_atoms, case.mode)):
                    t0 = time.perf_counter()
                    step()
                    warm.append(time.perf_counter() - t0)
                self._warm[key] = warm
                m.warmup_s = warm
            estimate = self._warm[key][-1]
            lists = getattr(model, "neighbour_list_calls", None)
            timed = Timed(step, case.device)
            run_timed(timed, self.plan.rounds(estimate), benchmark)
            if lists is not None and timed.times:
                per_step = (model.neighbour_list_calls - lists) / len(timed.times)
                if per_step > 1:
                    m.notes.append(f"{per_step:.2g} model neighbour lists per step (skin rebuilds)")
            m.times_s = list(timed.times)
            m.peak_mb = timed.peak_mb
            m.memory_method = timed.memory_method
            self._warm[key].append(m.step_s)
            if step.problem is not None:
                m.guard = f"replica {step.problem[0]}: {step.problem[1]}"
            out = timed.result
            if not bool(torch.isfinite(out.positions).all()):
                m.notes.append("non-finite positions after the step")
        except Exception as err:  # noqa: BLE001 - the row says why
            m.error = short_error(err)
        self._measured[case] = m
        return m


def step_row(m: Measurement, stride_fs: float | None = None) -> dict[str, Any]:
    """The table row of a surrogate measurement (derived throughput figures included);
    ``stride_fs`` re-labels the measured step cost for another stride."""
    c = m.case if stride_fs is None else replace(m.case, stride_fs=stride_fs)
    row: dict[str, Any] = {
        "system": c.arch,
        "atoms": c.total_atoms,
        "replicas": c.replicas,
        "dt_fs": c.stride_fs,
        "mode": c.mode,
        "dtype": c.dtype,
        "device": c.device,
        "threads": (c.threads or torch.get_num_threads()) if c.device == "cpu" else "GPU",
        "rounds": len(m.times_s),
        "times_s": m.times_s,
        "warmup_s": m.warmup_s,
        "first_step_s": m.warmup_s[0] if m.warmup_s else None,
        "peak_mb": m.peak_mb,
        "memory_method": m.memory_method,
        "notes": "; ".join(
            [*m.notes, *([f"guard: {m.guard}"] if m.guard else []), *([m.error] if m.error else [])]
        ),
    }
    if m.times_s:
        s = m.step_s
        row.update(
            ms_step=1e3 * s,
            ms_min=1e3 * m.min_s,
            atom_steps_s=c.total_atoms / s,
            atom_fs_s=c.total_atoms * c.stride_fs / s,
            ns_day=c.stride_fs / s * 86400.0 * 1e-6,
        )
    return row


def not_measured_row(case: StepCase, why: str) -> dict[str, Any]:
    return {
        "system": case.arch,
        "atoms": case.total_atoms,
        "replicas": case.replicas,
        "dt_fs": case.stride_fs,
        "mode": case.mode,
        "dtype": case.dtype,
        "device": case.device,
        "threads": "GPU" if case.device == "cuda" else (case.threads or torch.get_num_threads()),
        "notes": f"not measured: {why}",
    }


# ------------------------------------------------------------------------------ case lists
def throughput_cases(plan: Plan) -> list[StepCase]:
    cases = []
    for arch in MODELS:
        for atoms in plan.throughput_sizes:
            for mode in ("eager", "compiled"):
                if mode == "compiled" and atoms not in plan.compiled_sizes:
                    continue
                for dtype in ("float32", "float64"):
                    if dtype == "float64" and (atoms not in plan.float64_sizes or mode != "eager"):
                        continue
                    strides = plan.strides_fs if dtype == "float32" else plan.strides_fs[:1]
                    if atoms > plan.measure_all_strides_up_to:
                        strides = strides[:1]
                    for dt in strides:
                        cases.append(StepCase(arch, atoms, dt, mode, dtype))
                        one = plan.one_thread_rows and usable_cores() > 1
                        if one and mode == "eager" and dtype == "float32":
                            cases.append(StepCase(arch, atoms, dt, mode, dtype, threads=1))
        for atoms in plan.gpu_sizes:
            cases.append(StepCase(arch, atoms, plan.strides_fs[0], "eager", "float32", "cuda"))
    return cases


def replica_cases(plan: Plan) -> list[StepCase]:
    return [
        StepCase(arch, smallest_box_atoms(arch), 10.0, replicas=r)
        for arch in ARCHS
        for r in plan.replicas
    ]


def scaling_cases(plan: Plan) -> list[StepCase]:
    return [StepCase(arch, n, 10.0) for arch in ARCHS for n in plan.scaling_sizes]


@dataclass(frozen=True)
class LammpsCase:
    atoms: int
    dt_fs: float
    mode: str  # serial | openmp | mpi

    @property
    def id(self) -> str:
        return f"{self.atoms}-{self.dt_fs:g}fs-{self.mode}"


def lammps_cases(plan: Plan) -> list[LammpsCase]:
    return [
        LammpsCase(atoms, dt, mode)
        for atoms in plan.throughput_sizes
        for mode in plan.lammps_modes
        for dt in LAMMPS_DT_FS
    ]


def usable_cores() -> int:
    """CPU cores this process may run on (affinity mask; containers, taskset)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def command_line() -> str:
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in (ENV_FULL, ENV_SMOKE)
        if os.environ.get(k) not in (None, "", "0")
    )
    argv = " ".join(["pytest", *sys.argv[1:]])
    return f"{env} {argv}".strip()
