"""The surrogate inside LAMMPS: cost of a stride through ``fix external`` against the rollout
engine on the same box, on 1 and more MPI ranks, and the memory per atom.

    python benchmarks/lammps_fix.py [--model pretrained:equivariant-al] [--cells 5 10]
        [--ranks 1 2] [--steps 5] [--max-mpi-cells 10] [--out benchmarks/results/lammps-fix.md]

Every measurement runs in its own process (one torch thread per process, one process per
rank), so that its peak resident memory is its own: ``engine`` (:class:`equignnmd.rollout.
Rollout`, NVE), ``fix`` (:class:`equignnmd.lammps.SurrogateFix` serial, periodic graph) and
``fix × N`` (``mpiexec -n N``, each rank's atoms and ghosts as a cluster). Cubic FCC Al boxes
of ``cells``³ conventional cells at 4.0868 Å, 450 K Maxwell–Boltzmann velocities, Δt 20 fs;
one untimed stride, then the median of ``steps`` timed strides' mean.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

LATTICE_A = 4.0868
DT_FS = 20.0


def _setup(cells: int) -> list[str]:
    return [
        "units metal",
        "boundary p p p",
        "atom_style atomic",
        f"lattice fcc {LATTICE_A}",
        f"region b block 0 {cells} 0 {cells} 0 {cells}",
        "create_box 1 b",
        "create_atoms 1 region b",
        "mass 1 26.9815",
        "pair_style zero 6.5",
        "pair_coeff * *",
        "velocity all create 450 4928459 mom yes dist gaussian loop geom",
    ]


def worker(kind: str, model_name: str, cells: int, steps: int) -> dict:
    """One measurement in this process; the row on rank 0 (None elsewhere)."""
    import numpy as np
    import torch

    torch.set_num_threads(1)
    import equignnmd
    from equignnmd._lammps import new_lammps

    model = equignnmd.load_checkpoint(model_name, device="cpu")
    lmp = new_lammps()
    for c in _setup(cells):
        lmp.command(c)
    natoms = int(lmp.get_natoms())
    times, ghosts, rank, ranks = [], 0, 0, 1
    if kind == "engine":
        from equignnmd.lammps import _Box
        from equignnmd.rollout import Rollout, RolloutState

        box = _Box.of(lmp)
        x = np.ctypeslib.as_array(lmp.gather_atoms("x", 1, 3)).reshape(-1, 3)
        v = np.ctypeslib.as_array(lmp.gather_atoms("v", 1, 3)).reshape(-1, 3)
        lmp.close()
        first = RolloutState.from_arrays(
            [x], [v], [box.cell], [np.full(natoms, 13)], [np.full(natoms, 26.9815)]
        )
        ro = Rollout(model, first, DT_FS, steps=1, progress=False)
        ro.run(1)
        for _ in range(steps):
            t0 = time.perf_counter()
            ro.run(1)
            times.append(time.perf_counter() - t0)
    else:
        from equignnmd.lammps import SurrogateFix

        fix = SurrogateFix(lmp, model, dt_fs=DT_FS)
        rank, ranks = fix.rank, fix.nprocs
        fix.run(1)
        ghosts = int(lmp.extract_global("nghost"))
        for _ in range(steps):
            t0 = time.perf_counter()
            fix.run(1)
            times.append(time.perf_counter() - t0)
        lmp.close()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    if ranks > 1:
        from mpi4py import MPI

        comm = MPI.COMM_WORLD
        times = [comm.allreduce(t, op=MPI.MAX) for t in times]
        rss_mb = comm.allreduce(rss_mb, op=MPI.SUM)
        ghosts = comm.allreduce(ghosts, op=MPI.SUM) / ranks
    if rank != 0:
        return None
    ms = 1000.0 * statistics.median(times)
    return {
        "kind": kind if ranks == 1 else f"fix × {ranks} ranks",
        "atoms": natoms,
        "ranks": ranks,
        "ghosts_per_rank": ghosts,
        "ms_step": ms,
        "us_atom_step": 1000.0 * ms / natoms,
        "rss_mb": rss_mb,
    }


def measure(model: str, cells: int, kind: str, ranks: int, steps: int) -> dict:
    """Run one worker (``mpiexec -n ranks`` for ``fix`` with ranks > 1); its row."""
    cmd = [sys.executable, __file__, "--worker", kind, "--model", model]
    cmd += ["--cells", str(cells), "--steps", str(steps)]
    if ranks > 1:
        mpiexec = Path(sys.executable).parent / "mpiexec"
        cmd = [str(mpiexec if mpiexec.exists() else "mpiexec"), "-n", str(ranks), *cmd]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "passive"}
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def report(model: str, rows: list[dict], steps: int) -> str:
    lines = [
        f"# The surrogate inside LAMMPS (`{model}`, Δt {DT_FS:g} fs, float32, 1 thread/rank)",
        "",
        f"Command: `python benchmarks/lammps_fix.py --model {model} ...`; median of {steps} "
        "strides. `engine`: equignnmd's rollout loop; `fix`: SurrogateFix serial (periodic "
        "graph, ghosts moved by atom ID); `fix × N`: N MPI ranks, each running the model on "
        "its atoms and ghosts out to layers × cutoff + outputs_cutoff_A + 1 Å.",
        "",
        "| run | atoms | ghosts/rank | ms/stride | µs/atom-stride | of engine | peak RSS MB "
        "(all ranks) | RSS kB/atom |",
        "|---|---|---|---|---|---|---|---|",
    ]
    engine = {r["atoms"]: r["ms_step"] for r in rows if r["kind"] == "engine"}
    for r in rows:
        base = engine.get(r["atoms"])
        rel = f"{r['ms_step'] / base:.2f}×" if base else "–"
        lines.append(
            f"| {r['kind']} | {r['atoms']} | {r['ghosts_per_rank']:.0f} | {r['ms_step']:.1f} | "
            f"{r['us_atom_step']:.1f} | {rel} | {r['rss_mb']:.0f} | "
            f"{1024.0 * r['rss_mb'] / r['atoms']:.1f} |"
        )
    serial = sorted((r["atoms"], r["rss_mb"]) for r in rows if r["kind"] == "fix")
    if len(serial) >= 2:
        (n0, m0), (n1, m1) = serial[0], serial[-1]
        per_atom_kb = 1024.0 * (m1 - m0) / (n1 - n0)
        lines += [
            "",
            f"Memory per atom (serial fix, slope of peak RSS between {n0} and {n1} atoms): "
            f"{per_atom_kb:.1f} kB/atom; a 1,000,000-atom box would need about "
            f"{per_atom_kb * 1e6 / 1024**2:.1f} GB beyond the {m0 - per_atom_kb * n0 / 1024:.0f} "
            "MB a process starts with, split over the ranks (plus each rank's ghosts).",
        ]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="pretrained:equivariant-al")
    p.add_argument("--cells", type=int, nargs="+", default=[5, 10])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2])
    p.add_argument("--steps", type=int, default=5)
    p.add_argument(
        "--max-mpi-cells", type=int, default=10, help="no multi-rank rows for larger boxes"
    )
    p.add_argument("--out", default="benchmarks/results/lammps-fix.md")
    p.add_argument("--worker", choices=["engine", "fix"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        row = worker(args.worker, args.model, args.cells[0], args.steps)
        if row is not None:
            print(json.dumps(row), flush=True)
        return 0
    rows = []
    for cells in args.cells:
        rows.append(measure(args.model, cells, "engine", 1, args.steps))
        for ranks in args.ranks:
            if ranks == 1 or cells <= args.max_mpi_cells:
                rows.append(measure(args.model, cells, "fix", ranks, args.steps))
        print(json.dumps(rows[-1]), flush=True)
    text = report(args.model, rows, args.steps)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
