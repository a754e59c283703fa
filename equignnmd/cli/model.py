"""``equignnmd train``, ``evaluate``, ``fidelity`` and ``energy-head``: making a surrogate and
judging it."""

from __future__ import annotations

from pathlib import Path

from ..config import CONFIG_DIR, field_docs, resolve_config
from ..outputs import claim_output
from .options import (
    CONFIG_NOTE,
    add_no_progress,
    add_options,
    add_output_flags,
    add_set,
    checkpoint_help,
    config_values,
    subparser,
)

# ------------------------------------------------------------------------------------ train
TRAIN_CONFIG = "equignnmd.train:TrainConfig"


def add_train(sub) -> None:
    from ..models import REGISTRY

    p = subparser(
        sub,
        "train",
        help="train a surrogate (any registered architecture)",
        description="Model-agnostic trainer. Values come from --config (sections arch, model, "
        "train), then the named options, then --set KEY=VALUE (train fields) or "
        "--set model.KEY=VALUE. Options left out take the config's value. Multi-GPU / "
        "multi-process: torchrun --nproc_per_node=N -m equignnmd train ...",
    )
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
    shown = add_options(
        p,
        TRAIN_CONFIG,
        {
            "--data": "data",
            "--out": "out",
            "--epochs": "epochs",
            "--batch-size": "batch_size",
            "--lr": "lr",
            "--strides": "strides_fs",
            "--device": "device",
            "--dtype": "dtype",
            "--seed": "seed",
        },
        CONFIG_NOTE,
    )
    add_output_flags(
        p, resume="continue the run in --out from its last.pt (optimiser, schedule, RNG)"
    )
    add_set(p, "a train field, or model.FIELD for the model")
    add_no_progress(p, "no progress bar: a line per epoch, and per minute within long epochs")
    p.set_defaults(func=cmd_train)
    format_help = p.format_help

    def with_builtin_values() -> str:
        # read when the help is shown, not whenever the parser is built: the configs are
        # read through equignnmd.train, whose imports `equignnmd --help` should not pay for
        from ..train import builtin_train_values

        values = builtin_train_values(list(shown))
        for name, action in shown.items():
            action.help = f"{field_docs(TRAIN_CONFIG)[name].doc} ({CONFIG_NOTE}; {values[name]})"
        return format_help()

    p.format_help = with_builtin_values


def check_arch(arch: str | None) -> None:
    """Refuse an ``--arch`` that is not in :data:`equignnmd.models.REGISTRY`, listing them."""
    if arch is None:
        return
    from ..config import ConfigError
    from ..models import REGISTRY

    if arch not in REGISTRY:
        raise ConfigError(
            f"argument --arch: {arch!r} is not an architecture; expected one of "
            f"{', '.join(sorted(REGISTRY))} (equignnmd.models.REGISTRY)"
        )


def train_spec(args):
    """The checked run spec of ``equignnmd train``: --config (or the one named like --arch)
    ← the named options ← --set."""
    from ..config import parse_overrides
    from ..train import load_run_spec

    train_over = config_values(args)
    sets = parse_overrides(args.set)  # --set wins over the named options
    model_over = {k[len("model.") :]: v for k, v in sets.items() if k.startswith("model.")}
    train_over.update({k: v for k, v in sets.items() if not k.startswith("model.")})
    check_arch(args.arch)  # before its name is looked up as a config file
    config = resolve_config(args.config or args.arch, "")
    return load_run_spec(config, args.arch, train_over, model_over)


def cmd_train(args) -> int:
    from ..train import train

    if not (args.arch or args.config):
        from ..models import REGISTRY

        raise SystemExit(
            f"equignnmd train: give --arch (one of {', '.join(sorted(REGISTRY))}) or --config"
        )
    spec = train_spec(args)
    train(spec, resume=args.resume, progress=not args.no_progress, overwrite=args.overwrite)
    return 0


