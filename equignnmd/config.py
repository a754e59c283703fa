"""Typed configuration: dataclasses loaded from YAML, validated, overridable from the CLI.

Every config class is a plain dataclass whose field types are ``int``, ``float``, ``str``,
``bool``, ``list[float]``, ``list[int]`` or ``dict``. :func:`load_config` reads a YAML mapping
(optionally one section of it), applies ``key=value`` overrides, and checks every key and type,
naming the file and the field when something is wrong.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import functools
import importlib.resources
import importlib.util
import inspect
import re
import textwrap
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or override is wrong; the message names the file and the field."""


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"config file {path}: not valid YAML ({err})") from err
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping at the top level")
    return data


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``["a=1", "b=[1, 2]"]`` → ``{"a": 1, "b": [1, 2]}`` (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        out[key.strip().replace("-", "_")] = yaml.safe_load(value)
    return out


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{where}: bad value {value!r}")
    if origin in (list, tuple):
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        if isinstance(value, (int, float, str)) and not isinstance(value, bool):
            value = [value]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        return [_coerce(v, inner, f"{where}[{k}]") for k, v in enumerate(value)]
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, str):
            # YAML 1.1 (PyYAML) reads exponent notation without a dot, ``3e-4``, as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


def build(cls: type[T], values: dict[str, Any], source: str = "config") -> T:
    """Instantiate dataclass ``cls`` from ``values``, checking names and types."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{source}: unknown field(s) {unknown}; known: {sorted(names)}")
    kwargs = {k: _coerce(v, hints[k], f"{source}: field '{k}'") for k, v in values.items()}
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        check(source)
    return obj


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
    section: str | None = None,
) -> T:
    """Defaults of ``cls`` ← YAML file (or one ``section`` of it) ← overrides."""
    values: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        data = read_yaml(path)
        source = str(path)
        if section is not None:
            data = data.get(section) or {}
            source = f"{path} [{section}]"
        values.update(data)
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return build(cls, values, source)


def to_dict(obj) -> dict[str, Any]:
    return dataclasses.asdict(obj)


@dataclasses.dataclass(frozen=True)
class FieldDoc:
    """A dataclass field as its class's source writes it (read with :mod:`ast`)."""

    annotation: str
    """As written, e.g. ``"list[float]"``, ``"float | None"``."""
    default: Any
    """The default where the source writes a literal (also ``field(default=...)`` and a
    ``default_factory`` of ``list``, ``dict`` or ``lambda: <literal>``), else
    :data:`dataclasses.MISSING`."""
    doc: str
    """The first paragraph of the field's docstring, whitespace collapsed ("" without one)."""


@functools.cache
def field_docs(cls: type | str) -> dict[str, FieldDoc]:
    """The fields of dataclass ``cls`` with their docstrings (the string literal right after a
    field), in order, read from its source with :mod:`ast`.

    ``cls`` is the class, or ``"package.module:Class"`` to read it without importing the
    module or its packages (whose imports may be heavy: ``equignnmd --help`` loads no torch);
    the file is found beside the top-level package's. The sources ship in the wheel, so this
    works from an install too. The first paragraph of a docstring of a field the command
    line exposes is its ``--help`` text: a phrase with the unit (:mod:`equignnmd.cli`).
    """
    if isinstance(cls, str):
        module, name = cls.split(":")
        top, *parts = module.split(".")
        spec = importlib.util.find_spec(top)  # the top package only: no submodule imported
        path = Path(spec.origin).parent.joinpath(*parts)
        path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
        tree = ast.parse(path.read_text(encoding="utf-8"))
    else:
        name, tree = cls.__name__, ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = next(n for n in ast.walk(tree) if isinstance(n, ast.ClassDef) and n.name == name).body
    out = {}
    for node, after in zip(body, [*body[1:], None]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = after.value.value if isinstance(after, ast.Expr) else None
            doc = re.split(r"\n\s*\n", text.strip())[0] if isinstance(text, str) else ""
            annotation = ast.unparse(node.annotation)
            out[node.target.id] = FieldDoc(annotation, _literal(node.value), " ".join(doc.split()))
    return out


def _literal(node: ast.expr | None) -> Any:
    """The value of a field's default expression where it is a literal, else MISSING."""
    if isinstance(node, ast.Call):  # dataclasses.field(...)
        keywords = {k.arg: k.value for k in node.keywords}
        factory = keywords.get("default_factory")
        if isinstance(factory, ast.Name) and factory.id in ("list", "dict"):
            return [] if factory.id == "list" else {}
        node = factory.body if isinstance(factory, ast.Lambda) else keywords.get("default")
    try:
        return dataclasses.MISSING if node is None else ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):  # a name, an attribute, a call
        return dataclasses.MISSING


CONFIG_DIR = Path(str(importlib.resources.files("equignnmd.configs")))
"""The built-in configs: the repository's ``configs/``, installed as the package data
``equignnmd.configs`` (so a non-editable install finds them too)."""


def resolve_config(name: str | None, kind: str = "") -> Path | None:
    """A YAML path as given, or a built-in config name such as ``quick`` or ``paper``."""
    if name is None:
        return None
    path = Path(name)
    if path.exists() or path.suffix in (".yaml", ".yml"):
        return path
    for candidate in (CONFIG_DIR / kind / f"{name}.yaml", CONFIG_DIR / f"{name}.yaml"):
        if candidate.exists():
            return candidate
    known = sorted(p.stem for p in (CONFIG_DIR / kind).glob("*.yaml"))
    raise SystemExit(f"config {name!r} not found; give a YAML file or one of {known}")


def check_hparams(config_class: type, values: Any, source: str, consistent: bool = True):
    """``values`` (a dict of fields, or already a ``config_class``) as a checked
    ``config_class`` instance.

    Raises :class:`~equignnmd.config.ConfigError` naming ``source`` (a config file, a
    checkpoint, a call) and the field: an unknown (e.g. misspelt) field with the closest known
    names, or a value of the wrong type or range with what was expected (the dataclass's
    ``validate``); with ``consistent`` also a violated constraint between fields (its
    ``check_consistency``, if it has one), as a model built from these values would.
    """
    if isinstance(values, config_class):
        values = dataclasses.asdict(values)
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: expected a mapping of hyperparameters, got {values!r}")
    known = sorted(f.name for f in dataclasses.fields(config_class))
    unknown = sorted(set(values) - set(known))
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(str(key), known, n=1)
            if close:
                hints.append(f"{key!r} → {close[0]!r}?")
        hint = f" (did you mean {', '.join(hints)})" if hints else ""
        raise ConfigError(
            f"{source}: unknown hyperparameter field(s) {unknown}{hint}; expected fields of "
            f"{config_class.__name__}: {known}"
        )
    hparams = build(config_class, dict(values), source)
    if consistent and hasattr(hparams, "check_consistency"):
        hparams.check_consistency(source)
    return hparams
