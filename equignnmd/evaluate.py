"""``equignnmd evaluate``: the evaluation report of a trained model.

1. One-shot error versus Δt at a held-out temperature, laid out like the paper's Table 4, with
   the zero / ballistic / Taylor baselines and the paper's published figure beside the model.
2. Error per temperature at one stride, laid out like the paper's Table 6.
3. Rollouts from a held-out frame against the dataset's own reference (its LAMMPS potential or
   ASE calculator, :func:`~equignnmd.data.reference_md.dataset_reference`; the Taylor
   baseline's forces are the ones it recorded) started from the very same positions and
   velocities with the same kind of thermostat: RDF overlay, MSD, temperature
   trace and VDOS, with scores (RDF L1, MSD ratio at the end, temperature mean and drift, VDOS
   overlap) and the number of steps completed before any stability guard fired. A score
   from fewer than :data:`~equignnmd.analysis.MIN_SCORE_FRAMES` frames of the rollout (the
   fidelity benchmark's ``min_frames``) is printed as "–" (null in ``metrics.json``), and its
   plots say "too short to plot (n frames)" instead of drawing lines.
4. ``report.md``, ``metrics.json`` and PNG plots in the report folder.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from ase.data import chemical_symbols
from torch.utils.data import Subset
from torch_geometric.loader import DataLoader

from . import analysis, plots
from .analysis import MIN_SCORE_FRAMES
from .calculator import AseCalculator
from .checkpoint import load_checkpoint
from .config import ConfigError
from .data import reference_md
from .data.dataset import PairDataset
from .data.format import read_index
from .data.reference_md import dataset_reference, state_material
from .io import json_safe, write_atomic
from .onestep import stride_errors
from .rollout import RolloutConfig, RolloutState
from .rollout.engine import record_rollout
from .units import fs_to_ps, ps_to_fs

PAPER_TABLE4_A = {
    1: 0.00022,
    5: 0.00065,
    10: 0.0019,
    15: 0.033,
    20: 0.049,
    30: 0.079,
    40: 0.118,
    50: 0.13,
}
"""The paper's Table 4: one-shot error at 350 K versus Δt (fs), trained on Δt ≤ 10 fs."""
PAPER_TABLE6_RANGE_A = (0.0004, 0.0009)
BASELINE_NAMES = ("zero", "ballistic", "taylor")
ROLLOUT_SCORES = (
    "rdf_l1",
    "msd_ratio_end",
    "temperature_mean_K",
    "temperature_drift_K_per_ps",
    "lammps_temperature_mean_K",
    "lammps_temperature_drift_K_per_ps",
    "vdos_overlap",
)
"""Rollout-vs-LAMMPS scores; NaN (null in JSON, "–" in the report) in a row whose rollout has
fewer than :data:`MIN_SCORE_FRAMES` frames."""
NO_SCORE = "–"
"""How a report prints a score it did not compute."""
BASELINE_TITLES = {
    "zero": "zero displacement",
    "ballistic": "ballistic r+vΔt",
    "taylor": "2nd-order Taylor",
}


