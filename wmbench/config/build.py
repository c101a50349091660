"""Building config values: coercion with type and range checks, ``--set`` overrides, nested merges, dict forms."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from typing import Any

from wmbench.config.schema import RunConfig
from wmbench.errors import WmbenchError, did_you_mean

INT_LIMIT = 2**31 - 1
"""No integer setting goes beyond this, up or down (sizes, budgets and counts far below it; C ints and tensor
sizes overflow above it)."""
SEED_LIMIT = 2**32 - 1
"""Seeds go from 0 to this (numpy's, torch's and the envs' seeds all take it)."""


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """Check a value (from TOML, JSON or parsed text) against a field's type; convert where lossless.

    Booleans are not numbers here and floats must be finite; a ``Literal`` field takes one of its values."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(kind)
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if origin is typing.Literal:
        choices = typing.get_args(kind)
        if any(value == c and type(value) is type(c) for c in choices):
            return value
        raise WmbenchError(f"{where} must be one of {', '.join(map(repr, choices))}, got {value!r}")
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
            if not math.isfinite(value):
                raise WmbenchError(f"{where} must be a finite number, got {value!r}")
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
    except (json.JSONDecodeError, RecursionError):
        lowered = text.lower()
        if lowered in ("true", "false"):
            return lowered == "true"
        return text


POSITIVE = frozenset({
    "epochs", "steps_per_epoch", "batch_size", "lr", "episodes", "final_episodes", "num_envs", "checkpoint_every",
    "horizon", "max_blocks", "size", "frame_skip", "num_layers", "num_heads", "embed_dim", "lstm_dim", "channels",
    "max_frames_train", "max_frames_test", "temperature", "grad_clip", "dataset_steps", "budgets", "eval_segments",
    "rollout_starts", "rollout_steps", "vocab_size", "z_channels", "ch", "ch_mult", "code_dim", "patch_size",
    "decoder_layers", "width", "layers", "heads", "stop_after_epoch",
})  # fmt: skip
"""Fields that must be above zero wherever they appear (budgets, sizes, rates), each element of a list too."""
NON_NEGATIVE = frozenset({
    "start_after_epochs", "noop_max", "every", "media_every", "burn_in", "weight_decay",
    "entropy_weight", "commitment_weight", "perceptual_weight", "num_res_blocks", "sampling_weights",
    "attn_resolutions",
})  # fmt: skip
"""Fields that may be zero (an epoch count, a weight) but not negative."""
RANGES: dict[str, tuple[str, typing.Callable[[float], bool]]] = {
    **dict.fromkeys(POSITIVE, ("above zero", lambda v: v > 0)),
    **dict.fromkeys(NON_NEGATIVE, ("zero or more", lambda v: v >= 0)),
    **dict.fromkeys(("epsilon", "gamma", "lambda_"), ("between 0 and 1", lambda v: 0 <= v <= 1)),
    "dropout": ("at least 0 and below 1", lambda v: 0 <= v < 1),
    "heldout_fraction": ("between 0 and 1 (both excluded)", lambda v: 0 < v < 1),
    "seed": (f"between 0 and {SEED_LIMIT:,}", lambda v: 0 <= v <= SEED_LIMIT),
}
"""The range of each numeric field, by name, wherever it appears (plugin options included)."""


def _check_range(key: str, value: Any, path: str) -> None:
    """The field's range (:data:`RANGES`), and :data:`INT_LIMIT` for every integer but the seed."""
    numbers = [v for v in (value if isinstance(value, tuple) else (value,)) if type(v) in (int, float)]
    rules = [RANGES[key]] if key in RANGES else []
    if key != "seed":
        rules.append((f"between {-INT_LIMIT:,} and {INT_LIMIT:,}", lambda v: type(v) is float or abs(v) <= INT_LIMIT))
    for words, ok in rules:
        if not all(ok(v) for v in numbers):
            raise WmbenchError(f"{path} must be {words}, got {list(value) if isinstance(value, tuple) else value!r}")


def build_dataclass(cls: type, data: dict[str, Any], where: str) -> Any:
    """A dataclass instance from nested dicts, with did-you-mean for unknown keys and every value's type and range
    checked."""
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
        if dataclasses.is_dataclass(kind) and isinstance(kind, type):
            kwargs[key] = value if isinstance(value, kind) else build_dataclass(kind, value, path)
        elif kind is typing.Any:
            kwargs[key] = value
        else:
            kwargs[key] = _coerce(value, kind, path)
        _check_range(key, kwargs[key], path)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in kwargs and _no_default(f)]
    if missing:
        raise WmbenchError(f"{where or 'config'} needs {', '.join(map(repr, missing))} (no default)")
    return cls(**kwargs)


DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def check_config(config: RunConfig) -> RunConfig:
    """What no single field can check: settings that must agree with each other. Returns the config."""
    if not DEVICE.match(config.device):
        raise WmbenchError(f"device must be auto, cpu, cuda or cuda:N, got {config.device!r}")
    weights = config.training.sampling_weights
    if weights and not sum(weights) > 0:
        raise WmbenchError(f"training.sampling_weights must have a positive sum, got {list(weights)}")
    side = config.env.size // 2 ** len(config.actor_critic.channels)
    if side < 1:
        raise WmbenchError(
            f"actor_critic.channels has {len(config.actor_critic.channels)} layers, each halving the frame: "
            f"env.size={config.env.size} is too small for them (at least {2 ** len(config.actor_critic.channels)})"
        )
    return config


def _no_default(f: dataclasses.Field) -> bool:
    return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING


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
