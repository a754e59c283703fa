"""The ``equignnmd`` command line. Each sub-command is a thin layer over a library function:
its options and what it runs live together, by subject (:mod:`.dataset`: generate, convert,
baselines; :mod:`.model`: train, evaluate, fidelity, energy-head; :mod:`.md`: rollout,
lammps, quickstart); :mod:`.options` makes the options that set config fields from the
config dataclasses (a new field is one line of a command's table).

Environment: importing the package sets ``OMP_WAIT_POLICY=passive`` unless the user set it,
before anything imports torch (:mod:`equignnmd._environment`); :func:`main` applies it again
(a no-op then). These modules import only the standard library and light parts of the
package, and read the configs' fields from their sources: ``equignnmd --help`` loads no torch.

Every option's help shows its default (:class:`~.options.HelpFormatter`); an option without a
fixed default says in its help what is used when it is left out. Every command that writes
refuses a non-empty output place unless ``--overwrite`` (or ``--resume`` where it can continue
what is there) is given, before any work starts (:func:`equignnmd.outputs.claim_output`).
"""

from __future__ import annotations

import argparse
import sys

from .._environment import apply_environment_defaults
from . import dataset, md, model
from .md import SPEED_EPILOG
from .options import HelpFormatter

__all__ = ["COMMANDS", "SPEED_EPILOG", "build_parser", "main"]

COMMANDS = [
    dataset.add_generate,
    dataset.add_convert,
    dataset.add_baselines,
    model.add_train,
    md.add_rollout,
    model.add_evaluate,
    model.add_fidelity,
    model.add_energy_head,
    model.add_novelty_box,
    md.add_lammps,
    md.add_quickstart,
]


def build_parser() -> argparse.ArgumentParser:
    from .._version import __version__

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


def main(argv: list[str] | None = None) -> int:
    """The console script ``equignnmd`` (and ``python -m equignnmd``): environment defaults
    (:func:`apply_environment_defaults`, before torch is imported), then the sub-command.
    Returns the exit status: 0, 2 for a usage or input error (printed), 3 for a rollout the
    guard stopped."""
    apply_environment_defaults()
    from ..config import ConfigError

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