# --------------------------------------------------------------------------------- evaluate
def add_evaluate(sub) -> None:
    p = subparser(
        sub,
        "evaluate",
        help="evaluation report: error vs Δt, per temperature, rollouts vs LAMMPS",
        description="Writes report.md, metrics.json and PNG plots into --out. Options left "
        "out take EvaluateConfig's value (equignnmd.evaluate).",
    )
    add_options(
        p,
        "equignnmd.evaluate:EvaluateConfig",
        {
            "--checkpoint": "checkpoint",
            "--data": "data",
            "--out": "out",
            "--dt": "strides_fs",
            "--test-temperature": "test_temperature_K",
            "--rollout-dt": "rollout_strides_fs",
            "--rollout-steps": "rollout_steps",
            "--rollout-ps": "rollout_ps",
            "--tau-fs": "rollout_tau_fs",
            "--rollout-temperatures": "rollout_temperatures_K",
            "--thermostat": "rollout_thermostat",
            "--max-pairs": "max_pairs",
            "--device": "device",
        },
        checkpoint={"required": True, "help": checkpoint_help()},
        data={"required": True},
    )
    add_output_flags(p)
    add_set(p, "any EvaluateConfig field")
    p.set_defaults(func=cmd_evaluate)


def cmd_evaluate(args) -> int:
    from ..config import build, parse_overrides
    from ..evaluate import EvaluateConfig, evaluate, evaluate_reference

    values = {**config_values(args), **parse_overrides(args.set)}
    cfg = build(EvaluateConfig, values, "equignnmd evaluate")
    claim_output(cfg.out, overwrite=args.overwrite, what="report folder")
    evaluate_reference(cfg)  # a dataset without a reference of its own: refused, nothing made
    evaluate(cfg)
    print(f"report written to {Path(cfg.out) / 'report.md'}")
    return 0


# --------------------------------------------------------------------------------- fidelity
def add_fidelity(sub) -> None:
    p = subparser(
        sub,
        "fidelity",
        help="long-trajectory fidelity benchmark against the reference (NVE energy, NVT structure)",
        description="From equilibrated reference states (the checkpoint's own reference and "
        "material where it records them, else FCC Al under the Mendelev EAM in LAMMPS; with "
        "--reference DATASET that dataset's own LAMMPS potential or ASE calculator and "
        "material, an element or an alloy): NVE total-energy drift beside "
        "velocity Verlet, NVT temperature / RDF / VDOS / MSD / site drift / CNA / long-wave "
        "equipartition beside the reference with calibration rows, and one-step kinetic-energy "
        "bias. "
        "Writes fidelity.md, fidelity.json and plots into --out. Values: --preset (smoke: a "
        "minute; default: 500 atoms, 20 ps, 300/450/800 K, ~1 h on 2 cores; long: 100-ps NVT "
        "at 20 and 50 fs), then the named options, then --set KEY=VALUE.",
    )
    p.add_argument(
        "--preset", default="default", choices=["smoke", "default", "long"], help="size preset"
    )
    add_options(
        p,
        "equignnmd.fidelity.run:FidelityConfig",
        {
            "--checkpoint": "checkpoint",
            "--reference": "reference",
            "--temperatures": "temperatures_K",
            "--strides": "strides_fs",
            "--nve-ps": "nve_ps",
            "--nvt-ps": "nvt_ps",
            "--cells": "cells",
            "--energy": "energy",
            "--out": "out",
            "--device": "device",
        },
        "default: the preset's",
        checkpoint={
            "help": checkpoint_help(),
            "note": "default: the benchmark's, FidelityConfig",
        },
        reference={
            "note": "default: the checkpoint's own reference and material where it records "
            "them, else FCC Al under the Mendelev EAM"
        },
        out={"note": None},
    )
    add_output_flags(p)
    add_set(p, "any FidelityConfig field")
    p.set_defaults(func=cmd_fidelity)


