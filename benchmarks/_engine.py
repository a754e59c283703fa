"""How the suite measures a surrogate: timed callables, one real rollout step, and the engine
that builds, caches and times models and states so that every table draws on the same
measurements; a measurement that fails says why in one line (:func:`short_error`).
"""

from __future__ import annotations

import inspect
import statistics
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from _boxes import MATERIAL, TEMPERATURE_K, arch_of, make_state, model_config
from _machine import PeakMemory, available_memory_mb
from _plan import Plan, StepCase


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


def short_error(err: BaseException, limit: int = 240) -> str:
    """A failure as one line of a table's notes: the exception's type and first line."""
    text = str(err).strip().splitlines()
    first = text[0] if text else ""
    msg = f"{type(err).__name__}: {first}"
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


# ------------------------------------------------------------------------------ surrogate steps
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


class SurrogateStep:
    """One real rollout stride, in steady state: :func:`equignnmd.rollout.step` with the
    standard NVE stages (batch, descriptors, the model step's Verlet list reused across strides
    and rebuilt past half its skin, model, position/velocity update, momentum removal) and the
    per-step stability guard of :class:`~equignnmd.rollout.Rollout` (no file output). Each call
    continues from the last one's state, so list reuse and rebuilds count as in a rollout; a
    state the guard flags is replaced by the first one (an untrained model in a smoke run).
    With ``energy`` the checkpoint's own energy source rescales the velocities after the model
    step (``--energy model``: one energy evaluation per stride)."""

    def __init__(self, model, state, stride_fs: float, device: str, energy: bool = False):
        from equignnmd.potential import make_energy_source
        from equignnmd.rollout.guard import StabilityGuard
        from equignnmd.rollout.stages import EnergyRescale, init_stages, standard_stages

        self.model, self.stride_fs, self.device = model, stride_fs, device
        rescale = EnergyRescale(make_energy_source("model", model=model)) if energy else None
        self.stages = standard_stages(set_point_K=TEMPERATURE_K, energy=rescale)
        self.first = init_stages(self.stages, state)
        self.state = self.first
        self.guard = StabilityGuard(
            reference_K=torch.full((state.n_replicas,), TEMPERATURE_K, dtype=torch.float64)
        )
        self.problem = None

    def __call__(self):
        from equignnmd.rollout import step

        new = step(self.model, self.state, self.stride_fs, self.stages)
        _, self.problem = self.guard.check(new)
        self.state = self.first if self.problem else new
        if torch.device(self.device).type == "cuda":
            torch.cuda.synchronize()
        return new


PRETRAINED = "pretrained:"
"""A case's model named ``pretrained:<name>`` is that shipped checkpoint (trained weights, on
a box of its own material); any other name is a config (untrained weights, FCC Al)."""


class Engine:
    """Builds and caches models and states, and measures (memoised) surrogate steps, so that
    every table of one run draws on the same measurements."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self._models: dict[tuple, tuple[Any, str]] = {}
        self._references: dict[str, tuple[Any, Any]] = {}
        self._states: dict[tuple, Any] = {}
        self._warm: dict[tuple, list[float]] = {}
        self._measured: dict[StepCase, Measurement] = {}

    def model(self, arch: str, mode: str = "eager", dtype: str = "float32", device="cpu"):
        key = (arch, mode, dtype, device)
        if key not in self._models:
            if arch.startswith(PRETRAINED):
                from equignnmd.checkpoint import load_checkpoint

                model = load_checkpoint(arch, device=device)
            else:
                from equignnmd.models import build_model

                model = build_model(arch_of(arch), **model_config(arch))
            model = model.to(getattr(torch, dtype)).to(device).eval()
            note = ""
            if mode == "compiled":  # each architecture knows what pays to compile
                model = model.compiled()
                # what it compiles: the first paragraph of the architecture's docstring
                note = " ".join(inspect.getdoc(type(model).compiled).split("\n\n")[0].split())
            self._models[key] = (model, note)
        return self._models[key]

    def own_reference(self, name: str) -> tuple[Any, Any]:
        """(reference, material) of the shipped checkpoint ``pretrained:<name>``: the LAMMPS
        potential or ASE calculator and the crystal of its training data, as the checkpoint
        records them (:func:`equignnmd.data.reference_md.dataset_reference_material`; its
        species name the element where the record does not)."""
        if name not in self._references:
            from equignnmd.checkpoint import read_checkpoint
            from equignnmd.data.reference_md import checkpoint_reference_material

            where = f"checkpoint {PRETRAINED}{name}"
            recorded = checkpoint_reference_material(read_checkpoint(f"{PRETRAINED}{name}"), where)
            if recorded is None:
                raise ValueError(f"{where}: no record of the reference its data came from")
            self._references[name] = recorded
        return self._references[name]

    def material(self, arch: str):
        """The crystal a case's model runs on: a shipped checkpoint's own, else FCC Al."""
        if arch.startswith(PRETRAINED):
            return self.own_reference(arch.removeprefix(PRETRAINED))[1]
        return MATERIAL

    def state(self, atoms: int, replicas: int = 1, device: str = "cpu", material=MATERIAL):
        key = (atoms, replicas, device, material)
        if key not in self._states:
            self._states[key] = make_state(atoms, replicas, device, material=material)
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
            state = self.state(case.atoms, case.replicas, case.device, self.material(case.arch))
            step = SurrogateStep(model, state, case.stride_fs, case.device, case.energy)
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
