"""The result tables of a benchmark run: their columns, the session-wide collector, the
derived figures (ratios to LAMMPS, gains, achieved FLOP/s, the headline, fitted exponents),
the JSON and markdown output in ``benchmarks/results/``, and the rows a measurement becomes."""

from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _boxes import LATTICE_A, TEMPERATURE_K
from _engine import Measurement
from _machine import load_average, machine_line
from _plan import LAMMPS_DT_FS, MODELS, RESULTS_DIR, Plan, StepCase

from equignnmd.units import fs_to_ps, ns_per_day

# ------------------------------------------------------------------------------ result tables
# key -> (title, intro, [(field, header)])
TABLE_SPECS: dict[str, tuple[str, str, list[tuple[str, str]]]] = {
    "headline": (
        "Headline: surrogate versus LAMMPS EAM in simulated time per wall second",
        "Largest default box (4000 atoms; 256 in smoke mode), CPU, float32. First row per "
        "stride: eager with the session's torch threads; 'best': the fastest measured "
        "variant (eager or compiled, all threads or 1) where that is another one. Ratios "
        "divide the "
        "surrogate's simulated fs per wall second by LAMMPS's at the same atom count, LAMMPS "
        "taking its fastest configuration on this machine (serial, OpenMP or MPI).",
        [
            ("system", "model"),
            ("atoms", "atoms"),
            ("dt_fs", "Δt fs"),
            ("mode", "mode"),
            ("ms_step", "ms/step"),
            ("ns_day", "ns/day"),
            ("x_lammps_1fs", "× LAMMPS 1 fs"),
            ("x_lammps_5fs", "× LAMMPS 5 fs"),
        ],
    ),
    "lammps": (
        "Throughput: LAMMPS EAM reference (Al_mm.eam.fs, NVE velocity Verlet)",
        f"Same box and initial state as the surrogate rows (FCC Al, a = {LATTICE_A:g} Å, lattice "
        f"sites, Maxwell–Boltzmann {TEMPERATURE_K:g} K, seed 0). `md.run(steps)` timed in chunks "
        "after a 20-step warm-up; serial and OpenMP in-process (OpenMP through "
        "`-sf omp -pk omp N`), MPI as `mpiexec -n N python benchmarks/_lammps_bench.py`. "
        "E drift: total-energy change over the timed steps (1 fs is the accurate reference; "
        "5 fs is taken as the largest accurate step on this potential).",
        [
            ("atoms", "atoms"),
            ("dt_fs", "Δt fs"),
            ("mode", "parallel"),
            ("steps", "steps"),
            ("ms_step", "ms/step"),
            ("atom_steps_s", "atom-steps/s"),
            ("atom_fs_s", "atom·fs/s"),
            ("ns_day", "ns/day"),
            ("peak_mb", "peak MB"),
            ("e_drift", "E drift meV/atom/ps"),
            ("notes", "notes"),
        ],
    ),
    "throughput": (
        "Throughput: surrogate inference steps",
        "Real rollout strides in steady state from the 300 K lattice state: `step` with the "
        "standard NVE stages (batch, descriptors for `paper`, the model step's neighbour list "
        "carried across strides and rebuilt past half its 1 Å skin, model, update, momentum "
        "removal) plus the stability guard. "
        "Default configs (`configs/paper.yaml`, `configs/equivariant.yaml`), untrained weights "
        "(cost does not depend on them, except the `paper` skin-list rebuilds). ms/step is the "
        "median of the timed rounds; 'first s' is the first call (compilation included); "
        "peak MB is the peak resident memory above the level before the step (CPU) or "
        "`torch.cuda.max_memory_allocated` (GPU). × LAMMPS: simulated time per wall second "
        "relative to the fastest LAMMPS configuration at the same atom count.",
        [
            ("system", "model"),
            ("atoms", "atoms"),
            ("dt_fs", "Δt fs"),
            ("mode", "mode"),
            ("dtype", "dtype"),
            ("device", "device"),
            ("threads", "threads"),
            ("rounds", "rounds"),
            ("ms_step", "ms/step"),
            ("atom_steps_s", "atom-steps/s"),
            ("atom_fs_s", "atom·fs/s"),
            ("ns_day", "ns/day"),
            ("x_lammps_1fs", "× LAMMPS 1 fs"),
            ("x_lammps_5fs", "× LAMMPS 5 fs"),
            ("peak_mb", "peak MB"),
            ("first_step_s", "first s"),
            ("notes", "notes"),
        ],
    ),
    "replicas": (
        "Throughput: batched replicas in one forward",
        "R copies of the smallest legal box of each model (width ≥ 2 × cutoff: 108 atoms for "
        "`equivariant`, 256 for `paper`), independent velocities, one `advance` call for all; "
        "Δt = 10 fs, eager float32. 'per-atom gain' is atom-steps/s relative to R = 1.",
        [
            ("system", "model"),
            ("atoms_per_replica", "atoms/replica"),
            ("replicas", "R"),
            ("atoms", "total atoms"),
            ("ms_step", "ms/step"),
            ("atom_steps_s", "atom-steps/s"),
            ("replica_steps_s", "replica-steps/s"),
            ("gain", "per-atom gain"),
            ("peak_mb", "peak MB"),
            ("notes", "notes"),
        ],
    ),
    "scaling": (
        "Cost growth: time and memory per step against N",
        "Eager float32, Δt = 10 fs, one replica, the session's torch threads. ms/step is the "
        "median of the timed rounds; the fit rows give the log-log least-squares exponent of "
        "the fastest round's time and of the peak memory against N (1 = linear).",
        [
            ("system", "model"),
            ("atoms", "N"),
            ("ms_step", "ms/step"),
            ("us_atom_step", "µs/atom-step"),
            ("peak_mb", "peak MB"),
            ("kb_atom", "kB/atom"),
            ("time_exponent", "time exponent"),
            ("memory_exponent", "memory exponent"),
            ("notes", "notes"),
        ],
    ),
    "flops": (
        "Efficiency: FLOPs per atom-step and achieved fraction of matrix-multiply FLOP/s",
        "`torch.utils.flop_counter.FlopCounterMode` over one model forward (256 atoms, "
        "float32, untrained default config): it counts the matrix-multiply family (mm, addmm, "
        "bmm, baddbmm, einsum lowered to bmm), not element-wise work, gathers or scatters, so "
        "the fractions are lower bounds on the useful arithmetic. Achieved = FLOPs/atom-step × "
        "measured atom-steps/s of the whole step (Δt = 10 fs, eager float32) ÷ this machine's "
        "float32 1024×1024 matmul rate measured in the same run.",
        [
            ("system", "model / kernel"),
            ("parameters", "parameters"),
            ("gflop_step_256", "GFLOP/step (256 atoms)"),
            ("flops_atom_step", "FLOPs/atom-step"),
            ("achieved_256", "achieved GFLOP/s (256)"),
            ("fraction_256", "of matmul (256)"),
            ("achieved_4000", "achieved GFLOP/s (4000)"),
            ("fraction_4000", "of matmul (4000)"),
            ("notes", "notes"),
        ],
    ),
    "profile": (
        "Where a step's time goes (cProfile of one step)",
        "One eager float32 step (Δt = 10 fs) under cProfile; cumulative times attributed to "
        "the package's functions. Neighbour lists are split by caller (model, descriptors, "
        "stability guard). 'rest of forward' is the model's own non-layer work (embeddings, "
        "edge features, skin filtering, readout). Top ops: torch calls by own time.",
        [
            ("system", "model"),
            ("atoms", "atoms"),
            ("phase", "phase"),
            ("ms", "ms"),
            ("percent", "% of step"),
            ("notes", "notes"),
        ],
    ),
    "training": (
        "Training throughput: 1 versus 2 data-parallel processes (DDP, gloo, CPU)",
        "`torchrun --standalone --nproc_per_node=P -m equignnmd train --config configs/<arch>"
        ".yaml` on the small generated dataset (256 atoms per sample), one epoch, Δt ∈ "
        "{5, 10, 20, 50} fs; samples/s and atoms/s from the run's `metrics.csv`. Threads per "
        "process = cores / P (OMP_NUM_THREADS). Wall s is the whole subprocess (start-up, "
        "data statistics, validation and final report included).",
        [
            ("system", "model"),
            ("processes", "processes"),
            ("threads", "threads/process"),
            ("samples", "train samples"),
            ("batch_size", "batch"),
            ("samples_per_s", "samples/s"),
            ("atoms_per_s", "atoms/s"),
            ("speedup", "speed-up vs 1"),
            ("epoch_s", "epoch s"),
            ("wall_s", "wall s"),
            ("notes", "notes"),
        ],
    ),
    "accuracy": (
        "Accuracy: one-shot error versus Δt beside the baselines",
        "Mean per-atom position error (Å) on the held-out temperature of the small generated "
        "dataset, `equignnmd.evaluate.table4`. Zero / ballistic / Taylor are the package's "
        "baselines on the same pairs; the paper's Table 4 (trained on its 4000-atom data) is "
        "shown for scale only.",
        [
            ("system", "model"),
            ("dt_fs", "Δt fs"),
            ("model_A", "model"),
            ("zero_A", "zero displacement"),
            ("ballistic_A", "ballistic r+vΔt"),
            ("taylor_A", "2nd-order Taylor"),
            ("paper_A", "paper Table 4"),
            ("notes", "notes"),
        ],
    ),
    "energy_sources": (
        "Energy sources: the cost of the potential energy an energy-conserving step needs",
        "`--energy reference` (LAMMPS single point of the EAM file, in process, serial), "
        "`--energy model` (the checkpoint's EAM-form energy head, CPU, float64) beside one "
        "eager float32 step of the shipped `equivariant-al` on the same box (the session's "
        "torch threads); one call per stride. Median of the timed calls after one warm-up "
        "call.",
        [
            ("source", "energy source"),
            ("atoms", "atoms"),
            ("calls", "calls"),
            ("ms_call", "ms/call"),
            ("us_atom", "µs per atom"),
            ("of_step", "of a model step"),
            ("notes", "notes"),
        ],
    ),
    "own_reference": (
        "Each shipped model against its own reference, at the reference's largest stable step",
        "The reference is the one the checkpoint's training data came from (its LAMMPS "
        "potential or ASE calculator, and its crystal), read from the checkpoint. Stability: "
        "from a state equilibrated at the hottest temperature the model was trained at and "
        "0 bar, NVE velocity Verlet at each tried "
        "step on a small box; a step is stable when the linear drift of the total energy and "
        "the temperature stay below the thresholds the notes state; the reference row runs "
        "at the largest stable step (the drift column lists every "
        "tried step, ✗ unstable). Speed, one thread each, on the same box (lattice sites, "
        "Maxwell–Boltzmann 300 K): the reference's MD in-process (serial), the surrogate's "
        "real rollout stride (`step` with the NVE stages and the guard, inference mode, the "
        "checkpoint's own dtype). × reference = the surrogate's simulated ps per wall second "
        "÷ the reference's at the same atom count: above 1 the surrogate is faster.",
        [
            ("model", "model"),
            ("atoms", "atoms"),
            ("run", "run"),
            ("dt_fs", "Δt fs"),
            ("drifts", "reference NVE drift meV/atom/ps by Δt fs"),
            ("us_atom_step", "µs/atom-step"),
            ("ps_per_s", "simulated ps/s"),
            ("x_reference", "× reference"),
            ("threads", "threads"),
            ("notes", "notes"),
        ],
    ),
    "stability": (
        "Stability: rollouts against LAMMPS EAM from the same held-out state",
        "`equignnmd.evaluate.rollout_vs_lammps`: surrogate rollout (CSVR thermostat at the "
        "held-out temperature) and LAMMPS EAM at 1 fs from the same positions and velocities. "
        "Steps done counts strides before any stability guard fired; RDF L1 compares the "
        "second halves of both trajectories.",
        [
            ("system", "model"),
            ("dt_fs", "Δt fs"),
            ("steps", "steps done / asked"),
            ("t_mean", "T mean K (surrogate / LAMMPS)"),
            ("t_drift", "T drift K/ps"),
            ("rdf_l1", "RDF L1"),
            ("msd_ratio", "MSD ratio (end)"),
            ("wall", "wall s (surrogate / LAMMPS)"),
            ("notes", "notes"),
        ],
    ),
}


