"""Typed configuration from YAML: the one way the analysis settings and the training config are
read.

A config is a frozen dataclass whose fields are sections (dataclasses again) or values. The
defaults live in one YAML file per config (``config/analyze.yaml``, ``config/train.yaml``); a
user's file is merged over them key by key. Unknown keys are an error, so a typo never silently
falls back to a default; a value must have its field's type (an integer where a number is
expected is fine); each section's ``__post_init__`` checks its ranges with ``require``. A bad file
therefore stops a job with one line before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from common.messages import yaml_problem

# A config file is a few kilobytes and needs few YAML aliases, if any. Refusing bigger files and
# more aliases before building them keeps a hostile or broken file ("billion laughs": 9 levels
# of 9 aliases of aliases, 81 in all) from expanding, as the settings are checked, to billions
# of values; 20 aliases can expand to a few thousand at most.
MAX_FILE_BYTES = 1 << 20
MAX_ALIASES = 20


class ConfigError(ValueError):
    """A configuration a user wrote is unusable; the message says what to fix."""


def require(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


class _Loader(yaml.SafeLoader):
    """A safe loader that counts alias uses: a few are normal, hundreds are an attack."""

    def compose_node(self, parent, index):  # type: ignore[override]
        if self.check_event(yaml.AliasEvent):
            self.aliases_seen = getattr(self, "aliases_seen", 0) + 1
            if self.aliases_seen > MAX_ALIASES:
                raise ConfigError(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)


def read_yaml(path: str | Path) -> dict:
    """A YAML mapping from ``path``; ConfigError with one line for anything else."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise ConfigError(f"config {path} is over {MAX_FILE_BYTES // 1024} KiB: not a config")
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read config {path}: {e.strerror}") from None
    try:
        data = yaml.load(text, Loader=_Loader) or {}
    except ConfigError as e:
        raise ConfigError(f"config {path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config {path} is not valid YAML: {yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config {path} must be a mapping of sections")
    return data


def merge(base: dict, override: dict, cls: type | None = None, where: str = "") -> dict:
    """``override`` laid over ``base`` key by key; a key ``base`` lacks is a typo, not a new
    setting. With ``cls`` (the dataclass the values are for), a field that is a section is
    merged key by key and any other value, a mapping such as a model's heads included, is
    replaced whole; without it every nested mapping is merged."""
    hints = typing.get_type_hints(cls) if cls is not None else {}
    merged = dict(base)
    for key, value in override.items():
        if key not in base:
            known = ", ".join(map(str, base)) or "none"
            raise ConfigError(f"unknown setting '{where}{key}' (known: {known})")
        hint = hints.get(key)
        section = dataclasses.is_dataclass(hint) if cls is not None else isinstance(base[key], dict)
        if section:
            if not isinstance(value, dict):
                raise ConfigError(f"setting '{where}{key}' must be a mapping")
            merged[key] = merge(
                base[key], value, hint if cls is not None else None, f"{where}{key}."
            )
        else:
            merged[key] = value
    return merged


def build(cls: type, values: Any, where: str = ""):
    """An instance of the dataclass ``cls`` from plain YAML values, every field type-checked;
    nested dataclass fields are built the same way."""
    if not isinstance(values, dict):
        raise ConfigError(f"setting '{where}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in values if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown setting '{_join(where, unknown[0])}' (known: {', '.join(names)})"
        )
    kwargs = {}
    for name in names:
        if name not in values:
            raise ConfigError(f"setting '{_join(where, name)}' is missing")
        kwargs[name] = _value(hints[name], values[name], _join(where, name))
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ConfigError(f"settings '{where}': {e}") from None


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def _value(hint, value: Any, where: str):
    """``value`` converted to ``hint`` (lists to tuples, sections to dataclasses) or a
    ConfigError that names the setting and the type it must have."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, where)
    if not _fits(hint, value):
        raise ConfigError(f"setting '{where}' must be {_describe(hint)}, not {value!r}")
    if isinstance(value, list):
        return tuple(value)
    if isinstance(value, dict):
        return dict(value)
    return value


def _fits(hint, value: Any) -> bool:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return any(_fits(a, value) for a in args)
    if hint is type(None):
        return value is None
    if origin is tuple:
        item = args[0] if args else Any
        return isinstance(value, list) and all(_fits(item, v) for v in value)
    if origin is dict:
        key, item = args
        return isinstance(value, dict) and all(
            _fits(key, k) and _fits(item, v) for k, v in value.items()
        )
    if hint is Any:
        return True
    if isinstance(value, bool) or hint is bool:
        return isinstance(value, bool) and hint is bool
    if hint is float:
        return isinstance(value, int | float)
    return isinstance(value, hint)


_NAMES = {bool: "true or false", int: "a whole number", float: "a number", str: "text"}


def _describe(hint) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple:
        return f"a list ({_describe(args[0])} each)" if args else "a list"
    if origin is dict:
        return f"a mapping of {_describe(args[0])} to {_describe(args[1])}"
    return _NAMES.get(hint, getattr(hint, "__name__", str(hint)))


def replace(config, section: str, **values: Any):
    """A copy of ``config`` with some keys of one section changed (command-line overrides); the
    section checks its ranges again."""
    return dataclasses.replace(
        config, **{section: dataclasses.replace(getattr(config, section), **values)}
    )


def load(cls: type, defaults: str | Path, *overrides: str | Path | dict):
    """``cls`` built from the defaults file with each override (a file or a mapping) merged over
    it in turn."""
    data = read_yaml(defaults)
    for override in overrides:
        data = merge(data, override if isinstance(override, dict) else read_yaml(override), cls)
    return build(cls, data)