def cmd_fidelity(args) -> int:
    from ..config import parse_overrides
    from ..fidelity import fidelity, make_config
    from ..fidelity.run import fidelity_reference

    values = {**config_values(args), **parse_overrides(args.set)}
    cfg = make_config(args.preset, "equignnmd fidelity", **values)
    claim_output(cfg.out, overwrite=args.overwrite, what="report folder")
    fidelity_reference(cfg)  # a dataset without a reference: refused, nothing made
    fidelity(cfg)
    print(f"fidelity report written to {Path(cfg.out) / 'fidelity.md'}")
    return 0


# ------------------------------------------------------------------------------ energy-head
def add_energy_head(sub) -> None:
    p = subparser(
        sub,
        "energy-head",
        help="fit a checkpoint's own potential energy (for --energy model)",
        description="Fit an EAM-form energy head (positions only, the model's cutoff) by "
        "least squares to the potential energies and forces of a dataset's training "
        "temperatures, score it on later frames and the held-out temperatures, and write a "
        "copy of the checkpoint with the head inside (surrogate weights unchanged) plus "
        "OUT.energy-fit.md/.json. Rollouts then conserve its energy with --energy model.",
    )
    p.add_argument("--checkpoint", required=True, help=checkpoint_help() + " (required)")
    p.add_argument(
        "--data", required=True, help="dataset folder with energies and forces (required)"
    )
    p.add_argument("--out", required=True, help="checkpoint file to write, .pt (required)")
    add_output_flags(p)
    p.add_argument("--frames", type=int, help="fit frames per training temperature (default: 20)")
    add_set(p, "any EnergyFitConfig field")
    p.set_defaults(func=cmd_energy_head)


def cmd_energy_head(args) -> int:
    from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from ..config import ConfigError, parse_overrides
    from ..potential import fit_energy_head, write_report

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


# ------------------------------------------------------------------------------ novelty-box
def add_novelty_box(sub) -> None:
    p = subparser(
        sub,
        "novelty-box",
        help="store the training states' box of local densities in a checkpoint",
        description="Measure three per-atom smooth densities at the model's cutoff on a "
        "dataset's training trajectories (held-out ones left out) and write a copy of the "
        "checkpoint (weights unchanged) that carries their box: rollouts then warn once when "
        "atoms leave it (a surface, a liquid, a defect the model never saw), write "
        "novelty_fraction to thermo.csv, and stop with --novelty-stop (equignnmd.novelty).",
    )
    p.add_argument("--checkpoint", required=True, help=checkpoint_help() + " (required)")
    p.add_argument("--data", required=True, help="the model's training dataset (required)")
    p.add_argument("--out", required=True, help="checkpoint file to write, .pt (required)")
    p.add_argument("--frames", type=int, default=20, help="frames per training trajectory")
    add_output_flags(p)
    p.set_defaults(func=cmd_novelty_box)


def cmd_novelty_box(args) -> int:
    from ..checkpoint import load_checkpoint, read_checkpoint, save_checkpoint
    from ..config import ConfigError
    from ..novelty import dataset_novelty_box

    out = Path(args.out)
    if out.suffix != ".pt" or out.is_dir():
        raise ConfigError(f"argument --out: {out} is not a .pt file name; expected e.g. C_N.pt")
    claim_output(out, overwrite=args.overwrite, what="file")
    model = load_checkpoint(args.checkpoint, device="cpu")
    model.novelty_box = box = dataset_novelty_box(args.data, model.cutoff, args.frames)
    save_checkpoint(out, model, model.data_summary, read_checkpoint(args.checkpoint).get("trainer"))
    print(
        f"checkpoint with its novelty box written to {out}: densities (β = "
        f"{', '.join(f'{b:g}' for b in box.decays)} / r_c) low "
        f"{', '.join(f'{x:.3f}' for x in box.low)}, high {', '.join(f'{x:.3f}' for x in box.high)}"
    )
    return 0
