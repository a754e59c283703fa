"""A reference's largest stable velocity-Verlet step, and its cost per atom-step (issue 36).

The reference is any that ``equignnmd generate`` takes — an ASE calculator (``--calculator
sevennet-0``, ``--calculator ase.calculators.emt:EMT``) or a LAMMPS potential (``--potential
Al_mm.eam.fs``) — on the crystal ``generate`` builds for it (``--elements``, ``--lattice``,
``--cells``; the lattice constant given or the reference's own 0-K value, as there). One
equilibrated state, then NVE runs of equal simulated time at every step from that same state:

1. the crystal, velocities at 2 × T (``generate``'s start), ``--equilibrate-steps`` steps of
   CSVR (``--equilibrate-fs`` each, τ = ``--tdamp-fs``) at ``--temperature``;
2. per step Δt of ``--steps-fs``: velocity Verlet (NVE) for ``--nve-ps``, the total energy
   sampled every step; the drift is the slope of a least-squares line (meV/atom/ps,
   :func:`equignnmd.fidelity.score.nve_row`, :func:`equignnmd.analysis.linear_drift`), beside
   the energy's RMS fluctuation about that line (meV/atom) and the change end − start;
3. the cost: wall time of the MD steps alone (the frames' reading not counted) per atom-step,
   in this process on torch's / LAMMPS' threads as set (``OMP_NUM_THREADS``);
4. what that means for a dataset: a ``generate`` config (``--estimate-config``, default
   ``diverse``, issue 34's 28 states) at ``--estimate-cells`` and at every measured step, its
   atom-steps (:meth:`~equignnmd.data.generate.GenerateConfig.atom_steps`) at the median
   measured cost plus the recording (:meth:`~equignnmd.data.generate.GenerateConfig.estimate_s`).
   ``--from-json`` re-prints both tables from a saved result without running anything.

Every run goes through the package's drivers (:func:`equignnmd.data.reference_md.reference_md`:
:class:`~equignnmd.data.calculator_md.AseMD` or :class:`~equignnmd.data.lammps_md.LammpsMD`)::

    OMP_NUM_THREADS=1 python studies/reference_stable_step.py --calculator sevennet-0 \\
        --cells 3 --out runs/sevennet-stable-step.json
    OMP_NUM_THREADS=1 python studies/reference_stable_step.py --potential Al_mm.eam.fs \\
        --cells 3 --steps-fs 1,2,5,10,20 --nve-ps 2
    python studies/reference_stable_step.py --from-json runs/sevennet-stable-step.json

Results: docs/studies/2026-12-07-issue-36-sevennet-reference.md.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from equignnmd.config import ConfigError, load_config, resolve_config
from equignnmd.data.generate import GenerateConfig, crystal_material
from equignnmd.data.reference_md import reference_md
from equignnmd.fidelity.score import nve_row


@dataclass(frozen=True)
class StepRow:
    """One NVE run at ``step_fs`` from the equilibrated state."""

    step_fs: float
    steps: int
    duration_ps: float
    drift_meV_per_atom_ps: float
    """slope of the least-squares line through the total energy"""
    fluctuation_meV_per_atom: float
    """RMS of the total energy about that line"""
    change_meV_per_atom: float
    """total energy at the end − at the start"""
    temperature_mean_K: float
    finite: bool
    """every sampled energy finite"""
    wall_s: float
    """wall time of the MD steps alone"""
    us_per_atom_step: float


def study_config(args: argparse.Namespace) -> GenerateConfig:
    """``generate``'s config of the reference and crystal named by the options (its checks:
    errors name the option)."""
    overrides = {
        "element": args.elements,
        "lattice": args.lattice,
        "cells": args.cells,
        "temperatures_K": [args.temperature],
        "test_temperatures_K": [],
        "seed": args.seed,
        "descriptors": False,
        "mpi_ranks": 1,
    }
    if args.lattice_constant is not None:
        overrides["lattice_A"] = args.lattice_constant
    if args.calculator:
        overrides["calculator"] = args.calculator
    elif args.potential:
        overrides["potential"] = args.potential
    return load_config(GenerateConfig, overrides=overrides)


def equilibrate(cfg: GenerateConfig, settings, steps: int, step_fs: float, tdamp_fs: float):
    """The crystal of ``settings`` after ``steps`` CSVR steps of ``step_fs`` (τ ``tdamp_fs``)
    at its temperature: a state (positions unwrapped Å, velocities Å/ps, cell Å, species) and
    the wall time, s."""
    eq = replace(settings, timestep_fs=step_fs, ensemble="csvr", tdamp_fs=tdamp_fs)
    t0 = time.perf_counter()
    with reference_md(eq) as md:
        md.run(steps)
        frame = md.frame()
        species = md.species()
    state = {k: frame[k] for k in ("positions", "velocities", "cell")}
    return state | {"species": species}, time.perf_counter() - t0, frame["thermo"]


def nve_run(settings, state: dict, step_fs: float, steps: int) -> tuple[dict, float]:
    """Velocity Verlet at ``step_fs`` for ``steps`` steps from ``state``, the energy sampled
    every step: (``time_ps``, ``total_energy_eV``, ``temperature_K`` arrays; the wall time of
    the steps alone, s). A run whose energy turns non-finite stops there."""
    nve = replace(settings, timestep_fs=step_fs, ensemble="nve")
    t, e, temp = [], [], []
    wall = 0.0
    with reference_md(nve, state=state) as md:
        for k in range(steps + 1):
            if k:
                t0 = time.perf_counter()
                md.run(1)
                wall += time.perf_counter() - t0
            thermo = md.frame()["thermo"]
            t.append(k * step_fs / 1000.0)
            e.append(thermo["etotal_eV"])
            temp.append(thermo["temperature_K"])
            if not math.isfinite(e[-1]):
                break
    run = {"time_ps": np.array(t), "total_energy_eV": np.array(e), "temperature_K": np.array(temp)}
    return run, wall


def step_row(run: dict, step_fs: float, n_atoms: int, wall_s: float) -> StepRow:
    """The table row of one NVE run (drift through :func:`nve_row`)."""
    t, e = run["time_ps"], run["total_energy_eV"]
    finite = bool(np.isfinite(e).all())
    row = nve_row(f"{step_fs:g} fs", run, n_atoms, step_fs) if finite else {}
    fit = np.polyval(np.polyfit(t, e, 1), t) if finite and len(t) >= 3 else e
    steps = len(t) - 1
    return StepRow(
        step_fs=step_fs,
        steps=steps,
        duration_ps=float(t[-1] - t[0]),
        drift_meV_per_atom_ps=row.get("drift_meV_per_atom_ps") or math.nan,
        fluctuation_meV_per_atom=1000.0 * float(np.sqrt(np.mean((e - fit) ** 2))) / n_atoms,
        change_meV_per_atom=row.get("energy_change_meV_per_atom") or math.nan,
        temperature_mean_K=float(np.mean(run["temperature_K"])),
        finite=finite,
        wall_s=wall_s,
        us_per_atom_step=1e6 * wall_s / max(steps * n_atoms, 1),
    )


def table(rows: list[StepRow]) -> str:
    """The markdown table of the rows."""
    lines = [
        "| Δt fs | steps | ps | drift meV/atom/ps | RMS fluctuation meV/atom | change meV/atom "
        "| mean T K | µs per atom-step |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r.step_fs:g} | {r.steps} | {r.duration_ps:.3g} | {r.drift_meV_per_atom_ps:+.3g} "
            f"| {r.fluctuation_meV_per_atom:.3g} | {r.change_meV_per_atom:+.3g} "
            f"| {r.temperature_mean_K:.0f} | {r.us_per_atom_step:,.0f} |"
        )
    return "\n".join(lines)


def dataset_cost(
    config: str, cells: list[int], steps_fs: list[float], us_per_atom_step: float
) -> list[dict]:
    """Generation time on one process of the ``generate`` config ``config`` with ``cells``
    cells per side and velocity Verlet at each of ``steps_fs`` (fs; the frame spacing raised
    to the next multiple of the step where the config's is finer), at ``us_per_atom_step``
    µs per atom-step plus the recording. One row per (cells, step): atoms (min, max), MD
    steps, atom-steps, CPU hours."""
    base = load_config(GenerateConfig, resolve_config(config, "data"))
    rows = []
    for c in cells:
        for dt in steps_fs:
            every = math.ceil(base.record_every_fs / dt - 1e-9) * dt
            overrides = {"cells": c, "timestep_fs": dt, "record_every_fs": every}
            cfg = load_config(GenerateConfig, resolve_config(config, "data"), overrides)
            atoms = [cfg.state_atoms(st) for st in cfg.state_list()]
            rows.append(
                {
                    "config": config,
                    "cells": c,
                    "trajectories": len(atoms),
                    "atoms": [min(atoms), max(atoms)],
                    "step_fs": dt,
                    "record_every_fs": every,
                    "md_steps": cfg.md_steps(),
                    "atom_steps": cfg.atom_steps(),
                    "cpu_h": cfg.estimate_s(1e6 / us_per_atom_step) / 3600.0,
                }
            )
    return rows


def cost_table(rows: list[dict], us_per_atom_step: float) -> str:
    """The markdown table of :func:`dataset_cost`'s rows."""
    lines = [
        f"| config | cells | atoms | Δt fs | MD steps | atom-steps | CPU h at "
        f"{us_per_atom_step:,.0f} µs/atom-step |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r["atoms"]
        hours = f"{r['cpu_h']:,.0f}" if r["cpu_h"] >= 10 else f"{r['cpu_h']:.2g}"
        lines.append(
            f"| {r['config']} ({r['trajectories']} trajectories) | {r['cells']} "
            f"| {lo}–{hi} | {r['step_fs']:g} | {r['md_steps']:,} | {r['atom_steps']:.3g} "
            f"| {hours} |"
        )
    return "\n".join(lines)


def with_cost(result: dict, args: argparse.Namespace) -> dict:
    """``result`` with the dataset cost at its median measured µs per atom-step."""
    us = float(np.median([r["us_per_atom_step"] for r in result["rows"]]))
    steps = [r["step_fs"] for r in result["rows"]]
    rows = dataset_cost(args.estimate_config, args.estimate_cells, steps, us)
    return result | {"us_per_atom_step_median": us, "dataset_cost": rows,
                     "cost_table": cost_table(rows, us)}  # fmt: skip


def measure(args: argparse.Namespace, log=print) -> dict:
    """Equilibrate once, then one NVE run per step (module doc); the result as a dict."""
    cfg = study_config(args)
    reference = cfg.reference()
    material, lattice = crystal_material(cfg, reference)
    settings = cfg.md_settings(cfg.state_list()[0], 0, reference, material)
    log(f"reference {reference.description}, {material.element} {material.structure} "
        f"a = {material.lattice_A:.4f} Å, {args.cells}³ cells")  # fmt: skip
    state, eq_wall, thermo = equilibrate(
        cfg, settings, args.equilibrate_steps, args.equilibrate_fs, args.tdamp_fs
    )
    n = len(state["species"])
    log(f"equilibrated: {n} atoms, {args.equilibrate_steps} CSVR steps of "
        f"{args.equilibrate_fs:g} fs in {eq_wall:.1f} s, T = {thermo['temperature_K']:.0f} K, "
        f"PE = {thermo['pe_eV'] / n:.4f} eV/atom")  # fmt: skip
    rows = []
    for dt in args.steps_fs:
        steps = int(round(args.nve_ps * 1000.0 / dt))
        run, wall = nve_run(settings, state, dt, steps)
        rows.append(step_row(run, dt, n, wall))
        log(table(rows[-1:]).splitlines()[-1])
    return {
        "reference": reference.description,
        "reference_record": reference.to_dict(),
        "material": {"element": material.element, **lattice},
        "atoms": n,
        "temperature_K": args.temperature,
        "equilibration": {
            "steps": args.equilibrate_steps,
            "step_fs": args.equilibrate_fs,
            "tdamp_fs": args.tdamp_fs,
            "wall_s": eq_wall,
            "temperature_K": thermo["temperature_K"],
            "pe_eV_per_atom": thermo["pe_eV"] / n,
        },
        "nve_ps": args.nve_ps,
        "rows": [asdict(r) for r in rows],
        "table": table(rows),
    }


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = p.add_mutually_exclusive_group(required=False)
    which.add_argument("--calculator", help="an ASE calculator: MODULE:FACTORY or sevennet-0")
    which.add_argument("--potential", help="a LAMMPS potential file (path or shipped name)")
    p.add_argument("--elements", default="Al", help="element symbol (default Al)")
    p.add_argument("--lattice", default="fcc", help="fcc, bcc, hcp or diamond (default fcc)")
    p.add_argument("--lattice-constant", type=float, default=None,
                   help="Å (default: Al 4.05, else the reference's 0-K value)")  # fmt: skip
    p.add_argument("--cells", type=int, default=3, help="cells per side (default 3)")
    p.add_argument("--temperature", type=float, default=300.0, help="K (default 300)")
    p.add_argument("--equilibrate-steps", type=int, default=100, help="CSVR steps (default 100)")
    p.add_argument("--equilibrate-fs", type=float, default=2.0, help="their step, fs (default 2)")
    p.add_argument("--tdamp-fs", type=float, default=50.0, help="CSVR τ, fs (default 50)")
    p.add_argument(
        "--steps-fs", default="1,2,5,10", help="velocity-Verlet steps, fs (default 1,2,5,10)"
    )
    p.add_argument("--nve-ps", type=float, default=0.2, help="each NVE run, ps (default 0.2)")
    p.add_argument("--seed", type=int, default=11, help="velocity and thermostat seed")
    p.add_argument("--out", default=None, help="write the result here as JSON")
    p.add_argument("--estimate-config", default="diverse",
                   help="generate config whose cost to estimate (default diverse)")  # fmt: skip
    p.add_argument("--estimate-cells", default="3,4", help="its cells per side (default 3,4)")
    p.add_argument("--from-json", default=None,
                   help="re-print the tables of a saved result; nothing is run")  # fmt: skip
    args = p.parse_args(argv)
    try:
        args.estimate_cells = [int(x) for x in str(args.estimate_cells).split(",") if x.strip()]
    except ValueError:
        p.error(f"--estimate-cells {args.estimate_cells!r}: expected integers, comma-separated")
    try:
        args.steps_fs = [float(x) for x in str(args.steps_fs).split(",") if x.strip()]
    except ValueError:
        p.error(f"--steps-fs {args.steps_fs!r}: expected steps in fs, comma-separated (1,2,5)")
    if not args.steps_fs or any(not (x > 0) for x in args.steps_fs):
        p.error(f"--steps-fs {args.steps_fs}: expected positive steps in fs")
    for name in ("nve_ps", "equilibrate_fs", "tdamp_fs"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} {getattr(args, name)}: expected a positive number")
    if args.equilibrate_steps < 0:
        p.error(f"--equilibrate-steps {args.equilibrate_steps}: expected ≥ 0")
    return args


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.from_json:
            result = json.loads(Path(args.from_json).read_text())
        elif not (args.calculator or args.potential):
            raise ValueError("expected --calculator, --potential or --from-json")
        else:
            result = measure(args)
            if args.out:  # the measurement first: the estimate below cannot lose it
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(result, indent=1))
        result = with_cost(result, args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result["table"])
    print(result["cost_table"])
    if args.out and not args.from_json:
        Path(args.out).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
