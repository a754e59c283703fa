"""``equignnmd rollout``, ``lammps`` and ``quickstart``: running the surrogate."""

from __future__ import annotations

import math
import sys
import warnings

from ..outputs import claim_output
from .options import (
    DTYPES,
    add_no_progress,
    add_options,
    add_output_flags,
    checkpoint_help,
    config_values,
    subparser,
)

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
    p = subparser(
        sub,
        "rollout",
        help="run the surrogate as an MD engine",
        description="Autoregressive rollout from a structure file (extxyz, LAMMPS data or "
        "dump, anything ASE reads) or a frame of a dataset. Writes the trajectory every "
        "--write-every steps and thermo.csv; stops with a clear message if a stability guard "
        "fires (what was written stays on disk).",
        epilog=SPEED_EPILOG,
    )
    p.add_argument("--checkpoint", required=True, help=checkpoint_help() + " (required)")
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
    add_options(
        p,
        "equignnmd.rollout.config:RolloutConfig",
        {
            "--dt": "dt_fs",
            "--temperature": "temperature_K",
            "--thermostat": "thermostat",
            "--tau-fs": "tau_fs",
            "--friction": "friction_per_ps",
            "--replicas": "replicas",
            "--seed": "seed",
            "--out": "out_dir",
            "--write-every": "write_every",
            "--restart-every": "restart_every",
            "--format": "fmt",
            "--min-distance": "min_distance_A",
            "--max-temperature-factor": "max_temperature_factor",
            "--min-temperature-factor": "min_temperature_factor",
            "--energy": "energy",
            "--novelty-threshold": "novelty_threshold",
            "--novelty-stop": "novelty_stop",
        },
        dt_fs={"required": True},
        temperature_K={"note": "default: none; with --data, the trajectory's"},
        out_dir={"default": "rollout"},
    )
    add_output_flags(
        p,
        resume="continue the run in --out from its restart file (the same command, with "
        "--resume added; --steps / --time-ps may grow): the result equals a run never stopped",
    )
    p.add_argument(
        "--energy-monitor-only",
        action="store_true",
        help="with --energy: log K + U, do not rescale",
    )
    p.add_argument("--dtype", choices=DTYPES, help="model dtype (default: the checkpoint's)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 or auto (default: auto, CUDA if present)")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the model first (the way its architecture supports, "
        "model.compiled()): a minute or two of compilation, then several times faster "
        "strides on the CPU for the equivariant model (default: eager)",
    )
    add_no_progress(p)
    p.set_defaults(func=cmd_rollout)


def rollout_steps(args) -> int:
    """``--steps``, or ``--time-ps`` as a whole number of ``--dt`` strides."""
    from ..config import ConfigError
    from ..units import ps_to_fs

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
    from ..rollout import RolloutConfig

    values = config_values(args) | {
        "steps": rollout_steps(args),
        "temperature_K": temperature_K,
        "overwrite": args.overwrite,
        "resume": args.resume,
        "progress": not args.no_progress,
        "energy_rescale": not args.energy_monitor_only,
    }
    return RolloutConfig.of("equignnmd rollout", **values)


def cmd_rollout(args) -> int:
    import torch

    from ..checkpoint import load_checkpoint
    from ..data.format import dataset_frame, read_index
    from ..device import pick_device
    from ..potential import reference_source
    from ..rollout import Rollout, RolloutStopped
    from ..units import fs_to_ps

    claim_output(args.out, overwrite=args.overwrite, resume=args.resume)
    source = None
    if args.data and (args.energy or "").lower() == "reference":
        # the dataset's own reference (its LAMMPS potential or ASE calculator), not Al's EAM;
        # a dataset without one is refused before anything is written
        source = reference_source(read_index(args.data), f"dataset {args.data} (--data)")
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
    with (
        Rollout(model, structure, config, names=[name], energy_source=source) as ro,
        warnings.catch_warnings(),
    ):
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


# ----------------------------------------------------------------------------------- lammps
def add_lammps(sub) -> None:
    p = subparser(
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
    from .._lammps import new_lammps
    from ..lammps import run_script

    if args.log:  # the script's own dump and restart files are its business, as in lmp
        claim_output(args.log, overwrite=args.overwrite, what="log file", option="--log")
    cmdargs = ["-log", args.log] if args.log else []
    for name, value in args.var or []:
        cmdargs += ["-var", name, value]
    from ..rollout import RolloutUnstable

    lmp = new_lammps(cmdargs, quiet=False)
    try:
        run_script(args.input, lmp=lmp)
    except RolloutUnstable as err:
        print(f"equignnmd lammps: the surrogate stopped the run: {err}", file=sys.stderr)
        return 3
    finally:
        lmp.close()
    return 0


# ------------------------------------------------------------------------------- quickstart
def add_quickstart(sub) -> None:
    from ..quickstart import DEMO_CHECKPOINT, QUICKSTART_TIME, ROLLOUT_DT_FS, ROLLOUT_TAU_STRIDES

    p = subparser(
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
    from ..quickstart import quickstart

    quickstart(args.out, epochs=args.epochs, device=args.device)
    return 0