class Results:
    """Rows of every table, gathered over the session; rendered once at the end."""

    def __init__(self, plan: Plan, machine: dict[str, Any], command: str):
        self.plan = plan
        self.machine = machine
        self.command = command
        self.started = datetime.now(timezone.utc)
        self.t0 = time.perf_counter()
        self.rows: dict[str, list[dict[str, Any]]] = {k: [] for k in TABLE_SPECS}
        self.notes: dict[str, list[str]] = {k: [] for k in TABLE_SPECS}
        self.extra: dict[str, Any] = {}
        self.header_notes: list[str] = []

    def header_note(self, text: str) -> None:
        if text not in self.header_notes:
            self.header_notes.append(text)

    def add(self, table: str, row: dict[str, Any]) -> None:
        if table not in TABLE_SPECS:
            raise KeyError(f"unknown table {table!r}; known: {sorted(TABLE_SPECS)}")
        self.rows[table].append(dict(row))

    def note(self, table: str, text: str) -> None:
        if text not in self.notes[table]:
            self.notes[table].append(text)

    @property
    def empty(self) -> bool:
        return not any(self.rows.values())

    # -- derived figures --------------------------------------------------------------------
    def best_lammps(self, atoms: int, dt_fs: float) -> dict[str, Any] | None:
        rows = [
            r
            for r in self.rows["lammps"]
            if r.get("atoms") == atoms and r.get("dt_fs") == dt_fs and r.get("atom_fs_s")
        ]
        return max(rows, key=lambda r: r["atom_fs_s"]) if rows else None

    def finalize(self) -> None:
        """Fill the derived columns (ratios, gains, achieved FLOP/s) and the headline table."""
        for row in self.rows["throughput"]:
            for dt in LAMMPS_DT_FS:
                ref = self.best_lammps(row["atoms"], dt)
                key = f"x_lammps_{dt:g}fs"
                if ref and row.get("atom_fs_s"):
                    row[key] = row["atom_fs_s"] / ref["atom_fs_s"]
                    row[f"{key}_vs"] = ref["mode"]
        base = {
            r["system"]: r.get("atom_steps_s")
            for r in self.rows["replicas"]
            if r.get("replicas") == 1
        }
        for row in self.rows["replicas"]:
            b = base.get(row["system"])
            if b and row.get("atom_steps_s"):
                row["gain"] = row["atom_steps_s"] / b
        self._flops()
        self._headline()
        self.extra["wall_s"] = time.perf_counter() - self.t0
        self.machine["load_average_end"] = load_average()

    def _flops(self) -> None:
        peak = self.extra.get("matmul_flops")
        for row in self.rows["flops"]:
            per_atom = row.get("flops_atom_step")
            if not per_atom:
                continue
            for n in (256, 4000):
                tp = [
                    r
                    for r in self.rows["throughput"]
                    if r["system"] == row["system"]
                    and r["atoms"] == n
                    and r["dt_fs"] == 10.0
                    and r["mode"] == "eager"
                    and r["dtype"] == "float32"
                    and r["device"] == "cpu"
                    and r.get("threads") == self.machine["torch_threads"]
                    and r.get("atom_steps_s")
                ]
                if tp:
                    achieved = per_atom * tp[0]["atom_steps_s"]
                    row[f"achieved_{n}"] = achieved / 1e9
                    if peak:
                        row[f"fraction_{n}"] = f"{100.0 * achieved / peak:.2g} %"

    def _headline(self) -> None:
        sizes = [r["atoms"] for r in self.rows["throughput"] if r.get("atom_fs_s")]
        if not sizes:
            return
        target = 4000 if 4000 in sizes else max(s for s in sizes if s <= 4000)
        for arch in MODELS:
            for dt in self.plan.strides_fs:
                rows = [
                    r
                    for r in self.rows["throughput"]
                    if r["system"] == arch
                    and r["atoms"] == target
                    and r["dt_fs"] == dt
                    and r["dtype"] == "float32"
                    and r["device"] == "cpu"
                    and r.get("atom_fs_s")
                ]
                default = [
                    r
                    for r in rows
                    if r["mode"] == "eager" and r.get("threads") == self.machine["torch_threads"]
                ]
                picks = [("eager", default), ("best", rows)]
                shown = []
                for label, cand in picks:
                    if not cand:
                        continue
                    best = max(cand, key=lambda r: r["atom_fs_s"])
                    if any(best is r for r in shown):
                        continue  # the default variant is also the fastest
                    shown.append(best)
                    mode = f"{best['mode']}, {best.get('threads')} thr."
                    mode = mode if label == "eager" else f"best: {mode}"
                    self.add(
                        "headline",
                        {
                            "system": arch,
                            "atoms": target,
                            "dt_fs": dt,
                            "mode": mode,
                            "ms_step": best.get("ms_step"),
                            "ns_day": best.get("ns_day"),
                            "x_lammps_1fs": best.get("x_lammps_1fs"),
                            "x_lammps_5fs": best.get("x_lammps_5fs"),
                        },
                    )

    # -- output -------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        return {
            "format": "equignnmd-benchmarks/1",
            "mode": self.plan.mode,
            "command": self.command,
            "started_utc": self.started.isoformat(timespec="seconds"),
            "wall_s": self.extra.get("wall_s"),
            "machine": self.machine,
            "matmul": {k: v for k, v in self.extra.items() if k.startswith("matmul")},
            "notes": self.header_notes,
            "tables": {
                key: {
                    "title": spec[0],
                    "columns": [c for c, _ in spec[2]],
                    "rows": self.rows[key],
                    "notes": self.notes[key],
                }
                for key, spec in TABLE_SPECS.items()
            },
        }

    def to_markdown(self) -> str:
        m = self.machine
        wall = self.extra.get("wall_s")
        lines = [
            f"# equignnmd benchmarks ({self.plan.mode} mode)",
            "",
            f"- Command: `{self.command}`",
            f"- Started {self.started.strftime('%Y-%m-%d %H:%M UTC')}; wall "
            + (f"{wall:.0f} s" if wall is not None else "?"),
            f"- Machine: {machine_line(m)}",
            f"- CPU load average (1/5/15 min) at start {m.get('load_average_start')}, at end "
            f"{m.get('load_average_end')}: other work on the machine slows and scatters timings.",
            f"- Versions: Python {m['python']}, e3nn {m['e3nn']}, torch-geometric "
            f"{m['torch_geometric']}, vesin {m['vesin']}, mpich {m['mpich']}; git "
            f"{m.get('git_commit')} ({m.get('git_modified_files')} modified files)",
        ]
        policy = m.get("OMP_WAIT_POLICY") or "unset (libgomp default: spin, then sleep)"
        lines.append(
            f"- OpenMP: OMP_WAIT_POLICY={policy}"
            + (
                " (set by the suite; export OMP_WAIT_POLICY to override)"
                if m.get("omp_wait_policy_set_by_suite")
                else ""
            )
            + f", OMP_NUM_THREADS={m.get('OMP_NUM_THREADS') or 'unset'}"
        )
        if "matmul_flops" in self.extra:
            lines.append(
                f"- float32 1024×1024 matmul: {self.extra['matmul_flops'] / 1e9:.1f} GFLOP/s "
                f"with {m['torch_threads']} threads, "
                f"{self.extra.get('matmul_flops_1thread', float('nan')) / 1e9:.1f} GFLOP/s "
                "with 1"
            )
        lines += [f"- {note}" for note in self.header_notes]
        for key, (title, intro, columns) in TABLE_SPECS.items():
            rows = self.rows[key]
            if not rows and not self.notes[key]:
                continue
            lines += ["", f"## {title}", "", f"_Machine: {machine_line(m)}_", "", intro, ""]
            if rows:
                lines.append("| " + " | ".join(h for _, h in columns) + " |")
                lines.append("|" + "---|" * len(columns))
                for row in rows:
                    lines.append("| " + " | ".join(fmt(row.get(c)) for c, _ in columns) + " |")
            if self.notes[key]:
                lines.append("")
                lines += [f"- {note}" for note in self.notes[key]]
        return "\n".join(lines) + "\n"

    def write(self, folder: Path = RESULTS_DIR) -> tuple[Path, Path]:
        folder.mkdir(parents=True, exist_ok=True)
        # Only the default mode publishes `latest.*`; a smoke run (CI) or a full run must not
        # overwrite the figures docs/benchmarks.md quotes.
        stem = "latest" if self.plan.mode == "default" else f"latest-{self.plan.mode}"
        js, md = folder / f"{stem}.json", folder / f"{stem}.md"
        js.write_text(json.dumps(self.to_json(), indent=2, default=_json_default) + "\n")
        md.write_text(self.to_markdown())
        return js, md


def _json_default(obj):
    if isinstance(obj, (np.floating, np.integer)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def fmt(value) -> str:
    """Table cell: 3 significant digits, thousands separators, '—' for missing values."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        x = float(value)
        if not math.isfinite(x):
            return "—"
        if x == 0:
            return "0"
        if abs(x) >= 1000:
            digits = int(math.floor(math.log10(abs(x)))) + 1
            return f"{round(x, 3 - digits):,.0f}"
        if abs(x) >= 0.001:
            return f"{x:.3g}"
        return f"{x:.2e}"
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")


# ------------------------------------------------------------------------------ rows
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
            ns_day=ns_per_day(fs_to_ps(c.stride_fs), s),
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
