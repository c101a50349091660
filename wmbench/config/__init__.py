"""Run configuration: the schema (:mod:`.schema`), building values (:mod:`.build`) and resolving presets and
overrides against the registry (:mod:`.resolve`). Import names from here: ``from wmbench import config as cfg``."""

from wmbench.config.build import build_dataclass, flatten, merge, parse_overrides, parse_value, to_dict
from wmbench.config.resolve import from_dict, load_preset, preset_names, resolve
from wmbench.config.schema import (
    PLUGIN_SECTIONS,
    ActorCriticConfig,
    ActorCriticTrainConfig,
    CollectConfig,
    EnvConfig,
    EvalConfig,
    PluginChoice,
    RunConfig,
    TokenizerTrainConfig,
    TrainingConfig,
    WorldModelConfig,
    WorldModelTrackConfig,
    WorldModelTrainConfig,
)

__all__ = [
    "PLUGIN_SECTIONS", "ActorCriticConfig", "ActorCriticTrainConfig", "CollectConfig", "EnvConfig", "EvalConfig",
    "PluginChoice", "RunConfig", "TokenizerTrainConfig", "TrainingConfig", "WorldModelConfig", "WorldModelTrackConfig",
    "WorldModelTrainConfig", "build_dataclass", "flatten", "from_dict", "load_preset", "merge", "parse_overrides",
    "parse_value", "preset_names", "resolve", "to_dict",
]  # fmt: skip
