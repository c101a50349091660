"""The plugin host: built-ins and third parties load through the entry-point group ``wmbench``.

Loading never stops at one plugin's fault. A plugin that fails to import, does not fit the hooks, fails in a
registration hook or registers a name another plugin took is recorded with a one-line problem naming it, its
package (and for an import, the file and line) and how to disable it, and none of its registrations are kept.
Built-in plugins (package ``wmbench``) load first, so a newcomer claiming a built-in's name is the one refused. A
plugin that loads but implements no hook (a forgotten ``@hookimpl``) gets a warning. :func:`load` gives that
registry as it is (for ``wmbench --help`` and ``wmbench plugins``); :func:`registry`, which every other use goes
through, raises the first problem as a :class:`WmbenchError`.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import os
import re
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from wmbench import hookspecs
from wmbench.config.build import build_dataclass
from wmbench.envs.suite import EnvSuite, Game
from wmbench.errors import WmbenchError, did_you_mean, unknown
from wmbench.executors.base import Executor, RegisterExecutor

if TYPE_CHECKING:
    from wmbench.config import RunConfig
    from wmbench.rundir import RunDir

GROUP = "wmbench"
DISABLE_ENV = "WMBENCH_DISABLE_PLUGINS"
"""Comma-separated plugin (entry-point) names not to load."""
ONLY_ENV = "WMBENCH_PLUGINS"
"""Comma-separated plugin names: when set, only these load."""
OBSERVER_HOOKS = ("wmbench_run_started", "wmbench_metrics_logged", "wmbench_checkpoint_saved", "wmbench_run_finished")
BUILT_IN = "wmbench"
"""The package of the built-in plugins, which load before any other."""
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
"""What a registered id or game name may be: it names sweep cells and their folders."""


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


@dataclass
class PluginInfo:
    """One plugin (entry point) of the group: its package, and how loading it went."""

    name: str
    distribution: str = "?"
    version: str | None = None
    status: str = "loaded"
    """loaded, disabled (by an environment variable) or failed."""
    hooks: tuple[str, ...] = ()
    problem: str | None = None
    """The one-line error of a failed plugin."""
    warning: str | None = None
    """A loaded plugin that does nothing: no hook implemented, or ``wmbench_*`` functions not marked ``@hookimpl``."""
    traceback: str | None = None
    """The traceback of a plugin that failed to load (shown with ``--debug``)."""


class _Registrar:
    """What a registration hook receives: the registry, the kind it registers and the plugin registering."""

    def __init__(self, registry: Registry, kind: str, plugin: str):
        self._registry, self._kind, self._plugin = registry, kind, plugin


class Register(_Registrar):
    """What ``wmbench_register_backbones`` and ``wmbench_register_tokenizers`` receive: call it once per name."""

    def __call__(self, name: str, build: Callable[..., Any], options: type = NoOptions, summary: str = "") -> None:
        _check_name(self._kind, name)
        if not (dataclasses.is_dataclass(options) and isinstance(options, type)):
            raise WmbenchError(f"options of {self._kind} {name!r} must be a dataclass")
        bare = [f.name for f in dataclasses.fields(options) if f.default is f.default_factory is dataclasses.MISSING]
        if bare:
            raise WmbenchError(
                f"options of {self._kind} {name!r}: every field needs a default ({', '.join(bare)} has none)"
            )
        defaults = {f.name: getattr(options(), f.name) for f in dataclasses.fields(options)}
        build_dataclass(options, defaults, f"the default of {self._kind}")
        table = self._registry.entries[self._kind]
        self._registry.claim(self._kind, name, table.get(name))
        table[name] = Entry(self._kind, name, build, options, summary, self._plugin)


class RegisterEnvSuite(_Registrar):
    """What ``wmbench_register_env_suites`` receives: call it once per suite."""

    def __call__(
        self,
        name: str,
        games: Iterable[str],
        make_env: Callable[..., Any],
        num_actions: Callable[[str], int],
        reference_scores: Callable[[str], tuple[float, float] | None] | None = None,
        summary: str = "",
    ) -> None:
        games = tuple(games)
        _check_name("env suite", name)
        if not games:
            raise WmbenchError(f"env suite {name!r} must name at least one game")
        for game in games:
            _check_name("game", game)
        suites, taken = self._registry.suites, self._registry.games
        self._registry.claim("env suite", name, suites.get(name))
        for game in games:
            self._registry.claim("game", game, taken[game].suite if game in taken else None)
        suite = EnvSuite(name, games, make_env, num_actions, reference_scores, summary, self._plugin)
        suites[name] = suite
        taken.update({game: Game(game, suite) for game in games})


def _check_name(kind: str, name: Any) -> None:
    if not isinstance(name, str) or not NAME.match(name):
        raise WmbenchError(f"{kind} name {name!r} must be letters, digits, '.', '_' or '-' (it names files)")


class Registry:
    """Backbones, tokenizers and env suites by name, with the plugin that provided each."""

    KINDS = ("backbone", "tokenizer")

    def __init__(self, manager: pluggy.PluginManager, plugins: dict[str, PluginInfo] | None = None):
        self.manager = manager
        self.plugins = (
            plugins if plugins is not None else {name: PluginInfo(name) for name, _ in manager.list_name_plugin()}
        )
        self.problems: list[str] = [p.problem for p in self.plugins.values() if p.problem]
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in self.KINDS}
        self.suites: dict[str, EnvSuite] = {}
        self.games: dict[str, Game] = {}
        self.executors: dict[str, tuple[type[Executor], str, str]] = {}  # name: (Executor subclass, summary, plugin)
        hooks = manager.hook
        for hook, make in (
            (hooks.wmbench_register_backbones, functools.partial(Register, self, "backbone")),
            (hooks.wmbench_register_tokenizers, functools.partial(Register, self, "tokenizer")),
            (hooks.wmbench_register_env_suites, functools.partial(RegisterEnvSuite, self, "env suite")),
            (hooks.wmbench_register_executors, functools.partial(RegisterExecutor, self.executors)),
        ):
            for impl in hook.get_hookimpls():  # in loading order
                if self.plugins[impl.plugin_name].status != "loaded":
                    continue
                try:
                    impl.function(register=make(impl.plugin_name))
                except Exception as exc:  # noqa: BLE001 (whatever a plugin raises is its problem, recorded)
                    self.fail(impl.plugin_name, f"failed in {hook.name} ({type(exc).__name__}: {exc})")

    def claim(self, kind: str, name: str, holder: Entry | EnvSuite | None) -> None:
        """Refuse a name already registered (by ``holder``)."""
        if holder is not None:
            raise WmbenchError(f"registers {kind} {name!r}, which plugin {holder.plugin!r} registered first")

    def fail(self, name: str, problem: str) -> None:
        """Record a plugin's problem and drop everything it registered and its other hooks."""
        info = self.plugins.setdefault(name, PluginInfo(name))
        message = f"plugin {name!r} from package {info.distribution!r} {problem}; disable it with {DISABLE_ENV}={name}"
        info.status, info.problem = "failed", message
        self.problems.append(message)
        for table in self.entries.values():
            for key in [k for k, e in table.items() if e.plugin == name]:
                del table[key]
        for suite in [s for s in self.suites.values() if s.plugin == name]:
            del self.suites[suite.name]
            for game in suite.games:
                del self.games[game]
        for key in [k for k, (_, _, plugin) in self.executors.items() if plugin == name]:
            del self.executors[key]
        if self.manager.has_plugin(name):
            self.manager.unregister(name=name)

    def check(self) -> Registry:
        """The registry itself, or the first plugin problem as a WmbenchError."""
        if self.problems:
            raise WmbenchError(self.problems[0])
        return self

    def get(self, kind: str, name: str | None) -> Entry:
        """The entry of that kind and name, or a did-you-mean error."""
        table = self.entries[kind]
        if name is None:
            raise WmbenchError(f"no {kind} chosen; choose from: {', '.join(sorted(table))}")
        if name not in table:
            raise unknown(kind, name, table)
        return table[name]

    def provenance(self, kind: str, name: str) -> dict[str, str | None]:
        """Which plugin, package and package version provide a backbone or tokenizer (recorded in summary.json)."""
        entry = self.get(kind, name)
        info = self.plugins.get(entry.plugin, PluginInfo(entry.plugin))
        return {"name": entry.name, "plugin": entry.plugin, "package": info.distribution, "version": info.version}

    def names(self, kind: str) -> list[str]:
        return sorted(self.entries[kind])

    def game(self, name: str) -> Game:
        """A game of an installed env suite (exact name), or a did-you-mean error."""
        if name not in self.games:
            raise unknown("game", name, self.games)
        return self.games[name]

    def executor(self, name: str) -> type[Executor]:
        """The executor class registered under that name, or a did-you-mean error."""
        if name not in self.executors:
            raise unknown("executor", name, self.executors)
        return self.executors[name][0]

    def add_commands(self, cli: Any) -> None:
        """Let each plugin add its CLI commands; a plugin that fails there is recorded as failed."""
        for impl in self.manager.hook.wmbench_add_commands.get_hookimpls():
            try:
                impl.function(cli=cli)
            except Exception as exc:  # noqa: BLE001
                self.fail(impl.plugin_name, f"failed in wmbench_add_commands ({type(exc).__name__}: {exc})")

    def observers(self, loggers: Iterable[str], run: RunDir, warn: Callable[[str], None]) -> RunObservers:
        """The run-observer hooks of the plugins named in a run's ``loggers``; an unknown name is a did-you-mean error."""
        able = {i.plugin_name for hook in OBSERVER_HOOKS for i in getattr(self.manager.hook, hook).get_hookimpls()}
        for name in loggers:
            if name not in able:
                raise WmbenchError(
                    f"unknown logger {name!r}{did_you_mean(name, able)} in config key 'loggers'; "
                    f"choose from plugins with run-observer hooks: {', '.join(sorted(able))}"
                )
        return RunObservers(self, tuple(loggers), run, warn)