@dataclass
class EvaluateConfig:
    """Settings of ``equignnmd evaluate``. Strides in fs, temperatures in K."""

    checkpoint: str = ""
    data: str = ""
    """dataset folder"""
    out: str = "report"
    """report folder"""
    strides_fs: list[float] = field(
        default_factory=lambda: [1.0, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0]
    )
    """strides of the Table-4 layout, fs"""
    test_temperature_K: float = 0.0
    """held-out temperature, K; 0: the dataset's first held-out temperature (or its first
    temperature)"""
    max_pairs: int = 32
    """start frames per stride (and per temperature in the Table-6 layout)"""
    table6_stride_fs: float = 0.0
    """0 = the largest training stride of the model."""
    rollout_strides_fs: list[float] = field(default_factory=list)
    """rollout strides, fs, each run at every rollout temperature; none: the largest training
    stride of the model"""
    rollout_steps: int = 100
    """rollout strides per run"""
    rollout_ps: float = 0.0
    """rollout length, ps; overrides rollout_steps when > 0"""
    rollout_thermostat: str = "csvr"
    """rollout thermostat"""
    rollout_tau_fs: float = 0.0
    """thermostat time constant, fs, for surrogate and LAMMPS alike; 0: 100 × stride"""
    rollout_temperatures_K: list[float] = field(default_factory=list)
    """rollout temperatures, K; none: the held-out temperature"""
    min_distance_A: float = 1.5
    batch_size: int = 4
    device: str = "auto"
    """cpu, cuda, cuda:1 or auto"""
    seed: int = 0
    progress: bool = True
    """Progress lines for every stage and a progress bar for each surrogate rollout."""

    def validate(self, source: str = "config") -> None:
        if not self.checkpoint:
            raise ConfigError(f"{source}: field 'checkpoint' is required")
        if not self.data:
            raise ConfigError(f"{source}: field 'data' is required")
        if self.rollout_thermostat not in ("none", "csvr", "langevin"):
            raise ConfigError(
                f"{source}: field 'rollout_thermostat' = {self.rollout_thermostat!r}; "
                "expected none, csvr or langevin"
            )
        if self.rollout_ps < 0 or self.rollout_tau_fs < 0:
            raise ConfigError(f"{source}: fields 'rollout_ps' and 'rollout_tau_fs' must be ≥ 0")

    def steps_for(self, stride_fs: float) -> int:
        """Steps at ``stride_fs``: ``rollout_ps`` of simulated time, else ``rollout_steps``."""
        if self.rollout_ps > 0:
            return max(2, int(round(ps_to_fs(self.rollout_ps) / stride_fs)))
        return self.rollout_steps

    def tau_for(self, stride_fs: float) -> float:
        return self.rollout_tau_fs or 100.0 * stride_fs


# ------------------------------------------------------------------------------ one-shot
def _usable_strides(root, strides) -> tuple[list[float], list[str]]:
    """Strides that every trajectory can serve; notes for the ones left out."""
    meta = read_index(root)
    interval = float(meta.get("frame_interval_fs") or 1.0)
    from .data.format import open_trajectories

    shortest = min(t.time_fs[-1] - t.time_fs[0] for t in open_trajectories(root))
    ok, notes = [], []
    for s in strides:
        if abs(s / interval - round(s / interval)) > 1e-6:
            notes.append(f"Δt = {s:g} fs left out: not a multiple of the {interval:g} fs frames")
        elif s * 2 > shortest:
            notes.append(f"Δt = {s:g} fs left out: the trajectories span only {shortest:g} fs")
        else:
            ok.append(float(s))
    return ok, notes


def table4(model, cfg: EvaluateConfig, test_T: float) -> tuple[dict, list[str]]:
    strides, notes = _usable_strides(cfg.data, cfg.strides_fs)
    ds = PairDataset(
        cfg.data,
        strides,
        "test",
        test_temperatures_K=[test_T],
        dtype=model.dtype,
        max_samples=cfg.max_pairs * len(strides),
    )
    if len(ds) == 0:
        raise ValueError(f"dataset {cfg.data}: no frames at the held-out {test_T:g} K")
    loader = DataLoader(ds, batch_size=cfg.batch_size)
    return stride_errors(model, loader), notes


def table6(model, cfg: EvaluateConfig, stride: float, test_temps: list[float]) -> dict:
    """Error per temperature at ``stride``: validation frames of the training temperatures and
    all frames of the held-out ones."""
    rows = {}
    for split in ("val", "test"):
        ds = PairDataset(
            cfg.data, [stride], split, test_temperatures_K=test_temps, dtype=model.dtype
        )
        for k in np.unique(ds.index.traj):
            idx = np.flatnonzero(ds.index.traj == k)
            idx = idx[np.linspace(0, len(idx) - 1, min(cfg.max_pairs, len(idx))).astype(int)]
            loader = DataLoader(Subset(ds, idx.tolist()), batch_size=cfg.batch_size)
            errs = stride_errors(model, loader)[float(stride)]
            temp = ds.trajectories[k].temperature_K
            rows[temp] = {"split": "held out" if split == "test" else "validation", **errs}
    return dict(sorted(rows.items()))


