"""Run configuration: frozen dataclasses whose defaults are the IRIS paper's, presets and overrides.

A preset is a TOML file in ``wmbench/presets`` holding overrides of these defaults. The tokenizer's and
the backbone's options belong to the chosen plugin: a preset gives them per plugin (``[tokenizer.vqvae]``),
and ``--set tokenizer.ch=32`` sets an option of whichever tokenizer is chosen.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from wmbench.errors import WmbenchError, did_you_mean, unknown


@dataclass(frozen=True)
class EnvConfig:
    """The Atari environment and the paper's wrappers."""

    size: int = 64
    """Frames are resized to size x size RGB."""
    frame_skip: int = 4
    """Agent steps repeat the action this many frames, observing the max over the last two."""
    noop_max: int = 30
    """Up to this many no-ops at reset in training (evaluation uses 1)."""
    done_on_life_loss: bool = True
    """In training, losing a life ends the episode."""
    max_frames_train: int = 20_000
    """Training episodes are cut after this many emulator frames."""
    max_frames_test: int = 108_000
    """Evaluation episodes are cut after this many emulator frames."""


@dataclass(frozen=True)
class WorldModelConfig:
    """The world model's sequence layout, and the width and depth a backbone is asked to have."""

    max_blocks: int = 20
    """Frames (blocks of tokens_per_frame + 1 tokens) the transformer attends over."""
    num_layers: int = 10
    """Transformer layers (backbones built from scratch)."""
    num_heads: int = 4
    """Attention heads (backbones built from scratch)."""
    embed_dim: int = 256
    """Width of the world model's token embeddings and heads."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and residuals."""


@dataclass(frozen=True)
class ActorCriticConfig:
    """The policy and value network that reads reconstructed frames."""

    lstm_dim: int = 512
    """Hidden size of the LSTM cell."""
    channels: tuple[int, ...] = (32, 32, 64, 64)
    """Channels of the conv + max-pool layers."""


