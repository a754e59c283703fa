"""The ``equignnmd`` command line. Each sub-command is a thin layer over a library function."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from .config import resolve_config


def _floats(text: str) -> list[float]:
    from .data.dataset import parse_strides

    return parse_strides(text)


# --------------------------------------------------------------------------------- generate
def add_generate(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="run LAMMPS EAM reference MD and write a dataset",
        description="Reference trajectories of FCC Al from LAMMPS EAM (NPT Nosé–Hoover, "
        "velocity Verlet). Config values come from --config (default: quick), then the "
        "named options, then --set KEY=VALUE.",
    )
    p.add_argument("--config", default="quick", help="YAML file or built-in name (quick, paper)")
    p.add_argument("-o", "--output", help="dataset folder")
    p.add_argument("--temperatures", type=_floats, help="comma-separated, K")
    p.add_argument("--test-temperatures", type=_floats, help="held-out temperatures, K")
    p.add_argument("--cells", type=int, help="FCC cells per side (4 → 256 atoms)")
    p.add_argument("--equilibration-ps", type=float)
    p.add_argument("--production-ps", type=float)
    p.add_argument("--record-every-fs", type=float)
    p.add_argument("--seed", type=int)
    p.add_argument("--potential", help="EAM file (.eam, .eam.alloy, .eam.fs) or a shipped name")
    p.add_argument("--mpi-ranks", type=int, help="launch LAMMPS on N MPI ranks (mpiexec)")
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="any config field")
    p.add_argument("--estimate", action="store_true", help="print size and time, run nothing")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_generate)


def generate_config(args):
    from .config import load_config, parse_overrides
    from .data.generate import GenerateConfig

    named = {
        "output": args.output,
        "temperatures_K": args.temperatures,
        "test_temperatures_K": args.test_temperatures,
        "cells": args.cells,
        "equilibration_ps": args.equilibration_ps,
        "production_ps": args.production_ps,
        "record_every_fs": args.record_every_fs,
        "seed": args.seed,
        "potential": args.potential,
        "mpi_ranks": args.mpi_ranks,
    }
    if args.temperatures is not None and args.test_temperatures is None:
        named["test_temperatures_K"] = []
    overrides = {k: v for k, v in named.items() if v is not None}
    overrides.update(parse_overrides(args.set))
    return load_config(GenerateConfig, resolve_config(args.config, "data"), overrides)


def cmd_generate(args) -> int:
    from .data.generate import generate, relaunch_with_mpi

    cfg = generate_config(args)
    if args.estimate:
        print(
            f"{len(cfg.temperatures_K)} temperatures × {cfg.n_atoms} atoms × "
            f"{cfg.n_records} frames: {cfg.md_steps():,} MD steps, "
            f"about {cfg.disk_bytes() / 1e9:.2f} GB on disk"
        )
        return 0
    if cfg.mpi_ranks > 1:
        return relaunch_with_mpi(cfg.mpi_ranks, args.argv)
    out = generate(
        cfg, command_line=shlex.join(["equignnmd", *args.argv]), progress=not args.no_progress
    )
    if out is not None:
        print(f"dataset written to {out}")
    return 0


# ---------------------------------------------------------------------------------- convert
def add_convert(sub) -> None:
    p = sub.add_parser(
        "convert",
        help="bring LAMMPS dumps or ASE trajectories into the dataset format",
        description="One trajectory per input file. LAMMPS text dumps (any column order; "
        "x/xu/xs, vx vy vz, optional image flags) need --timestep-fs; ASE-readable files "
        "(extxyz, .traj) must carry velocities.",
    )
    p.add_argument("inputs", nargs="+", help="LAMMPS dump or ASE-readable trajectory files")
    p.add_argument("-o", "--output", required=True, help="dataset folder to write")
    p.add_argument("--timestep-fs", type=float, help="MD timestep of the dump's step numbers")
    p.add_argument("--temperature", type=_floats, help="K, one value or one per input")
    p.add_argument("--test-temperatures", type=_floats, default=[])
    p.add_argument("--species", help="element of LAMMPS type 1 (symbol or atomic number)")
    p.add_argument("--mass", type=float, help="amu (default: from the element)")
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    from .data.convert import convert

    temperature = args.temperature
    if temperature is not None and len(temperature) == 1:
        temperature = temperature[0]
    out = convert(
        args.inputs,
        args.output,
        timestep_fs=args.timestep_fs,
        temperature_K=temperature,
        test_temperatures_K=args.test_temperatures,
        species=args.species,
        masses_amu=args.mass,
        command_line=shlex.join(["equignnmd", *args.argv]),
    )
    print(f"dataset written to {out}")
    return 0


# -------------------------------------------------------------------------------- baselines
def add_baselines(sub) -> None:
    p = sub.add_parser(
        "baselines",
        help="error table of the zero / ballistic / Taylor baselines",
        description="Mean per-atom position error (Å) of the baselines, per temperature.",
    )
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--dt", type=_floats, default=[1, 5, 10, 20, 50], help="strides, fs")
    p.add_argument("--temperatures", type=_floats, help="only these trajectories, K")
    p.add_argument("--max-starts", type=int, default=200, help="start frames per stride")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    import json

    from .baselines.table import baseline_table, format_table

    rows = baseline_table(args.data, args.dt, args.max_starts, args.temperatures)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


# ------------------------------------------------------------------------------------ train
def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train a surrogate (any registered architecture)",
        description="Model-agnostic trainer. Values come from --config (sections arch, model, "
        "train), then the named options, then --set KEY=VALUE (train fields) or "
        "--set model.KEY=VALUE. Multi-GPU / multi-process: torchrun --nproc_per_node=N "
        "-m equignnmd train ...",
    )
    p.add_argument("--arch", help="paper or equivariant (default: from --config)")
    p.add_argument(
        "--config",
        help="YAML file or built-in name (paper, paper-small, "
        "equivariant, equivariant-small); default: <arch>",
    )
    p.add_argument("--data", help="dataset folder")
    p.add_argument("--out", help="run folder (checkpoints, metrics.csv)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--strides", type=_floats, help="Δt set, fs, e.g. 5,10,20,50")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default: CUDA if present)")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--seed", type=int)
    p.add_argument("--resume", action="store_true", help="continue from RUN/last.pt")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_train)


def train_spec(args):
    from .config import parse_overrides
    from .train import load_run_spec

    named = {
        "data": args.data,
        "out": args.out,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "strides_fs": args.strides,
        "device": args.device,
        "dtype": args.dtype,
        "seed": args.seed,
    }
    train_over = {k: v for k, v in named.items() if v is not None}
    sets = parse_overrides(args.set)  # --set wins over the named options
    model_over = {k[len("model.") :]: v for k, v in sets.items() if k.startswith("model.")}
    train_over.update({k: v for k, v in sets.items() if not k.startswith("model.")})
    config = resolve_config(args.config or args.arch, "")
    return load_run_spec(config, args.arch, train_over, model_over)


def cmd_train(args) -> int:
    from .train import train

    if not (args.arch or args.config):
        raise SystemExit("equignnmd train: give --arch (paper or equivariant) or --config")
    spec = train_spec(args)
    train(spec, resume=args.resume, progress=not args.no_progress)
    return 0


# ---------------------------------------------------------------------------------- rollout
def add_rollout(sub) -> None:
    p = sub.add_parser(
        "rollout",
        help="run the surrogate as an MD engine",
        description="Autoregressive rollout from a structure file (extxyz, LAMMPS data or "
        "dump, anything ASE reads) or a frame of a dataset. Writes the trajectory every "
        "--write-every steps and thermo.csv; stops with a clear message if a stability guard "
        "fires (what was written stays on disk).",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file or pretrained:NAME")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--structure", help="structure file")
    src.add_argument("--data", help="dataset folder (with --frame, --data-temperature)")
    p.add_argument("--frame", type=int, default=0, help="frame index in the dataset")
    p.add_argument("--data-temperature", type=float, help="trajectory of the dataset, K")
    p.add_argument("--dt", type=float, required=True, help="stride, fs")
    p.add_argument("--steps", type=int, required=True)
    p.add_argument("--temperature", type=float, help="set point, K (and initial velocities)")
    p.add_argument("--thermostat", choices=["none", "csvr", "langevin"], default="none")
    p.add_argument("--tau-fs", type=float, help="CSVR time constant (default 100 × stride)")
    p.add_argument("--friction", type=float, help="Langevin friction, 1/ps")
    p.add_argument("--replicas", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="rollout", help="output folder")
    p.add_argument("--write-every", type=int, default=10)
    p.add_argument("--format", choices=["extxyz", "lammps-dump"], default="extxyz")
    p.add_argument("--min-distance", type=float, default=1.5, help="guard, Å")
    p.add_argument("--max-temperature-factor", type=float, default=3.0, help="guard")
    p.add_argument(
        "--min-temperature-factor", type=float, help="guard: stop below this × set point (off)"
    )
    p.add_argument(
        "--energy",
        default="none",
        help="potential energy of the states: none, reference (the default EAM file) or an "
        "EAM file; with it the velocities are rescaled after each step so that K + U is "
        "conserved (NVE) or changes only by the thermostat's work (NVT), and thermo.csv gains "
        "energy columns",
    )
    p.add_argument(
        "--energy-monitor-only",
        action="store_true",
        help="with --energy: log K + U, do not rescale",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: CUDA if present)")
    p.add_argument("--dtype", choices=["float32", "float64"])
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=cmd_rollout)


def rollout_config(args, temperature_K: float | None):
    """The :class:`~equignnmd.rollout.RolloutConfig` of ``equignnmd rollout`` (checked)."""
    from .rollout import RolloutConfig

    return RolloutConfig.of(
        "equignnmd rollout",
        dt_fs=args.dt,
        steps=args.steps,
        temperature_K=temperature_K,
        thermostat=args.thermostat,
        tau_fs=args.tau_fs,
        friction_per_ps=args.friction,
        replicas=args.replicas,
        seed=args.seed,
        write_every=args.write_every,
        out_dir=args.out,
        fmt=args.format,
        min_distance_A=args.min_distance,
        max_temperature_factor=args.max_temperature_factor,
        min_temperature_factor=args.min_temperature_factor,
        progress=not args.no_progress,
        energy=args.energy,
        energy_rescale=not args.energy_monitor_only,
    )


def cmd_rollout(args) -> int:
    import torch

    from .checkpoint import load_checkpoint
    from .data.format import dataset_frame
    from .device import pick_device
    from .rollout import Rollout
    from .units import fs_to_ps

    temperature = args.temperature
    if args.data:
        structure, data_T = dataset_frame(args.data, args.frame, args.data_temperature)
        temperature = temperature if temperature is not None else data_T
        name = f"dataset {args.data} (--data), frame {args.frame} at {data_T:g} K"
    else:
        structure = args.structure
        name = f"structure file {args.structure} (--structure)"
    config = rollout_config(args, temperature)  # checked before the model loads
    model = load_checkpoint(args.checkpoint, device=pick_device(args.device))
    if args.dtype:
        model = model.to(getattr(torch, args.dtype))
    with Rollout(model, structure, config, names=[name]) as ro:
        result = ro.run()
    done = int(result.step[-1])
    print(
        f"{done} steps of {args.dt:g} fs ({fs_to_ps(done * args.dt):g} ps) × {args.replicas} "
        f"replica(s): {result.steps_per_s:.2f} steps/s, {result.ns_per_day:.3g} ns/day; "
        f"files in {args.out}"
    )
    if not result.completed:
        print(f"stopped: {result.stopped_reason}", file=sys.stderr)
        return 3
    return 0


# --------------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    p = sub.add_parser(
        "evaluate",
        help="evaluation report: error vs Δt, per temperature, rollouts vs LAMMPS",
        description="Writes report.md, metrics.json and PNG plots into --out.",
    )
    p.add_argument("--checkpoint", required=True, help="checkpoint file or pretrained:NAME")
    p.add_argument("--data", required=True, help="dataset folder")
    p.add_argument("--out", default="report", help="report folder")
    p.add_argument("--dt", type=_floats, help="strides of the Table-4 layout, fs")
    p.add_argument("--test-temperature", type=float, help="held-out temperature, K")
    p.add_argument("--rollout-dt", type=_floats, help="rollout strides, fs (comma-separated)")
    p.add_argument("--rollout-steps", type=int)
    p.add_argument("--rollout-ps", type=float, help="rollout length, ps (overrides steps)")
    p.add_argument("--tau-fs", type=float, help="thermostat time constant, fs (100 × Δt)")
    p.add_argument("--rollout-temperatures", type=_floats)
    p.add_argument("--thermostat", choices=["none", "csvr", "langevin"])
    p.add_argument("--max-pairs", type=int)
    p.add_argument("--device")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from .config import build, parse_overrides
    from .evaluate import EvaluateConfig, evaluate

    values = {
        "checkpoint": args.checkpoint,
        "data": args.data,
        "out": args.out,
        "strides_fs": args.dt,
        "test_temperature_K": args.test_temperature,
        "rollout_strides_fs": args.rollout_dt,
        "rollout_steps": args.rollout_steps,
        "rollout_ps": args.rollout_ps,
        "rollout_tau_fs": args.tau_fs,
        "rollout_temperatures_K": args.rollout_temperatures,
        "rollout_thermostat": args.thermostat,
        "max_pairs": args.max_pairs,
        "device": args.device,
    }
    values = {k: v for k, v in values.items() if v is not None}
    values.update(parse_overrides(args.set))
    cfg = build(EvaluateConfig, values, "equignnmd evaluate")
    evaluate(cfg)
    print(f"report written to {Path(cfg.out) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------------- fidelity
def add_fidelity(sub) -> None:
    p = sub.add_parser(
        "fidelity",
        help="long-trajectory fidelity benchmark against LAMMPS (NVE energy, NVT structure)",
        description="From equilibrated LAMMPS EAM states: NVE total-energy drift beside "
        "velocity Verlet, NVT temperature / RDF / VDOS / MSD / site drift / CNA / long-wave "
        "equipartition beside LAMMPS with calibration rows, and one-step kinetic-energy bias. "
        "Writes fidelity.md, fidelity.json and plots into --out. Values: --preset (smoke: a "
        "minute; default: 500 atoms, 20 ps, 300/450/800 K, ~1 h on 2 cores; long: 100-ps NVT "
        "at 20 and 50 fs), then the named options, then --set KEY=VALUE.",
    )
    p.add_argument("--checkpoint", default="pretrained:equivariant-al")
    p.add_argument("--preset", default="default", choices=["smoke", "default", "long"])
    p.add_argument("--temperatures", type=_floats, help="K, comma-separated")
    p.add_argument("--strides", type=_floats, help="surrogate strides, fs")
    p.add_argument("--nve-ps", type=float)
    p.add_argument("--nvt-ps", type=float)
    p.add_argument("--cells", type=int, help="FCC cells per side (5 → 500 atoms)")
    p.add_argument("--energy", help="surrogate energy rescaling: none, reference or an EAM file")
    p.add_argument("--out", default="fidelity", help="report folder")
    p.add_argument("--device")
    p.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args) -> int:
    from .config import parse_overrides
    from .fidelity import fidelity, make_config

    values = {
        "checkpoint": args.checkpoint,
        "temperatures_K": args.temperatures,
        "strides_fs": args.strides,
        "nve_ps": args.nve_ps,
        "nvt_ps": args.nvt_ps,
        "cells": args.cells,
        "energy": args.energy,
        "out": args.out,
        "device": args.device,
    }
    values = {k: v for k, v in values.items() if v is not None}
    values.update(parse_overrides(args.set))
    cfg = make_config(args.preset, "equignnmd fidelity", **values)
    fidelity(cfg)
    print(f"fidelity report written to {Path(cfg.out) / 'fidelity.md'}")
    return 0


# ------------------------------------------------------------------------------- quickstart
def add_quickstart(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="the whole pipeline on a small built-in default (under 15 min on 2 cores)",
        description="Generate the quick dataset, train a small equivariant model briefly, "
        "evaluate it against the baselines and LAMMPS, and write the report. Re-running "
        "reuses what exists.",
    )
    p.add_argument("--out", default="quickstart", help="folder for data, run and report")
    p.add_argument("--epochs", type=int, default=None, help="training epochs")
    p.add_argument("--device", default="auto")
    p.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args) -> int:
    from .quickstart import quickstart

    quickstart(args.out, epochs=args.epochs, device=args.device)
    return 0


# ------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="equignnmd", description="Learned, force-free molecular dynamics."
    )
    parser.add_argument("--version", action="version", version=f"equignnmd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    return parser


COMMANDS = [
    add_generate,
    add_convert,
    add_baselines,
    add_train,
    add_rollout,
    add_evaluate,
    add_fidelity,
    add_quickstart,
]


def main(argv: list[str] | None = None) -> int:
    from .config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (ConfigError, FileNotFoundError, ValueError, NotImplementedError) as err:
        print(f"equignnmd {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
