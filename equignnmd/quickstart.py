"""``equignnmd quickstart``: the main job on a small built-in default, in one command.

generate the quick dataset → train a small ``equivariant`` model briefly → evaluate it against
the baselines and a LAMMPS reference → a demo rollout of the shipped model → the report. Each
stage reuses what a previous run left (complete dataset files, the training run's ``last.pt``,
which ``--resume`` continues).

What it shows is what works: both rollouts (the evaluation's, against LAMMPS, and the demo of
the shipped :data:`DEMO_CHECKPOINT`) run at :data:`ROLLOUT_DT_FS` with a CSVR thermostat of
τ = :data:`ROLLOUT_TAU_STRIDES` strides, where a briefly trained free-form model is stable too
(docs/studies/issue-7-reference-models.md: the shipped free-form ``equivariant-al`` is not at
50 fs or at τ = 100 strides). The small model trains for minutes on
a CPU, so its numbers show the pipeline working, not the accuracy of a trained model.
"""

from __future__ import annotations

import math
import os
import platform
import re
import time
from pathlib import Path

from .config import CONFIG_DIR
from .outputs import describe_contents

QUICKSTART_TIME = "about 2 min"
"""The quick start's measured wall time on the 2-core CPU, data included (``--help``, README)."""
QUICK_EPOCHS = 6
QUICK_DATA = {"production_ps": 3.0, "record_every_fs": 5.0}
"""Overrides of ``configs/data/quick.yaml``: frames every 5 fs (every stride the quick start
uses is a multiple of 5 fs), which makes LAMMPS' per-frame descriptors 5× cheaper."""
QUICK_TRAIN = {
    "strides_fs": [5.0, 10.0, 20.0, 50.0],
    "batch_size": 4,
    "max_train_samples": 400,  # per epoch
    "max_val_samples": 32,
    "start_every_fs": 5.0,
}
EVAL_STRIDES_FS = [5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0]
ROLLOUT_DT_FS = 20.0
"""Stride of both quick-start rollouts, fs."""
ROLLOUT_TAU_STRIDES = 10.0
"""CSVR time constant of both rollouts, in strides (τ = 200 fs at 20 fs)."""
ROLLOUT_STEPS = 200
"""Strides per rollout (4 ps at 20 fs; ≥ the 50 frames a rollout score needs)."""
DEMO_CHECKPOINT = "pretrained:symplectic-al"
"""The shipped model of the demo rollout: the one whose long trajectories match LAMMPS
(docs/pretrained.md)."""


def machine() -> dict:
    """CPU model, logical CPUs, torch threads, OMP_NUM_THREADS and the 1-min load average."""
    import torch

    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    return {
        "cpu": found.group(1).strip() if found else (platform.processor() or "unknown CPU"),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
        "load_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def machine_text(info: dict, load_at_start: float | None = None) -> str:
    """The machine in words: CPU, CPUs, torch threads, 1-min load at the start and end."""
    text = f"{info['cpu']}, {info['cpus']} CPUs, torch on {info['torch_threads']} thread(s)"
    if info["load_1min"] is not None and load_at_start is not None:
        text += f", 1-min load {load_at_start:.1f} at the start, {info['load_1min']:.1f} at the end"
    return text


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)} min {int(round(seconds % 60)):02d} s"