class RunObservers:
    """Calls the run-observer hooks of a run's chosen plugins, in the order the run names them.

    metrics.jsonl, checkpoints and summary.json are written before observers hear of them, so no observer can
    tear a run folder. A failure in ``wmbench_run_started`` raises a WmbenchError naming the plugin (no epoch has
    run); a later failure warns once, through ``warn``, and that plugin hears nothing more of the run.
    """

    def __init__(self, registry: Registry, names: tuple[str, ...], run: RunDir, warn: Callable[[str], None]):
        self.registry, self.names, self.run, self.warn = registry, names, run, warn
        self.silenced: set[str] = set()

    def _call(self, hook: str, **kwargs: Any) -> None:
        impls = {i.plugin_name: i for i in getattr(self.registry.manager.hook, hook).get_hookimpls()}
        for name in self.names:
            impl = impls.get(name)
            if impl is None or name in self.silenced:
                continue
            try:
                impl.function(**{k: kwargs[k] for k in impl.argnames})
            except Exception as exc:  # an observer never kills a run silently: raised at start, warned of later
                dist = self.registry.plugins.get(name, PluginInfo(name)).distribution
                problem = f"plugin {name!r} from package {dist!r} failed in {hook} ({type(exc).__name__}: {exc})"
                if hook == "wmbench_run_started":
                    raise WmbenchError(f"{problem}; no epoch ran: fix it or drop it from config key 'loggers'") from exc
                self.silenced.add(name)
                self.warn(f"warning: {problem}; it is off for the rest of this run (metrics.jsonl is complete)")

    def started(self, config: RunConfig) -> None:
        self._call("wmbench_run_started", run=self.run, config=config)

    def metrics_logged(self, record: dict[str, Any]) -> None:
        self._call("wmbench_metrics_logged", run=self.run, record=record)

    def checkpoint_saved(self, path: Path, epoch: int) -> None:
        self._call("wmbench_checkpoint_saved", run=self.run, path=path, epoch=epoch)

    def finished(self, summary: dict[str, Any] | None) -> None:
        self._call("wmbench_run_finished", run=self.run, summary=summary)


