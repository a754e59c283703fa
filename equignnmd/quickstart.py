"""``equignnmd quickstart``: the main job on a small built-in default, in one command.

generate the quick dataset → train a small ``equivariant`` model briefly → evaluate it against
the baselines and a LAMMPS reference → write the report. Each stage reuses what a previous run
left (complete dataset files, the training run's ``last.pt``, which ``--resume`` continues).
"""

from __future__ import annotations

import time
from pathlib import Path

from .config import CONFIG_DIR

QUICK_EPOCHS = 6
QUICK_TRAIN = {
    "strides_fs": [5.0, 10.0, 20.0, 50.0],
    "batch_size": 4,
    "max_train_samples": 400,  # per epoch; keeps the whole quick start under 15 min on 2 cores
    "max_val_samples": 32,
    "start_every_fs": 5.0,
}


def quickstart(
    out: str | Path = "quickstart",
    epochs: int | None = None,
    device="auto",
    data_overrides: dict | None = None,
    train_overrides: dict | None = None,
    rollout_steps: int = 200,
):
    """Run the pipeline into ``out``; the ``*_overrides`` exist for tests (smaller runs)."""
    from .checkpoint import read_checkpoint
    from .config import load_config
    from .data.generate import GenerateConfig, generate
    from .evaluate import EvaluateConfig, evaluate
    from .train import load_run_spec, train

    out = Path(out)
    t0 = time.time()
    data = out / "data"
    print(f"[1/3] reference data (LAMMPS EAM, 256 atoms) → {data}")
    cfg = load_config(
        GenerateConfig,
        CONFIG_DIR / "data" / "quick.yaml",
        {**(data_overrides or {}), "output": str(data)},
    )
    generate(cfg, command_line="equignnmd quickstart")
    run = out / "run"
    epochs = epochs or QUICK_EPOCHS
    spec = load_run_spec(
        CONFIG_DIR / "equivariant-small.yaml",
        train_overrides={
            **QUICK_TRAIN,
            **(train_overrides or {}),
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
    print(f"[2/3] training a small equivariant model for {epochs} epochs → {run}")
    if done < epochs:
        train(spec, resume=last.exists())
    else:
        print(f"      reusing {last} ({done} epochs done)")
    report = out / "report"
    print(f"[3/3] evaluation against the baselines and LAMMPS → {report}")
    evaluate(
        EvaluateConfig(
            checkpoint=str(run / "best.pt"),
            data=str(data),
            out=str(report),
            strides_fs=[1, 5, 10, 15, 20, 30, 40, 50],
            rollout_steps=rollout_steps,
            device=device,
        )
    )
    demo = out / "demo_rollout"
    print(f"[demo] rollout of the shipped pretrained:equivariant-al model → {demo}")
    demo_rollout(data, demo, steps=rollout_steps, device=device)
    minutes = (time.time() - t0) / 60
    print(f"\ndone in {minutes:.1f} min")
    print(f"report: {report / 'report.md'}")
    print(f"plots:  {', '.join(sorted(p.name for p in report.glob('*.png')))} in {report}")
    print(f"demo:   {demo / 'replica_000.extxyz'} and {demo / 'thermo.csv'}")
    return report


def demo_rollout(data: Path, out: Path, steps: int = 200, device="auto", dt_fs: float = 10.0):
    """NVT (CSVR) rollout of the pretrained equivariant model from the held-out frame 0.

    The thermostat is tight (τ = 10 strides): the shipped model gains a few per cent of
    kinetic energy per stride, which a 100-stride thermostat lets build up to 10–60 % above the
    set point (see the model card); 10 strides hold it near the set point."""
    from .checkpoint import load_checkpoint
    from .data.format import dataset_frame, read_index
    from .device import pick_device
    from .rollout import Rollout, RolloutConfig
    from .units import fs_to_ps

    test = read_index(data).get("test_temperatures_K") or [None]
    atoms, temperature = dataset_frame(str(data), 0, test[0])
    model = load_checkpoint("pretrained:equivariant-al", device=pick_device(device))
    config = RolloutConfig.of(
        "quickstart demo rollout",
        dt_fs=dt_fs,
        steps=steps,
        temperature_K=temperature,
        thermostat="csvr",
        tau_fs=10.0 * dt_fs,
        out_dir=out,
        write_every=10,
        progress=False,
    )
    with Rollout(model, atoms, config) as ro:
        result = ro.run()
    done = int(result.step[-1])
    print(
        f"      {done} steps × {dt_fs:g} fs = {fs_to_ps(done * dt_fs):g} ps at {temperature:g} K: "
        f"{result.ns_per_day:.3g} ns/day, mean T {result.temperature_K[1:].mean():.0f} K "
        f"(CSVR τ = {10 * dt_fs:g} fs)"
        + ("" if result.completed else f"; stopped: {result.stopped_reason}")
    )
    return result
