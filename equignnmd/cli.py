"""The ``equignnmd`` command line. Each sub-command is a thin layer over a library function.

Environment: importing the package sets ``OMP_WAIT_POLICY=passive`` unless the user set it,
before anything imports torch (:mod:`equignnmd._environment`); :func:`main` applies it again
(a no-op then). This module imports only the standard library and light parts of the package:
``equignnmd --help`` loads no torch.

Every option's help shows its default (:class:`HelpFormatter`); an option without a fixed
default says in its help what is used when it is left out. Every command that writes refuses
a non-empty output place unless ``--overwrite`` (or ``--resume`` where it can continue what
is there) is given, before any work starts (:func:`equignnmd.outputs.claim_output`).
"""

from __future__ import annotations

import argparse
import math
import shlex
import sys
from pathlib import Path

from ._environment import apply_environment_defaults
from .config import resolve_config
from .outputs import claim_output


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Appends "(default: X)" to an option's help where the option has a default value; an
    option whose default is unset (``None``) or a flag is left as its help says."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default is None or action.nargs == 0 or "%(default)" in text:
            return text
        return super()._get_help_string(action)


def _number_list(text: str, what: str, unit: str, example: str) -> list[float]:
    """``"5,10,20"`` → [5.0, 10.0, 20.0], each finite and > 0, or an argparse error saying
    what the value must be (``what``: "stride", "temperature")."""
    expected = f"expected {what}s in {unit}, each > 0, comma-separated (e.g. {example})"
    values = []
    for token in (t for t in text.replace(" ", "").split(",") if t):
        try:
            value = float(token)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise argparse.ArgumentTypeError(
                f"{what} {token!r} is not a positive number of {unit}; {expected}"
            )
        values.append(value)
    if not values:
        raise argparse.ArgumentTypeError(f"{text!r} holds no {what}; {expected}")
    return values


def _strides(text: str) -> list[float]:
    """Strides Δt: positive numbers of fs, comma-separated."""
    return _number_list(text, "stride", "fs", "5,10,20")


def _temperatures(text: str) -> list[float]:
    """Temperatures: positive numbers of K, comma-separated."""
    return _number_list(text, "temperature", "K", "300,350")


def _parser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
    return sub.add_parser(name, formatter_class=HelpFormatter, **kwargs)


def add_output_flags(p: argparse.ArgumentParser, resume: str | None = None) -> None:
    """``--overwrite`` (and ``--resume`` with its help, where the command can continue what
    is there): without them a command refuses a non-empty output place
    (:func:`equignnmd.outputs.claim_output`)."""
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into an output place that holds an earlier run, replacing its files "
        "(without it, or --resume where there is one, such a place is refused before any "
        "work starts)",
    )
    if resume is not None:
        p.add_argument("--resume", action="store_true", help=resume)


def _checkpoint_help() -> str:
    from .checkpoint import pretrained_names

    names = ", ".join(f"pretrained:{n}" for n in pretrained_names()) or "none installed"
    return f"checkpoint file written by `equignnmd train`, or a shipped model: {names}"


