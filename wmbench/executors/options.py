"""Choosing a sweep's executor and its options (``--executor``, ``--executor-option``, the ``[executor]`` table)."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError, did_you_mean
from wmbench.executors.base import Executor


def make_executor(name: str | None, table: dict[str, Any], items: tuple[str, ...], out: Path, jobs: int,
                  where: str = "executor") -> Executor:  # fmt: skip
    """The executor ``name`` (else the table's ``name``, else local) with its options from the table (when it names
    the same executor) and ``KEY=VALUE`` items; unknown names and options are did-you-mean errors."""
    from wmbench.plugins import registry

    table = dict(table)
    named = table.pop("name", "local")
    if not isinstance(named, str):
        raise WmbenchError(f"{where}: 'name' must be an executor name, got {named!r}")
    chosen = name or named
    cls = registry().executor(chosen)
    options = parse_options(cls.Options, table if chosen == named else {}, items, f"{where} {chosen!r}")
    return cls(options, out, jobs)


def parse_options(options_type: type, table: dict[str, Any], items: tuple[str, ...], where: str) -> Any:
    """An executor's options from its table and ``KEY=VALUE`` items (a value is read as TOML, else a string)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values = dict(table)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise WmbenchError(f"--executor-option {item!r} must be KEY=VALUE")
        try:
            values[key.strip().replace("-", "_")] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip().replace("-", "_")] = text
    hints = typing.get_type_hints(options_type)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise WmbenchError(f"{where}: unknown option {key!r}{did_you_mean(key, fields)}; "
                               f"choose from: {', '.join(fields) or '(none)'}")  # fmt: skip
        out[key] = _coerce(value, hints[key], f"{where}: option {key!r}")
    return options_type(**out)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """A TOML value as the field's type (int, float, str, tuple of str, or one of them or None)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        return _coerce(value, kinds[0], where)
    if typing.get_origin(hint) is tuple:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise WmbenchError(f"{where} must be a list of strings, got {value!r}")
        if any("\n" in v or "\r" in v for v in value):
            raise WmbenchError(f"{where}: a line break inside an entry is not allowed, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, hint) or isinstance(value, bool) != (hint is bool):
        raise WmbenchError(f"{where} must be {hint.__name__}, got {value!r}")
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise WmbenchError(f"{where}: a line break is not allowed, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise WmbenchError(f"{where} must not be negative, got {value!r}")
    return value