def _names(variable: str) -> set[str]:
    return {n.strip() for n in os.environ.get(variable, "").split(",") if n.strip()}


def plugin_manager() -> tuple[pluggy.PluginManager, dict[str, PluginInfo]]:
    """A plugin manager with every enabled entry point of the group loaded and checked, and what happened to each.

    Built-ins load first, then the others by name. Of two packages claiming one plugin name the first keeps it and
    the newcomer is refused; either can be left out by its package name in the variables."""
    manager = pluggy.PluginManager(GROUP)
    manager.add_hookspecs(hookspecs)
    disabled, only = _names(DISABLE_ENV), _names(ONLY_ENV)
    plugins: dict[str, PluginInfo] = {}
    named = [(ep, ep.dist.name if ep.dist else "?", ep.dist.version if ep.dist else None)
             for ep in metadata.entry_points(group=GROUP)]  # fmt: skip
    for ep, dist, version in sorted(
        named, key=lambda e: (e[1] != BUILT_IN, e[0].name, e[1])
    ):  # the same order everywhere
        if {ep.name, dist} & disabled or (only and not {ep.name, dist} & only):
            plugins.setdefault(ep.name, PluginInfo(ep.name, dist, version, status="disabled"))
            continue
        if ep.name in plugins:
            first = plugins[ep.name]
            if first.distribution != dist and first.status != "disabled":  # else one package seen twice on the path
                plugins[f"{ep.name} ({dist})"] = PluginInfo(
                    ep.name, dist, version, status="failed",
                    problem=(f"plugin name {ep.name!r} of package {dist!r} is taken by package {first.distribution!r}, "
                             f"which loaded first; this one is refused: uninstall it or disable it with {DISABLE_ENV}={dist}"),
                )  # fmt: skip
                continue
            if first.distribution == dist:
                continue
        info = plugins[ep.name] = PluginInfo(ep.name, dist, version)
        try:
            module = ep.load()
            manager.register(module, name=ep.name)
            manager.check_pending()
            info.hooks = tuple(sorted(h.name for h in manager.get_hookcallers(module) or []))
            info.warning = _idle(ep, info.hooks, module, dist)
        except Exception as exc:  # noqa: BLE001 (a broken plugin must name itself, not surface later)
            validation = isinstance(exc, pluggy.PluginValidationError)
            kind = "does not fit the wmbench hooks" if validation else "failed to load"
            info.status = "failed"
            info.problem = (f"plugin {ep.name!r} from package {dist!r} {kind} ({type(exc).__name__}: {exc}"
                            f"{_where(exc)}); disable it with {DISABLE_ENV}={ep.name}")  # fmt: skip
            info.traceback = "".join(traceback.format_exception(exc))
            if manager.has_plugin(ep.name):
                manager.unregister(name=ep.name)
    known = set(plugins) | {p.distribution for p in plugins.values()}
    for name in sorted(only - known):
        plugins[name] = PluginInfo(
            name,
            status="failed",
            problem=(f"{ONLY_ENV} names plugin {name!r}, which is not installed{did_you_mean(name, plugins)}"),
        )
    return manager, plugins