def quickstart(
    out: str | Path = "quickstart",
    epochs: int | None = None,
    device="auto",
    data_overrides: dict | None = None,
    train_overrides: dict | None = None,
    rollout_steps: int = ROLLOUT_STEPS,
):
    """Run the pipeline into ``out``; the ``*_overrides`` exist for tests (smaller runs)."""
    from .checkpoint import read_checkpoint
    from .config import load_config
    from .data.generate import GenerateConfig, generate
    from .evaluate import MIN_SCORE_FRAMES, EvaluateConfig, evaluate, thermostat_text
    from .io import write_atomic
    from .train import load_run_spec, train

    out = Path(out)
    if out.is_dir() and any(out.iterdir()):  # documented: a second call continues the first
        print(
            f"quickstart: {out} holds an earlier run ({describe_contents(out)}): reusing its "
            "finished dataset files and training run (last.pt); the evaluation and the demo "
            "run again. Remove the folder, or give another --out, to start anew.",
            flush=True,
        )
    t0 = time.perf_counter()
    start_machine = machine()
    stages: dict[str, float] = {}
    data = out / "data"
    print(f"[1/3] reference data (LAMMPS EAM, 256 atoms, 300/350/800 K) → {data}", flush=True)
    cfg = load_config(
        GenerateConfig,
        CONFIG_DIR / "data" / "quick.yaml",
        {**QUICK_DATA, **(data_overrides or {}), "output": str(data)},
    )
    generate(cfg, command_line="equignnmd quickstart")
    stages["data"] = time.perf_counter() - t0
    run = out / "run"
    epochs = epochs or QUICK_EPOCHS
    train_values = {**QUICK_TRAIN, **(train_overrides or {})}
    spec = load_run_spec(
        CONFIG_DIR / "equivariant-small.yaml",
        train_overrides={
            **train_values,
            "data": str(data),
            "out": str(run),
            "epochs": epochs,
            "device": device,
        },
    )
    last = run / "last.pt"
    done = 0
    if last.exists():
        done = int(read_checkpoint(last)["trainer"]["epoch"]) + 1
    print(
        f"[2/3] training a small equivariant model for {epochs} epochs × "
        f"{train_values['max_train_samples']} pairs → {run}",
        flush=True,
    )
    t = time.perf_counter()
    if done < epochs:
        # its own run: continued from last.pt, or started over (a run killed before its first
        # checkpoint left files but nothing to continue)
        train(spec, resume=last.exists(), overwrite=not last.exists())
    else:
        print(f"      reusing {last} ({done} epochs done)")
    stages["training"] = time.perf_counter() - t
    report = out / "report"
    tau_fs = ROLLOUT_TAU_STRIDES * ROLLOUT_DT_FS
    rollout_row = {"thermostat": "csvr", "tau_fs": tau_fs, "stride_fs": ROLLOUT_DT_FS}
    settings = f"Δt = {ROLLOUT_DT_FS:g} fs, {thermostat_text(rollout_row)}"
    print(f"[3/3] evaluation against the baselines and LAMMPS ({settings}) → {report}", flush=True)
    t = time.perf_counter()
    result = evaluate(
        EvaluateConfig(
            checkpoint=str(run / "best.pt"),
            data=str(data),
            out=str(report),
            strides_fs=EVAL_STRIDES_FS,
            rollout_strides_fs=[ROLLOUT_DT_FS],
            rollout_steps=rollout_steps,
            rollout_thermostat="csvr",
            rollout_tau_fs=tau_fs,
            device=device,
        )
    )
    stages["evaluation"] = time.perf_counter() - t
    demo = out / "demo_rollout"
    print(f"[demo] rollout of the shipped {DEMO_CHECKPOINT} ({settings}) → {demo}")
    t = time.perf_counter()
    demo_result = demo_rollout(data, demo, steps=rollout_steps, device=device)
    stages["demo rollout"] = time.perf_counter() - t
    total = time.perf_counter() - t0
    info = machine()
    ro = result["rollouts"][0]
    mean_T = ro.get("temperature_mean_K")
    scored = mean_T is not None and math.isfinite(mean_T)
    summary = [
        f"Rollouts (evaluation and demo): {settings}, {rollout_steps} strides "
        f"({rollout_steps * ROLLOUT_DT_FS / 1000:g} ps) at {ro['temperature_K']:g} K.",
        f"Evaluation rollout: {ro['steps_completed']} / {ro['steps_requested']} strides"
        + (f", stopped: {ro['stopped']}" if ro.get("stopped") else "")
        + (
            f"; mean T {mean_T:.0f} K (LAMMPS {ro['lammps_temperature_mean_K']:.0f} K)."
            if scored
            else f"; too short to score (fewer than {MIN_SCORE_FRAMES} frames)."
        ),
        f"Demo rollout: {demo_result['text']}.",
        f"The small model trained {epochs} epochs × {train_values['max_train_samples']} pairs "
        f"({_minutes(stages['training'])}): its numbers show the pipeline working, not a "
        "trained model's accuracy (docs/pretrained.md, for the shipped ones).",
        f"Wall time {_minutes(total)} ("
        + ", ".join(f"{k} {_minutes(v)}" for k, v in stages.items())
        + f") on {machine_text(info, start_machine['load_1min'])}.",
    ]
    text = (report / "report.md").read_text()
    section = "\n## This quick start\n\n" + "\n".join(f"- {line}" for line in summary) + "\n"
    write_atomic(report / "report.md", text + section)
    print()
    for line in summary:
        print(line)
    print(f"report: {report / 'report.md'}")
    print(f"plots:  {', '.join(sorted(p.name for p in report.glob('*.png')))} in {report}")
    print(f"demo:   {demo / 'replica_000.extxyz'} and {demo / 'thermo.csv'}")
    return report


def demo_rollout(
    data: Path,
    out: Path,
    steps: int = ROLLOUT_STEPS,
    device="auto",
    dt_fs: float = ROLLOUT_DT_FS,
    tau_strides: float = ROLLOUT_TAU_STRIDES,
) -> dict:
    """NVT (CSVR) rollout of :data:`DEMO_CHECKPOINT` from the held-out frame 0.

    The shipped ``symplectic-al`` holds the set point within ~1 % at 20 and 50 fs over
    100 ps (docs/studies/2026-12-06-issue-12-symplectic-v3.md); ``pretrained:equivariant-al-v1``,
    the demo before, settles 10–15 % above it at τ = 10 strides. Returns the rollout result
    and a one-line ``text``."""
    from .checkpoint import load_checkpoint
    from .data.format import dataset_frame, read_index
    from .device import pick_device
    from .rollout import Rollout, RolloutConfig
    from .units import fs_to_ps

    test = read_index(data).get("test_temperatures_K") or [None]
    atoms, temperature = dataset_frame(str(data), 0, test[0])
    model = load_checkpoint(DEMO_CHECKPOINT, device=pick_device(device))
    config = RolloutConfig.of(
        "quickstart demo rollout",
        dt_fs=dt_fs,
        steps=steps,
        temperature_K=temperature,
        thermostat="csvr",
        tau_fs=tau_strides * dt_fs,
        out_dir=out,
        overwrite=True,  # the quick start runs its demo again on every call (documented)
        write_every=10,
        progress=True,
    )
    with Rollout(model, atoms, config) as ro:
        result = ro.run()
    done = int(result.step[-1])
    text = (
        f"{done} / {steps} strides × {dt_fs:g} fs = {fs_to_ps(done * dt_fs):g} ps at "
        f"{temperature:g} K, mean T {result.temperature_K[1:].mean():.0f} K, "
        f"{result.ns_per_day:.3g} ns/day"
        + ("" if result.completed else f"; stopped: {result.stopped_reason}")
    )
    print(f"      {text}", flush=True)
    return {"result": result, "text": text}
