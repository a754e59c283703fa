"""Training throughput per architecture: 1 versus 2 DDP processes on CPU (gloo, torchrun)."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
import time

import pytest
from _machine import usable_cores
from _plan import ARCHS, REPO

from equignnmd.config import resolve_config

pytestmark = pytest.mark.training
BATCH_SIZE = 2
STRIDES = "5,10,20,50"


def torchrun_command(processes: int) -> list[str]:
    exe = shutil.which("torchrun", path=os.path.dirname(sys.executable))
    launcher = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
    return [*launcher, "--standalone", f"--nproc_per_node={processes}"]


def _cases():
    return [(arch, p) for arch in ARCHS for p in (1, 2)]


@pytest.mark.parametrize("arch,processes", _cases(), ids=[f"{a}-{p}proc" for a, p in _cases()])
def test_training_throughput(arch, processes, plan, results, bench_dataset, tmp_path):
    if not plan.training:
        pytest.skip(f"training throughput is not part of the {plan.mode} mode")
    cores = usable_cores()
    threads = max(1, cores // processes)
    out = tmp_path / f"{arch}-{processes}"
    cmd = [
        *torchrun_command(processes),
        "-m",
        "equignnmd",
        "train",
        "--config",
        str(resolve_config(arch)),
        "--data",
        str(bench_dataset),
        "--out",
        str(out),
        "--epochs",
        "1",
        "--batch-size",
        str(BATCH_SIZE),
        "--strides",
        STRIDES,
        "--device",
        "cpu",
        "--no-progress",
        "--set",
        f"max_train_samples={plan.train_samples}",
        "--set",
        "max_val_samples=2",
    ]
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1800, check=False
    )
    wall = time.perf_counter() - t0
    row = {
        "system": arch,
        "processes": processes,
        "threads": threads,
        "samples": plan.train_samples,
        "batch_size": BATCH_SIZE,
        "wall_s": wall,
    }
    metrics = out / "metrics.csv"
    if proc.returncode != 0 or not metrics.exists():
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-4:]
        row["notes"] = f"failed (exit {proc.returncode}): {' / '.join(tail)}"
        results.add("training", row)
        pytest.fail(row["notes"])
    with open(metrics) as f:
        last = list(csv.DictReader(f))[-1]
    row.update(
        samples_per_s=float(last["samples_per_s"]),
        atoms_per_s=float(last["atoms_per_s"]),
        epoch_s=float(last["epoch_time_s"]),
        notes=f"default config {arch}.yaml; 1 epoch of {plan.train_samples} samples",
    )
    if processes > 1:
        base = [
            r
            for r in results.rows["training"]
            if r["system"] == arch and r["processes"] == 1 and r.get("samples_per_s")
        ]
        if base:
            row["speedup"] = row["samples_per_s"] / base[0]["samples_per_s"]
    if processes > cores:
        row["notes"] += f"; more processes than the {cores} cores"
    results.add("training", row)
    assert row["samples_per_s"] > 0 and row["atoms_per_s"] > 0
