"""Resolving a run's config: presets, then extra settings, then ``--set`` overrides, with plugin options checked
against the registry (the one place in config that knows it)."""

from __future__ import annotations

import tomllib
import typing
from importlib import resources
from typing import Any

from wmbench.config.build import build_dataclass, check_config, merge, parse_overrides
from wmbench.config.schema import PLUGIN_SECTIONS, PluginChoice, RunConfig
from wmbench.errors import WmbenchError, unknown

if typing.TYPE_CHECKING:
    from wmbench.plugins import Registry


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
    return merge(load_preset(base), tree) if base else tree


def resolve(
    preset: str,
    game: str,
    seed: int,
    tokenizer: str | None,
    backbone: str | None,
    overrides: list[str],
    registry: Registry,
    extra: dict[str, Any] | None = None,
) -> RunConfig:
    """The full run config: defaults, then the preset, then ``extra``, then ``--set`` overrides.

    Plugin names are validated against the registry, and plugin options against the options
    dataclass each plugin declares.
    """
    tree = merge(load_preset(preset), extra or {})
    tree = merge(tree, parse_overrides(overrides))
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
        options = merge(per_plugin.get(spec.name, {}), table)
        choices[section] = PluginChoice(spec.name, build_dataclass(spec.options, options, section))
    return check_config(
        build_dataclass(RunConfig, {**tree, **choices, "preset": preset, "game": game, "seed": seed}, "")
    )


def from_dict(data: dict[str, Any], registry: Registry, where: str = "config") -> RunConfig:
    """Rebuild a config written by :func:`to_dict` (for resume and eval); an error names ``where`` it came from."""
    try:
        if not isinstance(data, dict):
            raise WmbenchError("not a JSON object")
        data = dict(data)
        choices = {}
        for section in PLUGIN_SECTIONS:
            entry = data.pop(section, None)
            if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
                raise WmbenchError(f"{section!r} must be a table with a name and options, got {str(entry)[:80]}")
            spec = registry.get(section, entry["name"])
            choices[section] = PluginChoice(spec.name, build_dataclass(spec.options, entry.get("options"), section))
        return check_config(build_dataclass(RunConfig, {**data, **choices}, ""))
    except WmbenchError as exc:
        raise WmbenchError(f"{where}: {exc}") from exc