# ------------------------------------------------------------------------------ rollout
def rollout_arrays(
    model,
    positions,
    velocities,
    cell,
    species,
    masses,
    dt_fs: float,
    steps: int,
    temperature_K: float,
    thermostat: str,
    seed: int = 0,
    min_distance_A: float = 1.5,
    out_dir=None,
    tau_fs: float | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """A one-replica surrogate rollout kept in memory for analysis (metal units); ``progress``
    shows the rollout's progress bar.

    Returns ``positions`` (S+1, N, 3) unwrapped Å, ``velocities`` (S+1, N, 3) Å/ps, ``cell``
    (S+1, 3, 3) and ``stopped`` (the guard's message, or None)."""
    config = RolloutConfig.of(
        "rollout_arrays",
        dt_fs=dt_fs,
        steps=steps,
        temperature_K=temperature_K,
        thermostat=thermostat,
        tau_fs=tau_fs,
        seed=seed,
        min_distance_A=min_distance_A,
        out_dir=out_dir,
        # the caller owns out_dir (a report's rollout folder, claimed with the report)
        overwrite=True,
        progress=progress,
    )
    start = RolloutState.from_arrays([positions], [velocities], [cell], [species], [masses])
    run = record_rollout(model, start, config)
    return {
        "positions": run.positions,
        "velocities": run.velocities,
        "cell": np.repeat(np.asarray(cell, float)[None], len(run.positions), axis=0),
        "stopped": run.result.stopped_reason,
        "steps_completed": run.steps_completed,
        "result": run.result,
    }


def rollout_vs_lammps(
    model,
    cfg: EvaluateConfig,
    temperature: float,
    stride: float,
    test_temps: list[float],
    out: Path,
) -> dict[str, Any]:
    """Surrogate rollout and the dataset's own reference (LAMMPS or ASE) from the same
    held-out frame."""
    from .data.format import open_trajectories

    trajs = open_trajectories(cfg.data)
    tr = min(trajs, key=lambda t: abs(t.temperature_K - temperature))
    is_test = any(abs(tr.temperature_K - t) < 1e-6 for t in test_temps)
    start = 0 if is_test else int(0.8 * tr.n_frames)  # held-out frames only
    frame = tr.frame(start)
    # refused before the rollout, not after it: no reference, an element it lacks
    reference = evaluate_reference(cfg)
    material = _dataset_material(tr, reference)
    name = reference_label(reference)
    steps, tau = cfg.steps_for(stride), cfg.tau_for(stride)
    tag = f"{int(round(tr.temperature_K))}K_{stride:g}fs"
    thermostat = thermostat_text(
        {"thermostat": cfg.rollout_thermostat, "tau_fs": tau, "stride_fs": stride}
    )
    _say(
        cfg,
        f"rollout from a held-out frame at {tr.temperature_K:g} K: {steps} strides of "
        f"{stride:g} fs ({fs_to_ps(steps * stride):g} ps), {thermostat}",
    )
    t0 = time.perf_counter()
    sur = rollout_arrays(
        model,
        frame["positions"],
        frame["velocities"],
        frame["cell"],
        tr.species,
        tr.masses,
        dt_fs=stride,
        steps=steps,
        temperature_K=tr.temperature_K,
        thermostat=cfg.rollout_thermostat,
        seed=cfg.seed,
        min_distance_A=cfg.min_distance_A,
        out_dir=out / f"rollout_{tag}",
        tau_fs=tau,
        progress=cfg.progress,
    )
    sur_wall = time.perf_counter() - t0
    n_done = sur["steps_completed"]
    _say(
        cfg,
        f"surrogate: {n_done} / {steps} strides in {sur_wall:.0f} s"
        + (f"; stopped: {sur['stopped']}" if sur.get("stopped") else ""),
    )
    n = n_done + 1  # frames 0..n_done
    row: dict[str, Any] = {
        "temperature_K": tr.temperature_K,
        "start_frame": start,
        "stride_fs": stride,
        "thermostat": cfg.rollout_thermostat,
        "tau_fs": tau if cfg.rollout_thermostat != "none" else None,
        "steps_requested": steps,
        "steps_completed": n_done,
        "frames": n,
        "stopped": sur.get("stopped"),
    }
    nan = float("nan")
    scores = dict.fromkeys(ROLLOUT_SCORES, nan)
    tail = {
        "volume_A3_input_cell": float(analysis.volume(frame["cell"])),
        "surrogate_wall_s": sur_wall,
    }
    if n_done < 2:
        # Fewer than 3 frames: nothing to plot and no LAMMPS run to compare with; the row
        # still says how far it got and why it stopped.
        return {**row, **scores, **tail, "lammps_wall_s": 0.0, "plots": {}}
    # LAMMPS only as far as the surrogate got: frames 0..n_done
    _say(cfg, f"{name} reference from the same state: {n_done} strides of {stride:g} fs")
    ref = reference_md.lammps_reference(  # looked up at call time: tests record the calls
        frame["positions"],
        frame["velocities"],
        frame["cell"],
        stride,
        n_done,
        tr.temperature_K,
        cfg.rollout_thermostat,
        tau_fs=tau,
        potential=reference,
        material=material,
        species=tr.species,
    )
    t_ps = fs_to_ps(np.arange(n) * stride)
    half = slice(n // 2, n)
    r, g_sur = analysis.rdf(sur["positions"][half], sur["cell"][half], r_max=7.0)
    _, g_ref = analysis.rdf(ref["positions"][half], ref["cell"][half], r_max=7.0)
    _, msd_sur = analysis.msd(sur["positions"][:n], tr.masses)
    _, msd_ref = analysis.msd(ref["positions"][:n], tr.masses)
    temp_sur = analysis.kinetic_temperature(sur["velocities"][:n], tr.masses)
    temp_ref = analysis.kinetic_temperature(ref["velocities"][:n], tr.masses)
    f_sur, d_sur = analysis.vdos(sur["velocities"][:n], tr.masses, stride)
    f_ref, d_ref = analysis.vdos(ref["velocities"][:n], tr.masses, stride)
    label_s, label_r = f"{model.arch} Δt={stride:g} fs", f"{name} 1 fs"
    enough = {"frames": n, "min_frames": MIN_SCORE_FRAMES}
    pngs = {
        "rdf": plots.plot_rdf(
            out / f"rdf_{tag}.png", {label_s: (r, g_sur), label_r: (r, g_ref)}, **enough
        ),
        "msd": plots.plot_msd(
            out / f"msd_{tag}.png", {label_s: (t_ps, msd_sur), label_r: (t_ps, msd_ref)}, **enough
        ),
        "temperature": plots.plot_temperature(
            out / f"temperature_{tag}.png",
            {label_s: (t_ps, temp_sur), label_r: (t_ps, temp_ref)},
            target=tr.temperature_K,
            **enough,
        ),
        "vdos": plots.plot_vdos(
            out / f"vdos_{tag}.png", {label_s: (f_sur, d_sur), label_r: (f_ref, d_ref)}, **enough
        ),
    }
    result = {**row, **tail, "lammps_wall_s": ref["wall_s"]}
    result["plots"] = {k: Path(v).name for k, v in pngs.items()}
    if n < MIN_SCORE_FRAMES:
        return {**result, **scores}
    ts, tl = analysis.temperature_stats(t_ps, temp_sur), analysis.temperature_stats(t_ps, temp_ref)
    scores.update(
        {
            "rdf_l1": analysis.rdf_l1(r, g_sur, g_ref),
            "msd_ratio_end": float(msd_sur[-1] / msd_ref[-1]) if msd_ref[-1] > 0 else nan,
            "temperature_mean_K": ts["mean_K"],
            "temperature_drift_K_per_ps": ts["drift_K_per_ps"],
            "lammps_temperature_mean_K": tl["mean_K"],
            "lammps_temperature_drift_K_per_ps": tl["drift_K_per_ps"],
            "vdos_overlap": analysis.vdos_overlap(f_sur, d_sur, f_ref, d_ref),
        }
    )
    return {**result, **scores}


# ------------------------------------------------------------------------------ report
def reference_label(reference) -> str:
    """How reports name a reference: "LAMMPS EAM", "LAMMPS SNAP", "ASE EMT"."""
    if isinstance(reference, AseCalculator):
        return f"ASE {reference.name or 'calculator'}"
    kind = reference.kind
    return "LAMMPS " + ("EAM" if kind.startswith("eam") else kind.upper())


def _dataset_material(tr, reference=None):
    """The Material of a trajectory for its reference run: its element (or its elements, an
    alloy) with the masses the dataset recorded.

    One element carrying several masses is refused (``ValueError`` naming the file and the
    fields; a LAMMPS type has one mass), and so is an element ``reference`` (a LAMMPS
    potential or ASE calculator record) lacks, before anything runs."""
    where = f"trajectory file {tr.path}"
    material = state_material(tr.species, tr.masses, where)
    held = getattr(reference, "elements", None)  # a LAMMPS potential's types
    if held is not None and not set(material.elements) <= set(held):
        found = ", ".join(f"{chemical_symbols[int(z)]} ({int(z)})" for z in np.unique(tr.species))
        raise ValueError(
            f"{where}: field 'species' holds {found}; the dataset's reference "
            f"{reference.description} is for {', '.join(held)}; expected a reference for "
            "every element"
        )
    return material


def evaluate_reference(cfg: EvaluateConfig):
    """The reference of ``cfg.data`` that the rollouts are compared with
    (:func:`~equignnmd.data.reference_md.dataset_reference`: its LAMMPS potential or ASE
    calculator). ValueError naming the dataset when it has none (a converted dataset): there
    is no Al fallback. Called before anything is written."""
    return dataset_reference(read_index(cfg.data), f"evaluate: dataset {cfg.data} (--data)")


def _say(cfg: EvaluateConfig, text: str) -> None:
    """A progress line (``cfg.progress``), flushed at once."""
    if cfg.progress:
        print(f"      {text}", flush=True)


def _fmt(x: float | None, spec: str = ".5f") -> str:
    return NO_SCORE if x is None or not np.isfinite(x) else format(x, spec)


def thermostat_text(row: dict[str, Any]) -> str:
    """A rollout row's thermostat and its time constant: "CSVR, τ = 200 fs (10 strides)"."""
    kind = row.get("thermostat") or "none"
    if kind == "none" or not row.get("tau_fs"):
        return "none (NVE)" if kind == "none" else kind
    name = {"csvr": "CSVR", "langevin": "Langevin"}.get(kind, kind)
    tau = float(row["tau_fs"])
    return f"{name}, τ = {tau:g} fs ({tau / float(row['stride_fs']):g} strides)"


def render_report(result: dict[str, Any]) -> str:
    m = result["model"]
    lines = [
        f"# Evaluation report — `{m['arch']}`",
        "",
        f"Checkpoint `{m['checkpoint']}` ({m['parameters']:,} parameters, trained on strides "
        f"{m['train_strides_fs']} fs at {m['train_temperatures_K']} K); data `{result['data']}`.",
        "Errors are mean per-atom Euclidean position errors in Å over unwrapped coordinates.",
        "",
        f"## One-shot error versus Δt at the held-out {result['test_temperature_K']:g} K "
        "(paper's Table 4 layout)",
        "",
        f"| Δt fs | {m['arch']} | zero displacement | ballistic r+vΔt | 2nd-order Taylor "
        "| paper (Table 4) |",
        "|---|---|---|---|---|---|",
    ]
    for s, row in result["table4"].items():
        paper = PAPER_TABLE4_A.get(int(round(float(s))))
        cells = [_fmt(row.get(n, {}).get("pos_mean_A")) for n in ("model", *BASELINE_NAMES)]
        lines.append(f"| {float(s):g} | " + " | ".join(cells) + f" | {_fmt(paper)} |")
    lines += [f"- {note}" for note in result.get("notes", [])]
    s6 = result["table6_stride_fs"]
    lines += [
        "",
        f"## Error per temperature at Δt = {s6:g} fs (paper's Table 6 layout)",
        "",
        f"| T (K) | frames | {m['arch']} | zero | ballistic | Taylor |",
        "|---|---|---|---|---|---|",
    ]
    for temp, row in result["table6"].items():
        cells = [_fmt(row.get(n, {}).get("pos_mean_A")) for n in ("model", *BASELINE_NAMES)]
        lines.append(f"| {float(temp):g} | {row['split']} | " + " | ".join(cells) + " |")
    lines.append(
        f"\nThe paper reports {PAPER_TABLE6_RANGE_A[0]}–{PAPER_TABLE6_RANGE_A[1]} Å at every "
        "temperature from 5 to 800 K."
    )
    reference = result.get("reference", "LAMMPS EAM")
    lines += ["", f"## Rollouts against {reference} from the same state", ""]
    lines += [
        "| T (K) | Δt fs | thermostat | steps done / asked | RDF L1 | MSD ratio (end) "
        "| T mean (K) surrogate / LAMMPS | T drift (K/ps) | VDOS overlap |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for ro in result["rollouts"]:
        lines.append(
            f"| {ro['temperature_K']:g} | {ro['stride_fs']:g} | {thermostat_text(ro)} | "
            f"{ro['steps_completed']} / {ro['steps_requested']} | {_fmt(ro['rdf_l1'], '.4f')} | "
            f"{_fmt(ro['msd_ratio_end'], '.3f')} | {_fmt(ro['temperature_mean_K'], '.1f')} / "
            f"{_fmt(ro['lammps_temperature_mean_K'], '.1f')} | "
            f"{_fmt(ro['temperature_drift_K_per_ps'], '.2f')} | "
            f"{_fmt(ro['vdos_overlap'], '.3f')} |"
        )
    short = [ro for ro in result["rollouts"] if ro["steps_completed"] + 1 < MIN_SCORE_FRAMES]
    if short:
        lines.append(
            f"\n{NO_SCORE} : fewer than {MIN_SCORE_FRAMES} frames (start frame included); a "
            "score from a shorter rollout means nothing, and its plots say so."
        )
    for ro in result["rollouts"]:
        where = f"{ro['temperature_K']:g} K, Δt = {ro['stride_fs']:g} fs"
        if ro.get("stopped"):
            lines.append(f"\nRollout at {where} stopped: {ro['stopped']}")
        lines.append(
            f"\nVolume at {where}: {ro['volume_A3_input_cell']:.1f} Å³ — the "
            "input cell; a fixed-cell surrogate does not predict volume."
        )
        lines += [f"\n![{k}]({v})" for k, v in ro["plots"].items()]
        if ro["steps_completed"] + 1 < MIN_SCORE_FRAMES:
            lines.append(
                f"\nNo scores at {where}: the rollout has {ro['steps_completed'] + 1} frame(s) "
                f"({ro['steps_completed']} of {ro['steps_requested']} strides), fewer than the "
                f"{MIN_SCORE_FRAMES} a score needs."
            )
    lines += ["", f"![error vs Δt]({result['plots']['error_vs_dt']})", ""]
    return "\n".join(lines)


def evaluate(cfg: EvaluateConfig) -> dict[str, Any]:
    """Run the whole evaluation and write ``report.md``, ``metrics.json`` and PNGs."""
    from .device import pick_device

    out = Path(cfg.out)
    reference = evaluate_reference(cfg)  # a dataset without one: refused before any output
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model = load_checkpoint(cfg.checkpoint, device=pick_device(cfg.device))
    meta = read_index(cfg.data)
    temps = [float(t["temperature_K"]) for t in meta["trajectories"]]
    test_temps = [float(t) for t in meta.get("test_temperatures_K") or []]
    test_T = cfg.test_temperature_K or (test_temps[0] if test_temps else temps[0])
    if test_T not in test_temps:
        test_temps = [*test_temps, test_T]
    train_strides = list(model.stats.strides_fs)
    s6 = cfg.table6_stride_fs or max(train_strides)
    rollout_strides = cfg.rollout_strides_fs or [max(train_strides)]
    _say(
        cfg,
        f"one-shot errors at {test_T:g} K: strides {', '.join(f'{x:g}' for x in cfg.strides_fs)} "
        f"fs, up to {cfg.max_pairs} start frames each, beside the baselines",
    )
    t4, notes = table4(model, cfg, test_T)
    _say(cfg, f"error per temperature at Δt = {s6:g} fs")
    t6 = table6(model, cfg, s6, test_temps)
    rollouts = [
        rollout_vs_lammps(model, cfg, T, stride, test_temps, out)
        for T in (cfg.rollout_temperatures_K or [test_T])
        for stride in rollout_strides
    ]
    titles = {"model": f"{model.arch} model (this checkpoint)", **BASELINE_TITLES}
    curves = {
        titles[name]: (list(t4), [t4[s][name]["pos_mean_A"] for s in t4])
        for name in ("model", *BASELINE_NAMES)
        if all(name in t4[s] for s in t4)
    }
    curves["published paper (Table 4)"] = (list(PAPER_TABLE4_A), list(PAPER_TABLE4_A.values()))
    err_png = plots.plot_error_vs_dt(out / "error_vs_dt.png", curves)
    result = {
        "data": str(cfg.data),
        "config": asdict(cfg),
        "model": {
            "arch": model.arch,
            "checkpoint": str(cfg.checkpoint),
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_strides_fs": train_strides,
            "train_temperatures_K": list(model.stats.temperature_range_K),
        },
        "test_temperature_K": test_T,
        "table4": t4,
        "notes": notes,
        "table6_stride_fs": s6,
        "table6": t6,
        "rollouts": rollouts,
        "reference": reference_label(reference),
        "plots": {"error_vs_dt": Path(err_png).name},
    }
    write_atomic(out / "metrics.json", json.dumps(json_safe(result), indent=2, allow_nan=False))
    write_atomic(out / "report.md", render_report(result))
    return result
