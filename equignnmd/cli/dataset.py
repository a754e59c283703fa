"""``equignnmd generate``, ``convert`` and ``baselines``: making datasets and measuring them."""

from __future__ import annotations

import json
import shlex
import sys
import warnings
from pathlib import Path

from ..config import CONFIG_DIR, ConfigError, resolve_config
from ..outputs import claim_output
from .options import (
    CONFIG_NOTE,
    add_no_progress,
    add_options,
    add_output_flags,
    add_set,
    config_values,
    stride_list,
    subparser,
    temperature_list,
)


# --------------------------------------------------------------------------------- generate
def add_generate(sub) -> None:
    p = subparser(
        sub,
        "generate",
        help="run reference MD (LAMMPS or an ASE calculator) and write a dataset",
        description="Reference trajectories of one element or a random substitutional alloy "
        "(--elements Cu,Zr --composition Cu:0.64,Zr:0.36) in an fcc, bcc, hcp or diamond "
        "crystal under a LAMMPS potential (default: FCC Al, Mendelev EAM; NPT Nosé–Hoover, "
        "velocity Verlet) or an ASE calculator (--calculator module:factory; ASE's MTK NPT, "
        "NVT where the calculator gives no stress); the lattice constant is the reference's "
        "0-K value unless given. Config values come from --config (default: quick), then the "
        "named options, then --set KEY=VALUE. Options left out take the config's value. The "
        "reference is checked (files found or the calculator imported, the elements in it) "
        "before the output folder is touched.",
    )
    builtin = ", ".join(sorted(path.stem for path in (CONFIG_DIR / "data").glob("*.yaml")))
    p.add_argument("--config", default="quick", help=f"YAML file or built-in name ({builtin})")
    add_options(
        p,
        "equignnmd.data.generate:GenerateConfig",
        {
            "-o/--output": "output",
            "--temperatures": "temperatures_K",
            "--test-temperatures": "test_temperatures_K",
            "--cells": "cells",
            "--equilibration-ps": "equilibration_ps",
            "--production-ps": "production_ps",
            "--record-every-fs": "record_every_fs",
            "--seed": "seed",
            "--elements": "element",
            "--composition": "composition",
            "--lattice": "lattice",
            "--lattice-constant": "lattice_A",
            "--mass": "mass_amu",
            "--potential": "potential",
            "--pair-style": "pair_style",
            "--pair-coeff": "pair_coeff",
            "--calculator": "calculator",
            "--mpi-ranks": "mpi_ranks",
            "--record-energies": "record_energies",
        },
        CONFIG_NOTE,
        test_temperatures_K={"note": "default: the config's; none when --temperatures is given"},
    )
    add_set(p, "any config field")
    p.add_argument(
        "--estimate",
        action="store_true",
        help="print size and time (the reference timed for a few seconds on the first "
        "trajectory's box), write nothing",
    )
    add_output_flags(
        p,
        resume="continue a dataset folder that holds an earlier (killed) run: trajectory "
        "files made with the same settings are kept, the others run",
    )
    add_no_progress(p)
    p.set_defaults(func=cmd_generate)


def generate_config(args):
    """The checked :class:`~equignnmd.data.generate.GenerateConfig` of ``equignnmd generate``:
    --config ← the named options ← --set."""
    from ..config import load_config, parse_overrides
    from ..data.generate import GenerateConfig

    overrides = config_values(args)
    if args.temperatures is not None and args.test_temperatures is None:
        overrides["test_temperatures_K"] = []
    if args.potential is not None and args.pair_style is not None:
        raise ConfigError(
            "--potential and --pair-style both given; expected one: a potential file, or a "
            "verbatim pair style with its --pair-coeff lines"
        )
    if args.calculator is not None and (args.potential or args.pair_style) is not None:
        raise ConfigError(
            "--calculator and --potential/--pair-style both given; expected one reference: an "
            "ASE calculator or a LAMMPS potential"
        )
    overrides.update(parse_overrides(args.set))
    return load_config(GenerateConfig, resolve_config(args.config, "data"), overrides)


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def cmd_generate(args) -> int:
    from ..data.generate import generate, measure_reference, relaunch_with_mpi

    cfg = generate_config(args)
    if args.estimate:  # the reference timed in this process; no output folder touched
        timing = measure_reference(cfg)
        us = timing.s_per_atom_step * 1e6
        cost = f"{us:,.0f}" if us >= 100 else f"{us:.3g}"  # 13,400 rather than 1.34e+04
        steps = f"{timing.steps} step{'s' if timing.steps != 1 else ''}"
        print(
            f"reference {timing.reference}: {cost} µs per atom-step measured ({steps}, "
            f"{timing.atoms} atoms, one rank)"
        )
        atoms = sorted({cfg.state_atoms(st) for st in cfg.state_list()})
        count = (
            f"{len(cfg.states)} trajectories"
            if cfg.states
            else (f"{len(cfg.temperatures_K)} temperatures")
        )
        span = f"{atoms[0]}–{atoms[-1]}" if len(atoms) > 1 else f"{atoms[0]}"
        ranks = "MPI ranks divide it roughly"
        if cfg.calculator.strip():
            ranks = "serial: an ASE calculator runs in one process"
        print(
            f"{count} × {span} atoms × {cfg.n_records} frames: {cfg.md_steps():,} MD steps, "
            f"about {cfg.disk_bytes() / 1e9:.2f} GB on disk, "
            f"about {_duration(cfg.estimate_s(timing.atom_steps_per_s))} on one rank "
            f"(the reference at the measured rate + recording; {ranks})"
        )
        return 0
    cfg.reference()  # a missing file or module, a wrong element: refused before any output
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
    p = subparser(
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
        type=temperature_list,
        help="temperature label, K, one value or one per input (default: the file's "
        "temperature_K, else its mean kinetic temperature)",
    )
    p.add_argument(
        "--test-temperatures",
        type=temperature_list,
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
    from ..data.convert import convert

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
    p = subparser(
        sub,
        "baselines",
        help="error table of the zero / ballistic / Taylor baselines",
        description="Mean per-atom position error (Å) of the baselines, per temperature.",
    )
    p.add_argument("--data", required=True, help="dataset folder (required)")
    p.add_argument(
        "--dt",
        type=stride_list,
        help=f"strides, fs, comma-separated; each a whole multiple of the data's frame "
        f"interval (default: those of {defaults} the data allow; the others are skipped "
        "with a note)",
    )
    p.add_argument(
        "--temperatures", type=temperature_list, help="only these trajectories, K (default: all)"
    )
    p.add_argument("--max-starts", type=int, default=200, help="start frames per stride")
    p.add_argument("--json", help="also write the rows to this JSON file (default: none)")
    add_output_flags(p)
    p.set_defaults(func=cmd_baselines)


def cmd_baselines(args) -> int:
    from ..baselines.table import baseline_table, format_table, measurable_strides

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