def _where(exc: BaseException) -> str:
    """``, at FILE:LINE`` of the plugin code an import failed in (the last frame outside importlib), or ''."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f", at {exc.filename}:{exc.lineno}"
    machinery = ("<frozen", os.path.dirname(importlib.__file__), __file__)
    own = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith(machinery)]
    return f", at {own[-1].filename}:{own[-1].lineno}" if own else ""


def _idle(ep: metadata.EntryPoint, hooks: tuple[str, ...], module: Any, dist: str) -> str | None:
    """The warning of a plugin that loaded but does nothing: ``wmbench_*`` functions not marked ``@hookimpl``, or no
    hook at all (an entry point naming something other than the module with the hooks, say)."""
    unmarked = sorted(
        n for n in dir(module) if n.startswith("wmbench_") and callable(getattr(module, n)) and n not in hooks
    )
    where = f"plugin {ep.name!r} from package {dist!r} (entry point {ep.name} = {ep.value})"
    if unmarked:
        return f"{where}: {', '.join(unmarked)} not marked @hookimpl (from wmbench.hookspecs import hookimpl), so never called"
    if not hooks:
        return f"{where} implements no wmbench hook: it does nothing (does the entry point name the module with the hooks?)"
    return None


@functools.lru_cache(maxsize=1)
def load() -> Registry:
    """The process-wide registry as loaded, problems recorded but not raised (plugins load on first use)."""
    return Registry(*plugin_manager())


def registry() -> Registry:
    """The process-wide registry; a plugin problem is a WmbenchError naming the plugin."""
    return load().check()


def import_module(name: str) -> Any:
    """Import a heavy dependency with a clear error naming the extra that provides it."""
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise WmbenchError(f"{name} is not installed: pip install 'wmbench[all]' ({exc})") from exc
