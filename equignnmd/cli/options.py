"""The parts every command's options are made of.

:func:`add_options` makes a command's options that set config fields from the dataclass: a
table flag → field, the type from the field's annotation, the help from its docstring
(:func:`equignnmd.config.field_docs`, read from the source without importing the module, so
``equignnmd --help`` loads no torch); a new option is one line of the table.
:func:`config_values` collects what was given. Where a command's values come from a YAML
config or a preset, an option left out is ``None`` and its help says where the value comes
from; elsewhere its default is the dataclass's, which :class:`HelpFormatter` shows.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import math
from typing import Any

from ..config import field_docs


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


def stride_list(text: str) -> list[float]:
    """Strides Δt: positive numbers of fs, comma-separated."""
    return _number_list(text, "stride", "fs", "5,10,20")


def temperature_list(text: str) -> list[float]:
    """Temperatures: positive numbers of K, comma-separated."""
    return _number_list(text, "temperature", "K", "300,350")


# ---------------------------------------------------------------- options from the configs
CONFIG_NOTE = "default: the config's value"
"""The help note of an option whose value comes from a YAML config when it is left out."""
DTYPES = ("float32", "float64")
THERMOSTAT_CHOICES = ("none", "csvr", "langevin")
CHOICES = {
    "thermostat": THERMOSTAT_CHOICES,
    "rollout_thermostat": THERMOSTAT_CHOICES,
    "fmt": ("extxyz", "lammps-dump"),
    "dtype": DTYPES,
}
"""Config fields whose command-line value is one of a fixed set (by field name; the configs'
``validate`` checks the values that come from elsewhere)."""
LIST_TYPES = {"K": temperature_list, "fs": stride_list}
"""The parser of a ``list[float]`` field, by the unit its name ends with."""


def _value_type(name: str, annotation: str) -> dict[str, Any]:
    """``add_argument`` keywords for the values of field ``name``: the first type of its
    annotation (``None`` left out); a bool is a flag, a string argparse's own, a list of
    strings a repeatable option."""
    kind = next(t.strip() for t in annotation.split("|") if t.strip() != "None")
    if kind == "bool":
        return {"action": "store_true"}
    if kind == "list[str]":
        return {"action": "append"}
    if kind == "list[float]":
        return {"type": LIST_TYPES[name.rsplit("_", 1)[-1]]}
    return {"int": {"type": int}, "float": {"type": float}, "str": {}}[kind]


def add_options(
    p: argparse.ArgumentParser,
    config: str,
    options: dict[str, str],
    note: str | None = None,
    **fields: dict[str, Any],
) -> dict[str, argparse.Action]:
    """Add ``options`` (flag → field of dataclass ``config``, ``"module:Class"``; a flag with
    a short form as ``"-o/--output"``) to ``p`` and return their actions by field.

    Type from the field's annotation (:func:`_value_type`, :data:`CHOICES`), help from its
    docstring. With ``note`` (values from a YAML config or a preset) an option left out is
    ``None`` and its help ends with "(note)"; without, its default is the dataclass's, which
    :class:`HelpFormatter` shows. ``fields``: per field, ``add_argument`` keywords that differ
    (``required``, ``default``, ``help``) or its own ``note`` (None: the dataclass default).
    """
    docs = field_docs(config)
    actions = {}
    for flag, name in options.items():
        kw = _value_type(name, docs[name].annotation)
        kw |= {"choices": CHOICES[name]} if name in CHOICES else {}
        kw |= fields.get(name, {})
        own = kw.pop("note", "required" if kw.get("required") else note)
        default = None if own else kw.pop("default", docs[name].default)
        if default is dataclasses.MISSING:
            raise TypeError(f"{config}.{name}: no literal default to show; give it a note")
        text = kw.pop("help", docs[name].doc)
        text = f"{text} ({own})" if own else text
        kw["default"] = copy.deepcopy(default)
        actions[name] = p.add_argument(*flag.split("/"), help=text, **kw)
    p.set_defaults(config_fields={a.dest: name for name, a in actions.items()})
    return actions


def config_values(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields of :func:`add_options`' options that hold a value (not ``None``)."""
    given = {name: getattr(args, dest) for dest, name in args.config_fields.items()}
    return {name: value for name, value in given.items() if value is not None}


# ------------------------------------------------------------------------- shared options
def subparser(sub, name: str, **kwargs) -> argparse.ArgumentParser:
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


def add_set(p: argparse.ArgumentParser, what: str) -> None:
    """``--set KEY=VALUE``, repeatable: ``what`` says which fields."""
    p.add_argument(
        "--set", action="append", metavar="KEY=VALUE", help=f"{what}, repeatable (default: none)"
    )


def add_no_progress(p: argparse.ArgumentParser, text: str = "no progress bar") -> None:
    p.add_argument("--no-progress", action="store_true", help=text)


def checkpoint_help() -> str:
    from ..checkpoint import pretrained_names

    names = ", ".join(f"pretrained:{n}" for n in pretrained_names()) or "none installed"
    return f"checkpoint file written by `equignnmd train`, or a shipped model: {names}"
