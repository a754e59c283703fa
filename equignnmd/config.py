"""Typed configuration: dataclasses loaded from YAML, validated, overridable from the CLI.

Every config class is a plain dataclass whose field types are ``int``, ``float``, ``str``,
``bool``, ``list[float]``, ``list[int]`` or ``dict``. :func:`load_config` reads a YAML mapping
(optionally one section of it), applies ``key=value`` overrides, and checks every key and type,
naming the file and the field when something is wrong.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
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
