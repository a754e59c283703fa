"""What a benchmark run measures: its plan (smoke, default, full), the measurement cases the
tests are parametrised with, and the names of the models and files.

Imported by ``benchmarks/conftest.py``, the test modules and the report; nothing here imports
pytest. Strides and timesteps in fs.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from _boxes import smallest_box_atoms
from _machine import usable_cores

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ARCHS = ("paper", "equivariant")
SHIPPED = ("paper-al", "equivariant-al", "symplectic-al")
"""Configs of the shipped reference models (``configs/<name>.yaml``): smaller than the
architectures' defaults, and what ``pretrained:<name>`` users actually run."""
MODELS = ARCHS + SHIPPED
"""Names the throughput, headline and FLOP tables measure; a name is a config file."""
LAMMPS_DT_FS = (1.0, 5.0)
ENV_FULL = "EQUIGNNMD_BENCH_FULL"
ENV_SMOKE = "EQUIGNNMD_BENCH_SMOKE"


# ------------------------------------------------------------------------------ run plan
@dataclass(frozen=True)
class OwnReference:
    """What the "surrogate against its own reference" table measures (test_12): the shipped
    models, the reference's velocity-Verlet steps tried for stability (fs) on a small box
    (``cells``³ conventional cells, 300 K) with the lengths of its runs (ps), and the
    surrogate strides timed (fs)."""

    models: tuple[str, ...] = ()
    """``pretrained:`` names; empty: every shipped one (``pretrained_names()``)."""
    verlet_fs: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
    """Up to the surrogate's longest stride: a reference stable there needs no surrogate."""
    strides_fs: tuple[float, ...] = (20.0, 50.0)
    cells: int = 4
    equilibrate_ps: float = 1.0
    nve_ps: float = 0.25
    min_steps: int = 200
    """Each NVE run lasts ``nve_ps`` or this many steps, whichever is longer (0.2 ps at 1 fs,
    4 ps at 20 fs): the total energy of velocity Verlet oscillates, and a fit over 50 steps
    of 10 fs reads that oscillation as a drift (Al EAM, 256 atoms, energy every 100 fs:
    0.1–0.2 meV/atom/ps over 0.5 ps, against 0.004 over 20 ps), while the drift at a step
    that fails comes in bursts (Al EAM at 20 fs: 0.09–0.54 meV/atom/ps over 100 steps from
    five equilibrated states, 0.17–0.48 over 200)."""
    sample_fs: float = 10.0
    """The total energy is fitted from a sample this often (every step of 10 fs and more):
    dense samples average the oscillation out (Al EAM, 256 atoms, 200 steps, four
    equilibrated states: |drift| ≤ 0.014 meV/atom/ps at 10 fs, against up to 0.042 with a
    sample every 100 fs)."""
    timing_s: float = 5.0
    """The reference's speed is timed over about this many seconds of steps (after two of
    warm-up; at least one step): the speed ratio is this table's claim, and a 1-s timing is
    two steps of Cu SNAP on 4,000 atoms."""


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
    own_reference: OwnReference = field(default_factory=OwnReference)

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
            # the cheapest shipped model (147 parameters) and its cheap EAM reference; every
            # step of the ladder still tried (an EAM run of 256 atoms takes well under 1 s)
            own_reference=OwnReference(
                models=("symplectic-al",), strides_fs=(20.0,), equilibrate_ps=0.5, timing_s=0.3
            ),
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
        rollout_steps=49,  # 50 frames: equignnmd.evaluate.MIN_SCORE_FRAMES, the least scored
        eval_pairs=8,
        dataset=dict(
            temperatures_K=[300.0, 350.0],
            test_temperatures_K=[350.0],
            equilibration_ps=0.5,
            production_ps=0.4,
        ),
        **common,
    )


# ------------------------------------------------------------------------------ cases
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
    energy: bool = False
    """The stride with the checkpoint's own energy source rescaling the velocities
    (``--energy model``), as the fidelity runs use it."""

    @property
    def total_atoms(self) -> int:
        return self.atoms * self.replicas

    @property
    def id(self) -> str:
        rep = f"-x{self.replicas}" if self.replicas > 1 else ""
        threads = f"-{self.threads}thread" if self.threads else ""
        energy = "-energy" if self.energy else ""
        return (
            f"{self.arch}-{self.atoms}{rep}-{self.stride_fs:g}fs-{self.mode}{energy}-{self.dtype}"
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
            self.energy,
        )


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


@dataclass(frozen=True)
class ModelCase:
    """One shipped model (``pretrained:<name>``) of the own-reference table."""

    name: str

    @property
    def id(self) -> str:
        return self.name


def own_reference_cases(plan: Plan) -> list[ModelCase]:
    """The plan's models, else every shipped one: a model added to the package (its
    ``.pt`` in ``equignnmd/pretrained``) is measured without a change here."""
    from equignnmd.checkpoint import pretrained_names

    return [ModelCase(n) for n in plan.own_reference.models or pretrained_names()]


def command_line() -> str:
    env = " ".join(
        f"{k}={os.environ[k]}"
        for k in (ENV_FULL, ENV_SMOKE)
        if os.environ.get(k) not in (None, "", "0")
    )
    argv = " ".join(["pytest", *sys.argv[1:]])
    return f"{env} {argv}".strip()
