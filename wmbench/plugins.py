"""The plugin host: built-ins and third parties load through the entry-point group ``wmbench``."""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import pluggy

from wmbench import hookspecs
from wmbench.errors import WmbenchError, unknown

GROUP = "wmbench"
DISABLE_ENV = "WMBENCH_DISABLE_PLUGINS"
"""Comma-separated plugin (entry-point) names not to load."""


@dataclasses.dataclass(frozen=True)
class NoOptions:
    """For plugins without options."""


@dataclass(frozen=True)
class Entry:
    """One registered backbone or tokenizer."""

    kind: str
    name: str
    build: Callable[..., Any]
    options: type
    summary: str
    plugin: str


class Register:
    """What a registration hook receives: call it once per name."""

    def __init__(self, registry: Registry, kind: str, plugin: str):
        self._registry, self._kind, self._plugin = registry, kind, plugin

    def __call__(self, name: str, build: Callable[..., Any], options: type = NoOptions, summary: str = "") -> None:
        if not dataclasses.is_dataclass(options):
            raise WmbenchError(f"plugin {self._plugin!r}: options of {self._kind} {name!r} must be a dataclass")
        table = self._registry.entries[self._kind]
        if name in table:
            raise WmbenchError(
                f"{self._kind} {name!r} is registered by plugins {table[name].plugin!r} and {self._plugin!r}; "
                f"disable one with {DISABLE_ENV}=NAME"
            )
        table[name] = Entry(self._kind, name, build, options, summary, self._plugin)


class Registry:
    """Backbones and tokenizers by name, with the plugin that provided each."""

    KINDS = ("backbone", "tokenizer")

    def __init__(self, manager: pluggy.PluginManager):
        self.manager = manager
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in self.KINDS}
        hooks = {"backbone": manager.hook.wmbench_register_backbones, "tokenizer": manager.hook.wmbench_register_tokenizers}
        for kind, hook in hooks.items():
            for impl in hook.get_hookimpls():
                try:
                    impl.function(register=Register(self, kind, impl.plugin_name))
                except WmbenchError:
                    raise
                except Exception as exc:
                    dist = getattr(manager, "distributions", {}).get(impl.plugin_name, "?")
                    raise _blame(impl.plugin_name, dist, f"failed in {hook.name} ({type(exc).__name__}: {exc})") from exc

    def get(self, kind: str, name: str | None) -> Entry:
        """The entry of that kind and name, or a did-you-mean error."""
        table = self.entries[kind]
        if name is None:
            raise WmbenchError(f"no {kind} chosen; choose from: {', '.join(sorted(table))}")
        if name not in table:
            raise unknown(kind, name, table)
        return table[name]

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])


def _disabled() -> set[str]:
    return {n.strip() for n in os.environ.get(DISABLE_ENV, "").split(",") if n.strip()}


def _blame(name: str, dist: str, problem: str) -> WmbenchError:
    return WmbenchError(f"plugin {name!r} from package {dist!r} {problem}; disable it with {DISABLE_ENV}={name}")


def plugin_manager() -> pluggy.PluginManager:
    """A plugin manager with every enabled entry point of the group loaded and checked."""
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    disabled = _disabled()
    seen: dict[str, str] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = ep.dist.name if ep.dist else "?"
        if ep.name in disabled:
            continue
        if ep.name in seen:
            if seen[ep.name] == dist:  # the same distribution seen twice on the path
                continue
            raise WmbenchError(
                f"plugin name {ep.name!r} is claimed by packages {seen[ep.name]!r} and {dist!r}; "
                f"uninstall one, or disable both with {DISABLE_ENV}={ep.name}"
            )
        seen[ep.name] = dist
        try:
            module = ep.load()
        except Exception as exc:  # a broken plugin must name itself, not surface later
            raise _blame(ep.name, dist, f"failed to load ({type(exc).__name__}: {exc})") from exc
        try:
            manager.register(module, name=ep.name)
            manager.check_pending()
        except pluggy.PluginValidationError as exc:
            raise _blame(ep.name, dist, f"does not fit the wmbench hooks ({exc})") from exc
    manager.distributions = seen
    return manager


@functools.lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry (plugins are loaded on first use)."""
    return Registry(plugin_manager())


def import_module(name: str) -> Any:
    """Import a heavy dependency with a clear error naming the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise WmbenchError(f"{name} is not installed: pip install 'wmbench[all]' ({exc})") from exc