# --------------------------------------------------------------------------------- generate
def add_generate(sub) -> None:
    p = _parser(
        sub,
        "generate",
        help="run LAMMPS EAM reference MD and write a dataset",
        description="Reference trajectories of FCC Al from LAMMPS EAM (NPT Nosé–Hoover, "
        "velocity Verlet). Config values come from --config (default: quick), then the "
        "named options, then --set KEY=VALUE. Options left out take the config's value.",
    )
    cfg = "default: the config's value"
    from .config import CONFIG_DIR

    builtin = ", ".join(sorted(path.stem for path in (CONFIG_DIR / "data").glob("*.yaml")))
    p.add_argument("--config", default="quick", help=f"YAML file or built-in name ({builtin})")
    p.add_argument("-o", "--output", help=f"dataset folder ({cfg})")
    p.add_argument("--temperatures", type=_temperatures, help=f"comma-separated, K ({cfg})")
    p.add_argument(
        "--test-temperatures",
        type=_temperatures,
        help="held-out temperatures, K (default: the config's; none when --temperatures is given)",
    )
    p.add_argument("--cells", type=int, help=f"FCC cells per side, 4 → 256 atoms ({cfg})")
    p.add_argument("--equilibration-ps", type=float, help=f"NPT equilibration, ps ({cfg})")
    p.add_argument("--production-ps", type=float, help=f"recorded trajectory, ps ({cfg})")
    p.add_argument("--record-every-fs", type=float, help=f"frame spacing, fs ({cfg})")
    p.add_argument("--seed", type=int, help=f"velocity seed ({cfg})")
    p.add_argument(
        "--potential", help=f"EAM file (.eam, .eam.alloy, .eam.fs) or a shipped name ({cfg})"
    )
    p.add_argument(
        "--mpi-ranks", type=int, help=f"launch LAMMPS on N MPI ranks with mpiexec ({cfg})"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any config field, repeatable (default: none)",
    )
    p.add_argument("--estimate", action="store_true", help="print size and time, run nothing")
    add_output_flags(
        p,
        resume="continue a dataset folder that holds an earlier (killed) run: trajectory "
        "files made with the same settings are kept, the others run",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
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
    claim_output(
        cfg.output,
        overwrite=args.overwrite,
        resume=args.resume,
        what="dataset folder",
        option="--output",
    )
    if cfg.mpi_ranks > 1:
        return relaunch_with_mpi(cfg.mpi_ranks, args.argv)
    out = generate(
        cfg,
        command_line=shlex.join(["equignnmd", *args.argv]),
        progress=not args.no_progress,
        reuse_files=not args.overwrite,
    )
    if out is not None:
        print(f"dataset written to {out}")
    return 0


# ---------------------------------------------------------------------------------- convert
def add_convert(sub) -> None:
    p = _parser(
        sub,
        "convert",
        help="bring LAMMPS dumps or ASE trajectories into the dataset format",
        description="One trajectory per input file. LAMMPS text dumps (any column order; "
        "x/xu/xs, vx vy vz, optional image flags) need --timestep-fs and are read as units "
        "metal (positions Å, velocities Å/ps, forces eV/Å); ASE-readable files (extxyz, "
        ".traj) must carry velocities, in ASE units. Velocities are checked against the "
        "motion: for frames at most 5 fs apart, Δr/Δt must match them within a factor 2 "
        "(else the file is refused, naming the units they look like; --skip-velocity-check). "
        "A temperature label more than 5 % from the file's measured kinetic temperature is "
        "warned about and recorded in dataset.json; more than 20 % is refused "
        "(--allow-temperature-mismatch). Nothing is left behind when a conversion fails.",
    )
    p.add_argument("inputs", nargs="+", help="LAMMPS dump or ASE-readable trajectory files")
    p.add_argument("-o", "--output", required=True, help="dataset folder to write (required)")
    p.add_argument(
        "--timestep-fs",
        type=float,
        help="MD timestep of the dump's TIMESTEP numbers, fs (default: none; required for "
        "dumps without ITEM: TIME)",
    )
    p.add_argument(
        "--temperature",
        type=_temperatures,
        help="temperature label, K, one value or one per input (default: the file's "
        "temperature_K, else its mean kinetic temperature)",
    )
    p.add_argument(
        "--test-temperatures",
        type=_temperatures,
        help="trajectories at these temperatures, K, are marked held-out (default: none)",
    )
    p.add_argument(
        "--species",
        help="element of LAMMPS type 1 (symbol or atomic number; 'Al,Cu' for types 1, 2) "
        "(default: none; required for dumps with a 'type' column and no 'element')",
    )
    p.add_argument(
        "--mass",
        type=float,
        help="mass of every atom, amu (default: the file's masses, else the element's)",
    )
    p.add_argument(
        "--skip-velocity-check",
        action="store_true",
        help="convert files whose velocities disagree with Δr/Δt (default: refuse them; the "
        "measured factor is still recorded in dataset.json)",
    )
    p.add_argument(
        "--allow-temperature-mismatch",
        action="store_true",
        help="keep a --temperature (or file) label more than 20 %% from the measured kinetic "
        "temperature, with a warning (default: refuse the file)",
    )
    add_output_flags(p)
    p.set_defaults(func=cmd_convert)


def cmd_convert(args) -> int:
    import warnings

    from .data.convert import convert

    claim_output(args.output, overwrite=args.overwrite, what="dataset folder", option="--output")
    temperature = args.temperature
    if temperature is not None and len(temperature) == 1:
        temperature = temperature[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        out = convert(
            args.inputs,
            args.output,
            timestep_fs=args.timestep_fs,
            temperature_K=temperature,
            test_temperatures_K=args.test_temperatures or [],
            species=args.species,
            masses_amu=args.mass,
            command_line=shlex.join(["equignnmd", *args.argv]),
            check_velocities=not args.skip_velocity_check,
            allow_temperature_mismatch=args.allow_temperature_mismatch,
            overwrite=args.overwrite,
        )
    for w in caught:
        print(f"equignnmd convert: warning: {w.message}", file=sys.stderr)
    print(f"dataset written to {out}")
    return 0


# -------------------------------------------------------------------------------- baselines
BASELINE_STRIDES_FS = (1.0, 5.0, 10.0, 20.0, 50.0)
"""The strides ``equignnmd baselines`` tries without ``--dt`` (those the data allow)."""


def add_baselines(sub) -> None:
    defaults = ",".join(f"{s:g}" for s in BASELINE_STRIDES_FS)
    p = _parser(
        sub,
        "baselines",
        help="error table of the zero / ballistic / Taylor baselines",
        description="Mean per-atom position error (Å) of the baselines, per temperature.",
    )
    p.add_argument("--data", required=True, help="dataset folder (required)")
    p.add_argument(
        "--dt",
        type=_strides,
        help=f"strides, fs, comma-separated; each a whole multiple of the data's frame "
        f"interval (default: those of {defaults} the data allow; the others are skipped "
        "with a note)",
    )
    p.add_argument(
        "--temperatures", type=_temperatures, help="only these trajectories, K (default: all)"
    )
    p.add_argument("--max-starts", type=int, default=200, help="start frames per stride")
    p.add_argument("--json", help="also write the rows to this JSON file (default: none)")
    add_output_flags(p)
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    import json

    from .baselines.table import baseline_table, format_table, measurable_strides

    if args.json:
        claim_output(args.json, overwrite=args.overwrite, what="JSON file", option="--json")
    strides = args.dt
    if strides is None:  # the defaults the data allow; explicitly requested ones must work
        strides, skipped = measurable_strides(args.data, BASELINE_STRIDES_FS, args.temperatures)
        for stride, why in skipped.items():
            print(
                f"equignnmd baselines: skipped default stride {stride:g} fs: {why}", file=sys.stderr
            )
        if not strides:
            raise ValueError(
                f"dataset {args.data}: none of the default strides "
                f"{', '.join(f'{s:g}' for s in BASELINE_STRIDES_FS)} fs fits its trajectories; "
                "expected --dt with whole multiples of the frame interval (see above)"
            )
    rows = baseline_table(args.data, strides, args.max_starts, args.temperatures)
    print(format_table(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


# ------------------------------------------------------------------------------------ train
def add_train(sub) -> None:
    from .config import CONFIG_DIR
    from .models import REGISTRY

    p = _parser(
        sub,
        "train",
        help="train a surrogate (any registered architecture)",
        description="Model-agnostic trainer. Values come from --config (sections arch, model, "
        "train), then the named options, then --set KEY=VALUE (train fields) or "
        "--set model.KEY=VALUE. Options left out take the config's value. Multi-GPU / "
        "multi-process: torchrun --nproc_per_node=N -m equignnmd train ...",
    )
    cfg = "default: the config's value"
    shown = []  # (option, train field, help): the help adds the built-in configs' values

    def named(flag: str, field: str, text: str, **kwargs) -> None:
        shown.append((p.add_argument(flag, help=f"{text} ({cfg})", **kwargs), field, text))

    p.add_argument(
        "--arch",
        help="architecture, a name of equignnmd.models.REGISTRY: "
        f"{', '.join(sorted(REGISTRY))} (default: the config's 'arch')",
    )
    builtin = sorted(path.stem for path in CONFIG_DIR.glob("*.yaml"))
    p.add_argument(
        "--config",
        help=f"YAML file or built-in name ({', '.join(builtin)}) "
        "(default: the config named like --arch)",
    )
    named("--data", "data", "dataset folder")
    named("--out", "out", "run folder: checkpoints, metrics.csv")
    named("--epochs", "epochs", "training epochs", type=int)
    named("--batch-size", "batch_size", "structures per batch", type=int)
    named("--lr", "lr", "learning rate", type=float)
    named("--strides", "strides_fs", "Δt set, fs, e.g. 5,10,20,50", type=_strides)
    named("--device", "device", "cpu, cuda, cuda:1 or auto (CUDA if present)")
    named("--dtype", "dtype", "model dtype", choices=["float32", "float64"])
    named("--seed", "seed", "random seed", type=int)
    add_output_flags(
        p, resume="continue the run in --out from its last.pt (optimiser, schedule, RNG)"
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="a train field, or model.FIELD for the model, repeatable (default: none)",
    )
    p.add_argument(
        "--no-progress",
        action="store_true",
        help="no progress bar: a line per epoch, and per minute within long epochs",
    )
    p.set_defaults(func=cmd_train)
    format_help = p.format_help

    def with_builtin_values() -> str:
        # read when the help is shown, not whenever the parser is built: the configs are
        # read through equignnmd.train, whose imports `equignnmd --help` should not pay for
        from .train import builtin_train_values

        values = builtin_train_values([field for _, field, _ in shown])
        for action, field, text in shown:
            action.help = f"{text} ({cfg}; {values[field]})"
        return format_help()

    p.format_help = with_builtin_values


def check_arch(arch: str | None) -> None:
    """Refuse an ``--arch`` that is not in :data:`equignnmd.models.REGISTRY`, listing them."""
    if arch is None:
        return
    from .config import ConfigError
    from .models import REGISTRY

    if arch not in REGISTRY:
        raise ConfigError(
            f"argument --arch: {arch!r} is not an architecture; expected one of "
            f"{', '.join(sorted(REGISTRY))} (equignnmd.models.REGISTRY)"
        )


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
    check_arch(args.arch)  # before its name is looked up as a config file
    config = resolve_config(args.config or args.arch, "")
    return load_run_spec(config, args.arch, train_over, model_over)


def cmd_train(args) -> int:
    from .train import train

    if not (args.arch or args.config):
        from .models import REGISTRY

        raise SystemExit(
            f"equignnmd train: give --arch (one of {', '.join(sorted(REGISTRY))}) or --config"
        )
    spec = train_spec(args)
    train(spec, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


# ---------------------------------------------------------------------------------- rollout
SPEED_EPILOG = (
    "Speed, one definition for the summary line, the progress bar and thermo.csv (wall_s, "
    "ns_per_day): strides completed by the rollout loop divided by the wall seconds spent in "
    "that loop, cumulative from its first stride; setup (reading the structure, loading the "
    "model, writing step 0) is excluded. ns/day = steps/s × stride (fs) × 86400 / 10^6, per "
    "replica (replicas advance together). The structure is checked before any file is "
    "written: species the model knows, finite positions and velocities, a box at least twice "
    "the model's cutoff."
)


def add_rollout(sub) -> None:
    p = _parser(
        sub,
        "rollout",
        help="run the surrogate as an MD engine",
        description="Autoregressive rollout from a structure file (extxyz, LAMMPS data or "
        "dump, anything ASE reads) or a frame of a dataset. Writes the trajectory every "
        "--write-every steps and thermo.csv; stops with a clear message if a stability guard "
        "fires (what was written stays on disk).",
        epilog=SPEED_EPILOG,
    )
    p.add_argument("--checkpoint", required=True, help=_checkpoint_help() + " (required)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--structure", help="structure file (this or --data is required)")
    src.add_argument(
        "--data",
        help="dataset folder, with --frame and --data-temperature (this or --structure is "
        "required)",
    )
    p.add_argument("--frame", type=int, default=0, help="frame index in the dataset")
    p.add_argument(
        "--data-temperature",
        type=float,
        help="trajectory of the dataset, K (default: its first trajectory)",
    )
    p.add_argument("--dt", type=float, required=True, help="stride, fs (required)")
    length = p.add_mutually_exclusive_group(required=True)
    length.add_argument(
        "--steps", type=int, help="strides to run in all (this or --time-ps is required)"
    )
    length.add_argument(
        "--time-ps",
        type=float,
        help="simulated time to run in all, ps, a whole number of strides (this or --steps "
        "is required)",
    )
    p.add_argument(
        "--temperature",
        type=float,
        help="set point, K, and the temperature of initial velocities where the structure "
        "has none (default: none; with --data, the trajectory's)",
    )
    p.add_argument(
        "--thermostat", choices=["none", "csvr", "langevin"], default="none", help="thermostat"
    )
    p.add_argument("--tau-fs", type=float, help="CSVR time constant, fs (default: 100 × stride)")
    p.add_argument(
        "--friction", type=float, help="Langevin friction, 1/ps (default: 1 / (100 × stride))"
    )
    p.add_argument("--replicas", type=int, default=1, help="replicas run together")
    p.add_argument("--seed", type=int, default=0, help="replica r draws from seed + r")
    p.add_argument("--out", default="rollout", help="output folder")
    add_output_flags(
        p,
        resume="continue the run in --out from its restart file (the same command, with "
        "--resume added; --steps / --time-ps may grow): the result equals a run never stopped",
    )
    p.add_argument(
        "--write-every", type=int, default=10, help="write a frame every N steps (0: none)"
    )
    p.add_argument(
        "--restart-every",
        type=int,
        help="write the restart file every N steps (0: none) (default: --write-every, else "
        "every thermo row)",
    )
    p.add_argument(
        "--format", choices=["extxyz", "lammps-dump"], default="extxyz", help="trajectory format"
    )
    p.add_argument(
        "--min-distance", type=float, default=1.5, help="guard: stop below this pair distance, Å"
    )
    p.add_argument(
        "--max-temperature-factor",
        type=float,
        default=3.0,
        help="guard: stop above this × the model's temperature label",
    )
    p.add_argument(
        "--min-temperature-factor",
        type=float,
        help="guard: stop below this × set point (default: off)",
    )
    p.add_argument(
        "--energy",
        default="none",
        help="potential energy of the states: none, reference (the default EAM file), model "
        "(the checkpoint's energy head, see `equignnmd energy-head`) or an EAM file; with "
        "it the velocities are rescaled after each step so that K + U is conserved (NVE) "
        "or changes only by the thermostat's work (NVT), and thermo.csv gains "
        "energy columns",
    )
    p.add_argument(
        "--energy-monitor-only",
        action="store_true",
        help="with --energy: log K + U, do not rescale",
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: auto, CUDA if present)")
    p.add_argument(
        "--dtype",
        choices=["float32", "float64"],
        help="model dtype (default: the checkpoint's)",
    )
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (the way its architecture supports, "
        "model.compiled()): a minute or two of compilation, then several times faster "
        "strides on the CPU for the equivariant model (default: eager)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_rollout)


def rollout_steps(args) -> int:
    """``--steps``, or ``--time-ps`` as a whole number of ``--dt`` strides."""
    from .config import ConfigError
    from .units import ps_to_fs

    if args.steps is not None:
        return args.steps
    strides = ps_to_fs(args.time_ps) / args.dt if args.dt > 0 else math.nan
    if not (math.isfinite(strides) and strides >= 0 and abs(strides - round(strides)) < 1e-6):
        raise ConfigError(
            f"argument --time-ps: {args.time_ps:g} ps is {strides:g} strides of --dt "
            f"{args.dt:g} fs; expected a time ≥ 0 that is a whole number of strides"
        )
    return int(round(strides))


def rollout_config(args, temperature_K: float | None):
    """The :class:`~equignnmd.rollout.RolloutConfig` of ``equignnmd rollout`` (checked)."""
    from .rollout import RolloutConfig

    return RolloutConfig.of(
        "equignnmd rollout",
        dt_fs=args.dt,
        steps=rollout_steps(args),
        temperature_K=temperature_K,
        thermostat=args.thermostat,
        tau_fs=args.tau_fs,
        friction_per_ps=args.friction,
        replicas=args.replicas,
        seed=args.seed,
        write_every=args.write_every,
        restart_every=args.restart_every,
        out_dir=args.out,
        overwrite=args.overwrite,
        resume=args.resume,
        fmt=args.format,
        min_distance_A=args.min_distance,
        max_temperature_factor=args.max_temperature_factor,
        min_temperature_factor=args.min_temperature_factor,
        progress=not args.no_progress,
        energy=args.energy,
        energy_rescale=not args.energy_monitor_only,
    )


def cmd_rollout(args) -> int:
    import warnings

    import torch

    from .checkpoint import load_checkpoint
    from .data.format import dataset_frame
    from .device import pick_device
    from .rollout import Rollout, RolloutStopped
    from .units import fs_to_ps

    claim_output(args.out, overwrite=args.overwrite, resume=args.resume)
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
    if args.compile:
        model = model.compiled()
    with Rollout(model, structure, config, names=[name]) as ro, warnings.catch_warnings():
        warnings.simplefilter("ignore", RolloutStopped)  # printed once, below
        result = ro.run()
    done, first = int(result.step[-1]), int(result.step[0])
    speed = (
        f"{result.steps_per_s:.3g} steps/s, {result.ns_per_day:.3g} ns/day"
        if done > first
        else "no stride completed, no speed"
    )
    # the strides of this call (a resumed run's start row was the previous call's last)
    mean_t = f"{result.temperature_K[1:].mean():.1f} K" if done > first else "–"
    resumed = f", resumed at step {first}" if first > 0 else ""
    print(
        f"{done} steps of {args.dt:g} fs ({fs_to_ps(done * args.dt):g} ps{resumed}) × "
        f"{args.replicas} replica(s), mean T {mean_t}: {speed}; files in {args.out}"
    )
    if not result.completed:
        print(f"stopped: {result.stopped_reason}", file=sys.stderr)
        return 3
    return 0


# --------------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    p = _parser(
        sub,
        "evaluate",
        help="evaluation report: error vs Δt, per temperature, rollouts vs LAMMPS",
        description="Writes report.md, metrics.json and PNG plots into --out. Options left "
        "out take EvaluateConfig's value (equignnmd.evaluate).",
    )
    cfg = "default: EvaluateConfig's"
    p.add_argument("--checkpoint", required=True, help=_checkpoint_help() + " (required)")
    p.add_argument("--data", required=True, help="dataset folder (required)")
    p.add_argument("--out", default="report", help="report folder")
    add_output_flags(p)
    p.add_argument("--dt", type=_strides, help=f"strides of the Table-4 layout, fs ({cfg})")
    p.add_argument(
        "--test-temperature",
        type=float,
        help="held-out temperature, K (default: the dataset's held-out trajectory)",
    )
    p.add_argument("--rollout-dt", type=_strides, help=f"rollout strides, fs ({cfg})")
    p.add_argument("--rollout-steps", type=int, help=f"rollout strides per run ({cfg})")
    p.add_argument(
        "--rollout-ps",
        type=float,
        help="rollout length, ps; overrides --rollout-steps (default: off)",
    )
    p.add_argument("--tau-fs", type=float, help="thermostat time constant, fs (default: 100 × Δt)")
    p.add_argument(
        "--rollout-temperatures", type=_temperatures, help=f"rollout temperatures, K ({cfg})"
    )
    p.add_argument(
        "--thermostat", choices=["none", "csvr", "langevin"], help=f"rollout thermostat ({cfg})"
    )
    p.add_argument("--max-pairs", type=int, help=f"start frames per stride and temperature ({cfg})")
    p.add_argument("--device", help=f"cpu, cuda, cuda:1 or auto ({cfg})")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any EvaluateConfig field, repeatable (default: none)",
    )
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
    claim_output(cfg.out, overwrite=args.overwrite, what="report folder")
    evaluate(cfg)
    print(f"report written to {Path(cfg.out) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------------- fidelity
def add_fidelity(sub) -> None:
    p = _parser(
        sub,
        "fidelity",
        help="long-trajectory fidelity benchmark against LAMMPS (NVE energy, NVT structure)",
        description="From equilibrated LAMMPS EAM states: NVE total-energy drift beside "
        "velocity Verlet, NVT temperature / RDF / VDOS / MSD / site drift / CNA / long-wave "
        "equipartition beside LAMMPS with calibration rows, and one-step kinetic-energy bias. "
        "Writes fidelity.md, fidelity.json and plots into --out. Values: --preset (smoke: a "
        "minute; default: 500 atoms, 20 ps, 300/450/800 K, ~1 h on 2 cores; long: 100-ps NVT "
        "at 20 and 50 fs), then the named options, then --set KEY=VALUE.",
    )
    pre = "default: the preset's"
    p.add_argument(
        "--checkpoint", help=_checkpoint_help() + " (default: the benchmark's, FidelityConfig)"
    )
    p.add_argument(
        "--preset", default="default", choices=["smoke", "default", "long"], help="size preset"
    )
    p.add_argument("--temperatures", type=_temperatures, help=f"K, comma-separated ({pre})")
    p.add_argument("--strides", type=_strides, help=f"surrogate strides, fs ({pre})")
    p.add_argument("--nve-ps", type=float, help=f"NVE length, ps ({pre})")
    p.add_argument("--nvt-ps", type=float, help=f"NVT length, ps ({pre})")
    p.add_argument("--cells", type=int, help=f"FCC cells per side, 5 → 500 atoms ({pre})")
    p.add_argument(
        "--energy",
        help=f"surrogate energy rescaling: none, reference, model (the checkpoint's energy "
        f"head) or an EAM file ({pre})",
    )
    p.add_argument("--out", default="fidelity", help="report folder")
    add_output_flags(p)
    p.add_argument("--device", help=f"cpu, cuda, cuda:1 or auto ({pre})")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any FidelityConfig field, repeatable (default: none)",
    )
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
    claim_output(values["out"], overwrite=args.overwrite, what="report folder")
    cfg = make_config(args.preset, "equignnmd fidelity", **values)
    fidelity(cfg)
    print(f"fidelity report written to {Path(cfg.out) / 'fidelity.md'}")
    return 0


# ------------------------------------------------------------------------------ energy-head
def add_energy_head(sub) -> None:
    p = _parser(
        sub,
        "energy-head",
        help="fit a checkpoint's own potential energy (for --energy model)",
        description="Fit an EAM-form energy head (positions only, the model's cutoff) by "
        "least squares to the potential energies and forces of a dataset's training "
        "temperatures, score it on later frames and the held-out temperatures, and write a "
        "copy of the checkpoint with the head inside (surrogate weights unchanged) plus "
        "OUT.energy-fit.md/.json. Rollouts then conserve its energy with --energy model.",
    )
    p.add_argument("--checkpoint", required=True, help=_checkpoint_help() + " (required)")
    p.add_argument(
        "--data", required=True, help="dataset folder with energies and forces (required)"
    )
    p.add_argument("--out", required=True, help="checkpoint file to write, .pt (required)")
    add_output_flags(p)
    p.add_argument("--frames", type=int, help="fit frames per training temperature (default: 20)")
    p.add_argument(
        "--set",
        action="append",
        metavar="KEY=VALUE",
        help="any EnergyFitConfig field, repeatable (default: none)",
    )
    p.set_defaults(func=cmd_energy_head)


def cmd_energy_head(args) -> int:
    from .checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from .config import ConfigError, parse_overrides
    from .energy_fit import fit_energy_head, write_report

    out = Path(args.out)
    if out.suffix != ".pt" or out.is_dir():
        raise ConfigError(f"argument --out: {out} is not a .pt file name; expected e.g. C_E.pt")
    for path in (out, out.with_suffix(".energy-fit.md"), out.with_suffix(".energy-fit.json")):
        claim_output(path, overwrite=args.overwrite, what="file")
    values = parse_overrides(args.set)
    if args.frames is not None:
        values["frames_per_temperature"] = args.frames
    model = load_checkpoint(args.checkpoint, device="cpu")
    ckpt = read_checkpoint(args.checkpoint)
    head, report = fit_energy_head(model, args.data, values)
    report["checkpoint"] = str(args.checkpoint)
    model.attach_energy_head(head, report)
    save_checkpoint(out, model, model.data_summary, ckpt.get("trainer"))
    write_report(report, out.with_suffix(".energy-fit.json"))
    scores = out.with_suffix(".energy-fit.md")
    print(f"checkpoint with energy head written to {out} (scores: {scores})")
    return 0


# ------------------------------------------------------------------------------- quickstart
def add_quickstart(sub) -> None:
    from .quickstart import DEMO_CHECKPOINT, QUICKSTART_TIME, ROLLOUT_DT_FS, ROLLOUT_TAU_STRIDES

    p = _parser(
        sub,
        "quickstart",
        help=f"the whole pipeline on a small built-in default ({QUICKSTART_TIME} on a 2-core "
        "CPU, data included)",
        description="Generate the quick dataset, train a small equivariant model briefly, "
        "evaluate it against the baselines and LAMMPS, run a demo rollout of the shipped "
        f"{DEMO_CHECKPOINT}, and write the report. Both rollouts run at "
        f"{ROLLOUT_DT_FS:g} fs with a CSVR thermostat of τ = {ROLLOUT_TAU_STRIDES:g} strides, "
        f"where the models are stable. Wall time: {QUICKSTART_TIME} on a 2-core CPU, data "
        "included; it prints its own at the end. Re-running reuses what exists.",
    )
    p.add_argument("--out", default="quickstart", help="folder for data, run and report")
    p.add_argument(
        "--epochs", type=int, default=None, help="training epochs (default: the quickstart's)"
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1 or auto")
    p.set_defaults(func=cmd_quickstart)


def cmd_quickstart(args) -> int:
    from .quickstart import quickstart

    quickstart(args.out, epochs=args.epochs, device=args.device)
    return 0


# ------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(
        prog="equignnmd",
        description="Learned, force-free molecular dynamics.",
        formatter_class=HelpFormatter,
        epilog="OMP_WAIT_POLICY defaults to passive (unless set in the environment): "
        "spinning OpenMP threads slow torch down on a shared machine.",
    )
    parser.add_argument("--version", action="version", version=f"equignnmd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in COMMANDS:
        add(sub)
    return parser


def add_lammps(sub) -> None:
    p = _parser(
        sub,
        "lammps",
        help="run a LAMMPS input script with the surrogate in place of fix nve",
        description="Run a LAMMPS input script (units metal, periodic) line by line; a line "
        "'fix ID all equignnmd model M dt_fs D [KEY VALUE ...]' attaches the surrogate "
        "(equignnmd.lammps.SurrogateFix; keywords: model, dt_fs, elements, thermostat, "
        "temperature_K, tau_fs, friction_per_ps, seed, remove_momentum, energy, "
        "outputs_cutoff_A, min_distance_A, max_temperature_factor). LAMMPS computes, thermo "
        "output, dumps and restart files work on the surrogate trajectory. Under "
        "'mpirun -np N equignnmd lammps ...' every rank advances its own atoms.",
    )
    p.add_argument("-in", "--input", dest="input", required=True, help="input script (required)")
    p.add_argument(
        "-var",
        "--var",
        dest="var",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set an index variable of the script, repeatable, as lmp -var (default: none)",
    )
    p.add_argument(
        "--log", help="LAMMPS log file (default: none; thermo output goes to the screen)"
    )
    add_output_flags(p)
    p.set_defaults(func=cmd_lammps)


def cmd_lammps(args) -> int:
    from ._lammps import new_lammps
    from .lammps import run_script

    if args.log:  # the script's own dump and restart files are its business, as in lmp
        claim_output(args.log, overwrite=args.overwrite, what="log file", option="--log")
    cmdargs = ["-log", args.log] if args.log else []
    for name, value in args.var or []:
        cmdargs += ["-var", name, value]
    from .rollout import RolloutUnstable

    lmp = new_lammps(cmdargs, quiet=False)
    try:
        run_script(args.input, lmp=lmp)
    except RolloutUnstable as err:
        print(f"equignnmd lammps: the surrogate stopped the run: {err}", file=sys.stderr)
        return 3
    finally:
        lmp.close()
    return 0


COMMANDS = [
    add_generate,
    add_convert,
    add_baselines,
    add_train,
    add_rollout,
    add_evaluate,
    add_fidelity,
    add_energy_head,
    add_lammps,
    add_quickstart,
]


def main(argv: list[str] | None = None) -> int:
    """The console script ``equignnmd`` (and ``python -m equignnmd``): environment defaults
    (:func:`apply_environment_defaults`, before torch is imported), then the sub-command.
    Returns the exit status: 0, 2 for a usage or input error (printed), 3 for a rollout the
    guard stopped."""
    apply_environment_defaults()
    from .config import ConfigError

    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args) or 0)
    except (
        ConfigError,
        FileNotFoundError,
        FileExistsError,
        ValueError,
        NotImplementedError,
    ) as err:
        print(f"equignnmd {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
