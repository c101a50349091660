"""Building config values: coercion with type and range checks, ``--set`` overrides, nested merges, dict forms."""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any

from wmbench.config.schema import RunConfig
from wmbench.errors import WmbenchError, did_you_mean


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check a value (from TOML, JSON or parsed text) against a field's type; convert where lossless."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise WmbenchError(f"{where} must be a list, got {value!r}")
        (inner, _) = typing.get_args(kind)
        return tuple(_coerce(v, inner, where) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        return value
    raise WmbenchError(f"{where} must be {kind.__name__}, got {value!r}")


def parse_value(text: str) -> Any:
    """A command-line value: JSON where it parses (numbers, true/false, lists, null), else the text."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


POSITIVE = frozenset({
    "epochs", "steps_per_epoch", "batch_size", "lr", "episodes", "final_episodes", "num_envs", "checkpoint_every",
    "horizon", "max_blocks", "size", "frame_skip", "num_layers", "num_heads", "embed_dim", "lstm_dim",
})  # fmt: skip
"""Fields that must be above zero wherever they appear (budgets, sizes, rates)."""


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """A dataclass instance from nested dicts, with did-you-mean for unknown keys."""
    if not isinstance(data, dict):
        raise WmbenchError(f"{where or 'config'} must be a table of options, got {data!r}")
    types_ = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        path = f"{where}.{key}" if where else key
        if key not in names:
            raise WmbenchError(f"unknown config key {path!r}{did_you_mean(key, names)}")
        kind = types_[key]
        if isinstance(kind, type) and isinstance(value, kind):
            kwargs[key] = value
        elif dataclasses.is_dataclass(kind):
            kwargs[key] = build_dataclass(kind, value, path)
        else:
            kwargs[key] = _coerce(value, kind, path)
        if key in POSITIVE and isinstance(kwargs[key], (int, float)) and not kwargs[key] > 0:
            raise WmbenchError(f"{path} must be above zero, got {value!r}")
    return cls(**kwargs)


def _set_path(tree: dict[str, Any], path: str, value: Any) -> None:
    keys = path.split(".")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise WmbenchError(f"config key {path!r} goes inside a value that is not a table")
    node[keys[-1]] = value


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["a.b=1", ...]`` as nested dicts."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise WmbenchError(f"--set takes KEY=VALUE, got {item!r}")
        _set_path(tree, key.strip(), parse_value(text.strip()))
    return tree


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level of dotted keys: ``{"a": {"b": 1}}`` is ``{"a.b": 1}``."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as plain JSON-ready dicts (plugin options included)."""
    return dataclasses.asdict(config)