@dataclass(frozen=True)
class CollectConfig:
    """Gathering real experience."""

    steps_per_epoch: int = 200
    """Environment steps collected per epoch."""
    stop_after_epoch: int = 500
    """No collection after this epoch."""
    epsilon: float = 0.01
    """Probability of a uniformly random action."""
    temperature: float = 1.0
    """Policy temperature while collecting."""


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Training the tokenizer."""

    batch_size: int = 256
    start_after_epochs: int = 5
    steps_per_epoch: int = 200
    lr: float = 1e-4
    grad_clip: float = 10.0


@dataclass(frozen=True)
class WorldModelTrainConfig:
    """Training the world model."""

    batch_size: int = 64
    start_after_epochs: int = 25
    steps_per_epoch: int = 200
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 10.0


@dataclass(frozen=True)
class ActorCriticTrainConfig:
    """Training the actor-critic in imagination."""

    batch_size: int = 64
    start_after_epochs: int = 50
    steps_per_epoch: int = 200
    lr: float = 1e-4
    grad_clip: float = 10.0
    burn_in: int = 20
    """Real frames fed to the LSTM (and the world model's context) before imagining."""
    horizon: int = 20
    """Imagined steps per trajectory."""
    gamma: float = 0.995
    lambda_: float = 0.95
    entropy_weight: float = 0.001


@dataclass(frozen=True)
class TrainingConfig:
    """The epoch schedule."""

    epochs: int = 600
    sampling_weights: tuple[float, ...] = (0.125, 0.125, 0.25, 0.5)
    """Episode sampling weights per recency bucket, oldest first (empty: uniform)."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    world_model: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    actor_critic: ActorCriticTrainConfig = field(default_factory=ActorCriticTrainConfig)
    checkpoint_every: int = 1
    """Epochs between checkpoints."""
    media_every: int = 10
    """Epochs between media in ``media/``: a reconstruction grid and train, test and imagined episode videos
    (0: never). The last epoch always writes them."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation with the test wrappers."""

    every: int = 5
    """Epochs between evaluations (0: only at the end)."""
    episodes: int = 16
    num_envs: int = 8
    temperature: float = 0.5
    final_episodes: int = 100
    """Episodes of the final evaluation."""


@dataclass(frozen=True)
class WorldModelTrackConfig:
    """The world-model track: the tokenizer and world model alone, trained on growing prefixes of a fixed dataset
    of real transitions, on the epoch schedule of ``training`` (``collect.steps_per_epoch`` new frames an epoch)."""

    dataset_steps: int = 100_000
    """Real transitions collected once, by a uniform random policy, for the train and held-out parts together."""
    heldout_fraction: float = 0.1
    """Share of the dataset's steps held out: whole episodes, the last ones collected."""
    budgets: tuple[int, ...] = (10_000, 20_000, 40_000, 80_000)
    """Train frames seen at which held-out figures are recorded (multiples of collect.steps_per_epoch)."""
    target_loss: float = 2.0
    """Held-out next-token cross-entropy whose first crossing is reported as frames to target."""
    eval_segments: int = 64
    """Held-out segments of world_model.max_blocks frames that losses and accuracies are averaged over."""
    rollout_starts: int = 32
    """Held-out frames that imagined rollouts start from (the held-out actions drive them)."""
    rollout_steps: tuple[int, ...] = (1, 5, 10)
    """Imagined steps after which frame MSE and PSNR against the real frames are recorded."""


@dataclass(frozen=True)
class PluginChoice:
    """A chosen plugin and its resolved options (a frozen dataclass the plugin defines)."""

    name: str
    options: Any


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run."""

    preset: str
    game: str
    seed: int
    tokenizer: PluginChoice
    backbone: PluginChoice
    env: EnvConfig = field(default_factory=EnvConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    world_model_track: WorldModelTrackConfig = field(default_factory=WorldModelTrackConfig)
    device: str = "auto"
    """cpu, cuda or auto."""
    bf16: bool = False
    """bf16 autocast for the forward passes."""
    init: str | None = None
    """A reference IRIS checkpoint whose ``init_parts`` the run starts from (``run --init``)."""
    init_parts: tuple[str, ...] = ("tokenizer", "world_model", "actor_critic")
    loggers: tuple[str, ...] = ()
    """Plugins whose run-observer hooks see this run, such as the built-in loggers ``tensorboard`` and ``wandb``."""
    probe: bool = True
    """Probe the backbone before training (causality in eval and train mode, cache equal to a full forward)."""


PLUGIN_SECTIONS = ("tokenizer", "backbone")


def preset_names() -> list[str]:
    """The presets shipped in wmbench/presets."""
    folder = resources.files("wmbench") / "presets"
    return sorted(p.name[: -len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def load_preset(name: str) -> dict[str, Any]:
    """A preset's overrides as nested dicts, on top of those of the preset its ``meta.base`` names, if any."""
    if name not in preset_names():
        raise unknown("preset", name, preset_names())
    text = (resources.files("wmbench") / "presets" / f"{name}.toml").read_text()
    tree = tomllib.loads(text)
    base = tree.get("meta", {}).get("base")
    return _merge(load_preset(base), tree) if base else tree


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


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
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


def resolve(
    preset: str,
    game: str,
    seed: int,
    tokenizer: str | None,
    backbone: str | None,
    overrides: list[str],
    registry: "Registry",
    extra: dict[str, Any] | None = None,
) -> RunConfig:
    """The full run config: defaults, then the preset, then ``extra``, then ``--set`` overrides.

    Plugin names are validated against the registry, and plugin options against the options
    dataclass each plugin declares.
    """
    tree = _merge(load_preset(preset), extra or {})
    tree = _merge(tree, parse_overrides(overrides))
    tree.pop("meta", None)
    for key in ("preset", "game", "seed"):
        if key in tree:
            raise WmbenchError(f"config key {key!r} is set by its own option, not by --set")
    choices = {}
    for section, chosen in (("tokenizer", tokenizer), ("backbone", backbone)):
        table = dict(tree.pop(section, {}))
        name = chosen or table.pop("name", None)
        table.pop("name", None)
        spec = registry.get(section, name)
        per_plugin = {k: table.pop(k) for k in list(table) if isinstance(table[k], dict)}
        options = _merge(per_plugin.get(spec.name, {}), table)
        choices[section] = PluginChoice(spec.name, build_dataclass(spec.options, options, section))
    return build_dataclass(RunConfig, {**tree, **choices, "preset": preset, "game": game, "seed": seed}, "")


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


def from_dict(data: dict[str, Any], registry: "Registry") -> RunConfig:
    """Rebuild a config written by :func:`to_dict` (for resume and eval)."""
    data = dict(data)
    choices = {}
    for section in PLUGIN_SECTIONS:
        entry = data.pop(section)
        spec = registry.get(section, entry["name"])
        choices[section] = PluginChoice(spec.name, build_dataclass(spec.options, entry["options"], section))
    return build_dataclass(RunConfig, {**data, **choices}, "")


if typing.TYPE_CHECKING:
    from wmbench.plugins import Registry
