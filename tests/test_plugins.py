"""The plugin host: loading controls, broken plugins that name themselves without breaking --help or
``wmbench plugins``, plugin commands, and the run-observer hooks with their failure rules."""

from __future__ import annotations

import json
import re
import sys

import pytest
from click.testing import CliRunner
from plugin_site import TINY, add_package, wmbench

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.errors import WmbenchError
from wmbench.hookspecs import hookimpl
from wmbench.plugins import PluginInfo, Registry, plugin_manager
from wmbench.rundir import RunDir

BROKEN = "import wmbench_no_such_dependency\n"
HALF = """
from wmbench.hookspecs import hookimpl

@hookimpl
def wmbench_register_backbones(register):
    register("half-a", lambda options, shape: None, summary="registered before the failure")
    raise RuntimeError("half way")
"""
MISSPELT = """
from wmbench.hookspecs import hookimpl

@hookimpl
def wmbench_register_backbone(register):
    pass
"""
COMMAND = '''
import click
from wmbench.hookspecs import hookimpl

@click.command("hello")
def hello():
    """Say hello from a plugin."""
    click.echo("hello from a plugin")

@hookimpl
def wmbench_add_commands(cli):
    cli.add_command(hello)
'''


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path to install test plugins into; their modules are forgotten afterwards."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("WMBENCH_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("WMBENCH_PLUGINS", raising=False)
    yield folder
    for name in [m for m in sys.modules if m.startswith("wmbench_t_")]:
        del sys.modules[name]


def test_only_named_plugins_load(monkeypatch):
    monkeypatch.setenv("WMBENCH_PLUGINS", "scratch, vqvae,atari")
    reg = Registry(*plugin_manager()).check()
    assert {n for n, p in reg.plugins.items() if p.status == "loaded"} == {"scratch", "vqvae", "atari"}
    assert reg.plugins["llm"].status == "disabled" and reg.names("backbone") == ["scratch"]
    assert "Pong" in reg.games

    monkeypatch.setenv("WMBENCH_PLUGINS", "scratch,atary")
    with pytest.raises(
        WmbenchError, match="WMBENCH_PLUGINS names plugin 'atary', which is not installed .did you mean 'atari'"
    ):
        Registry(*plugin_manager()).check()


def test_disabled_plugins_do_not_load(monkeypatch):
    monkeypatch.setenv("WMBENCH_DISABLE_PLUGINS", "llm,tensorboard")
    reg = Registry(*plugin_manager()).check()
    assert reg.plugins["llm"].status == reg.plugins["tensorboard"].status == "disabled"
    assert not reg.manager.has_plugin("llm") and "llm-lora" not in reg.names("backbone")
    assert reg.plugins["scratch"].status == "loaded"


@pytest.mark.parametrize("source, problem", [
    (BROKEN, "failed to load (ModuleNotFoundError: No module named 'wmbench_no_such_dependency', at {site}/wmbench_t_broken.py:1)"),
    (HALF, "failed in wmbench_register_backbones (RuntimeError: half way)"),
    (MISSPELT, "does not fit the wmbench hooks"),
])  # fmt: skip
def test_a_broken_plugin_is_recorded_and_named(site, source, problem):
    add_package(site, "wmbench-t-broken", "0.3", {"broken": "wmbench_t_broken"}, {"wmbench_t_broken": source})
    reg = Registry(*plugin_manager())
    (line,) = reg.problems
    assert line.startswith(f"plugin 'broken' from package 'wmbench-t-broken' {problem.format(site=site)}"), line
    assert line.endswith("; disable it with WMBENCH_DISABLE_PLUGINS=broken") and "\n" not in line
    assert reg.plugins["broken"].status == "failed" and reg.plugins["broken"].problem == line
    assert "half-a" not in reg.names("backbone") and not reg.manager.has_plugin("broken")  # nothing of it is kept
    assert "scratch" in reg.names("backbone")  # the others load
    with pytest.raises(WmbenchError) as error:
        reg.check()
    assert str(error.value) == line


def test_a_taken_backbone_name_names_both_plugins(site):
    taken = 'from wmbench.hookspecs import hookimpl\n@hookimpl\ndef wmbench_register_backbones(register):\n    register("scratch", print)\n'
    add_package(site, "wmbench-t-taken", "1.0", {"taken": "wmbench_t_taken"}, {"wmbench_t_taken": taken})
    reg = Registry(*plugin_manager())
    assert reg.problems == [
        "plugin 'taken' from package 'wmbench-t-taken' failed in wmbench_register_backbones (WmbenchError: registers "
        "backbone 'scratch', which plugin 'scratch' registered first); disable it with WMBENCH_DISABLE_PLUGINS=taken"
    ]
    assert reg.get("backbone", "scratch").plugin == "scratch"


def test_a_plugin_failing_to_add_its_command_is_recorded(site):
    import click

    source = 'from wmbench.hookspecs import hookimpl\n@hookimpl\ndef wmbench_add_commands(cli):\n    raise KeyError("oops")\n'
    add_package(site, "wmbench-t-cmd", "1.0", {"cmd": "wmbench_t_cmd"}, {"wmbench_t_cmd": source})
    reg = Registry(*plugin_manager()).check()
    group = click.Group()
    reg.add_commands(group)
    assert reg.problems == [
        "plugin 'cmd' from package 'wmbench-t-cmd' failed in wmbench_add_commands (KeyError: 'oops'); "
        "disable it with WMBENCH_DISABLE_PLUGINS=cmd"
    ]
    assert "models" in group.commands  # the other plugins' commands are there


@pytest.mark.slow
def test_help_and_plugins_work_beside_a_broken_plugin(tmp_path):
    site = add_package(
        tmp_path / "site", "wmbench-t-broken", "0.3", {"broken": "wmbench_t_broken"}, {"wmbench_t_broken": BROKEN}
    )
    add_package(site, "wmbench-t-hello", "2.0", {"hello": "wmbench_t_hello"}, {"wmbench_t_hello": COMMAND})

    done = wmbench("--help", site=site)
    assert done.returncode == 0 and re.search(r"^  hello +Say hello from a plugin", done.stdout, re.M), done.stdout
    (warning,) = done.stderr.splitlines()
    assert warning.startswith("wmbench: warning: plugin 'broken' from package 'wmbench-t-broken' failed to load")

    done = wmbench("plugins", "--json", site=site)
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["broken"]["status"] == "failed" and "ModuleNotFoundError" in rows["broken"]["problem"]
    assert rows["hello"] == {
        "name": "hello",
        "distribution": "wmbench-t-hello",
        "version": "2.0",
        "status": "loaded",
        "hooks": ["wmbench_add_commands"],
        "problem": None,
        "warning": None,
        "traceback": None,
    }

    done = wmbench("describe", site=site)  # a command that uses the plugins fails with the one line
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.splitlines() == [f"wmbench: error: {rows['broken']['problem']}"]

    done = wmbench("hello", site=site, WMBENCH_DISABLE_PLUGINS="broken")
    assert (done.returncode, done.stdout, done.stderr) == (0, "hello from a plugin\n", "")


def test_plugins_lists_every_hook_of_the_built_ins():
    done = CliRunner().invoke(cli, ["plugins", "--json"])
    assert done.exit_code == 0, done.output
    rows = {r["name"]: r for r in json.loads(done.output)}
    assert rows["atari"]["hooks"] == ["wmbench_register_env_suites"]
    assert (
        rows["tensorboard"]["hooks"]
        == rows["wandb"]["hooks"]
        == ["wmbench_metrics_logged", "wmbench_run_finished", "wmbench_run_started"]
    )
    assert all(r["distribution"] == "wmbench" and r["status"] == "loaded" for r in rows.values())
    done = CliRunner().invoke(cli, ["plugins"])
    assert re.search(r"^atari +wmbench \S+ +hooks: wmbench_register_env_suites$", done.output, re.M), done.output


# Run observers -----------------------------------------------------------------------------------------------


class Recorder:
    """An observer plugin that records what it hears, and fails in the hook named ``fail_in``."""

    def __init__(self, fail_in: str | None = None):
        self.calls: list[tuple] = []
        self.fail_in = fail_in

    def _hear(self, hook: str, *args):
        self.calls.append((hook, *args))
        if hook == self.fail_in:
            raise OSError("disk full")

    @hookimpl
    def wmbench_run_started(self, run, config):
        self._hear("started", run.path, config.game)

    @hookimpl
    def wmbench_metrics_logged(self, record):
        self._hear("metrics", record)

    @hookimpl
    def wmbench_checkpoint_saved(self, path, epoch):
        self._hear("checkpoint", path.name, epoch)

    @hookimpl
    def wmbench_run_finished(self, summary):
        self._hear("finished", summary)


def _with(*observers: Recorder) -> Registry:
    manager, plugins = plugin_manager()
    for i, observer in enumerate(observers):
        manager.register(observer, name=f"recorder{i}")
        plugins[f"recorder{i}"] = PluginInfo(f"recorder{i}", "wmbench-tests", "0")
    return Registry(manager, plugins).check()


def _run(reg: Registry, path, loggers: list[str], warnings: list[str]):
    from wmbench.engine.trainer import Trainer

    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [*TINY, f"loggers={json.dumps(loggers)}"], reg)
    run = RunDir(path)
    trainer = Trainer(config, run, reg, log=lambda line: warnings.append(line) if "warning" in line else None)
    run.create(cfg.to_dict(config))
    return trainer, trainer.fit()


@pytest.mark.slow
def test_observers_hear_the_run_and_a_failing_one_is_warned_of_once(tmp_path):
    good, failing, unchosen = Recorder(), Recorder(fail_in="metrics"), Recorder()
    reg = _with(good, failing, unchosen)
    warnings: list[str] = []
    trainer, summary = _run(reg, tmp_path / "run", ["recorder0", "recorder1"], warnings)

    records = [{k: v for k, v in r.items() if k != "time"} for r in trainer.run.read_metrics()]
    assert good.calls == [
        ("started", trainer.run.path, "Pong"),
        ("metrics", records[0]), ("checkpoint", "last.pt", 1),
        ("metrics", records[1]), ("checkpoint", "last.pt", 2),
        ("finished", summary),
    ]  # fmt: skip
    assert summary == {k: v for k, v in json.loads(trainer.run.summary.read_text()).items() if k != "schema_version"}
    assert [c[0] for c in failing.calls] == ["started", "metrics"]  # nothing after its failure
    assert unchosen.calls == []  # observers hear only the runs that name them
    (warning,) = warnings
    assert warning.startswith(
        "warning: plugin 'recorder1' from package 'wmbench-tests' failed in wmbench_metrics_logged (OSError: disk full)"
    )
    assert len(records) == 2 and trainer.run.summary.exists()  # the run folder is whole


def test_an_observer_failing_at_start_stops_the_run_before_any_epoch(tmp_path):
    reg = _with(Recorder(fail_in="started"))
    with pytest.raises(
        WmbenchError,
        match="plugin 'recorder0' from package 'wmbench-tests' failed in wmbench_run_started .OSError: disk full.; no epoch ran",
    ):
        _run(reg, tmp_path / "run", ["recorder0"], [])
    assert (
        not (tmp_path / "run" / "metrics.jsonl").exists()
        and not (tmp_path / "run" / "checkpoints" / "last.pt").exists()
    )


def test_an_unknown_logger_is_refused_before_anything_is_written(tmp_path):
    from wmbench.plugins import registry

    with pytest.raises(
        WmbenchError, match="unknown logger 'tensorbord' .did you mean 'tensorboard'.* choose from .*tensorboard, wandb"
    ):
        _run(registry(), tmp_path / "run", ["tensorbord"], [])
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_observers_hear_an_eval_as_a_run_of_its_output_folder(tmp_path):
    from wmbench import evaluation

    reg = _with(Recorder())
    trainer, _ = _run(reg, tmp_path / "run", ["recorder0"], [])
    heard = Recorder()
    reg = _with(heard)
    loaded = evaluation.from_run(trainer.run.path, reg)
    path, record = evaluation.run_eval(loaded, reg, tmp_path / "evals", 1, 1, "cpu", 0, log=lambda line: None)
    assert [c[0] for c in heard.calls] == ["started", "metrics", "finished"]
    assert heard.calls[0][1] == tmp_path / "evals"
    metrics = heard.calls[1][1]
    assert (metrics["epoch"], metrics["env_steps"], metrics["eval/return"]) == (
        2,
        trainer.env_steps,
        record["return_mean"],
    )
    assert heard.calls[2][1] == {**json.loads(path.read_text()), "epochs": 2}


# Names and clashes: built-ins first, the newcomer refused naming its package, and the variables resolving it. ------

TAKES_SCRATCH = 'from wmbench.hookspecs import hookimpl\n@hookimpl\ndef wmbench_register_backbones(register):\n    register("scratch", print)\n'
FORGOTTEN = "def wmbench_register_backbones(register):\n    register('forgotten', print)\n"
ATTR = "def build(options, shape):\n    return None\n"


def test_a_newcomer_taking_a_built_in_id_is_refused_whatever_its_name(site):
    add_package(site, "wmbench-t-aaa", "1.0", {"aaa": "wmbench_t_aaa"}, {"wmbench_t_aaa": TAKES_SCRATCH})
    reg = Registry(*plugin_manager())
    assert reg.problems == [
        "plugin 'aaa' from package 'wmbench-t-aaa' failed in wmbench_register_backbones (WmbenchError: registers "
        "backbone 'scratch', which plugin 'scratch' registered first); disable it with WMBENCH_DISABLE_PLUGINS=aaa"
    ]
    assert reg.get("backbone", "scratch").plugin == "scratch" and reg.plugins["scratch"].status == "loaded"


def test_a_newcomer_taking_a_built_in_plugin_name_is_refused_and_disabled_by_its_package(site, monkeypatch):
    add_package(site, "wmbench-t-evil", "1.0", {"scratch": "wmbench_t_evil"}, {"wmbench_t_evil": TAKES_SCRATCH})
    reg = Registry(*plugin_manager())
    assert reg.problems == [
        "plugin name 'scratch' of package 'wmbench-t-evil' is taken by package 'wmbench', which loaded first; this "
        "one is refused: uninstall it or disable it with WMBENCH_DISABLE_PLUGINS=wmbench-t-evil"
    ]
    assert reg.plugins["scratch"].distribution == "wmbench" and reg.get("backbone", "scratch").plugin == "scratch"
    monkeypatch.setenv("WMBENCH_DISABLE_PLUGINS", "wmbench-t-evil")
    reg = Registry(*plugin_manager()).check()
    assert reg.plugins["scratch"].distribution == "wmbench" and reg.plugins["scratch"].status == "loaded"


def test_two_packages_claiming_one_plugin_name_and_the_variables_that_resolve_it(site, monkeypatch):
    for dist in ("wmbench-t-one", "wmbench-t-two"):
        module = dist.replace("-", "_")
        add_package(site, dist, "1.0", {"twin": module}, {module: "x = 1\n"})
    (problem,) = Registry(*plugin_manager()).problems
    assert problem.startswith("plugin name 'twin' of package 'wmbench-t-two' is taken by package 'wmbench-t-one'")
    monkeypatch.setenv("WMBENCH_DISABLE_PLUGINS", "twin")  # the name the message of old suggested: both off
    reg = Registry(*plugin_manager()).check()
    assert reg.plugins["twin"].status == "disabled"
    monkeypatch.setenv("WMBENCH_DISABLE_PLUGINS", "wmbench-t-two")  # the newcomer's package: the first one loads
    reg = Registry(*plugin_manager()).check()
    assert (reg.plugins["twin"].status, reg.plugins["twin"].distribution) == ("loaded", "wmbench-t-one")


def test_a_plugin_that_does_nothing_is_loaded_with_a_warning(site):
    add_package(site, "wmbench-t-idle", "1.0", {"forgot": "wmbench_t_forgot", "attr": "wmbench_t_attr:build"},
                {"wmbench_t_forgot": FORGOTTEN, "wmbench_t_attr": ATTR})  # fmt: skip
    reg = Registry(*plugin_manager()).check()  # warnings are not problems: every command still runs
    forgot, attr = reg.plugins["forgot"], reg.plugins["attr"]
    assert forgot.status == attr.status == "loaded" and forgot.hooks == attr.hooks == ()
    assert forgot.warning == (
        "plugin 'forgot' from package 'wmbench-t-idle' (entry point forgot = wmbench_t_forgot): wmbench_register_backbones "
        "not marked @hookimpl (from wmbench.hookspecs import hookimpl), so never called"
    )
    assert attr.warning.endswith(
        "implements no wmbench hook: it does nothing (does the entry point name the module with the hooks?)"
    )
    assert "forgotten" not in reg.names("backbone")
    assert all(p.warning is None for p in reg.plugins.values() if p.distribution == "wmbench")


@pytest.mark.slow
def test_plugins_shows_warnings_and_debug_the_traceback_of_a_failed_import(tmp_path):
    site = add_package(tmp_path / "site", "wmbench-t-broken", "0.3", {"broken": "wmbench_t_broken"},
                       {"wmbench_t_broken": "x = 1\n" + BROKEN})  # fmt: skip
    add_package(site, "wmbench-t-idle", "1.0", {"forgot": "wmbench_t_forgot"}, {"wmbench_t_forgot": FORGOTTEN})
    done = wmbench("plugins", site=site)
    assert re.search(r"^forgot +wmbench-t-idle 1.0  hooks: none  warning: plugin 'forgot'", done.stdout, re.M), (
        done.stdout
    )
    assert f"at {site / 'wmbench_t_broken.py'}:2)" in done.stdout and "Traceback" not in done.stderr
    done = wmbench("--debug", "plugins", site=site)
    assert "Traceback (most recent call last)" in done.stderr
    assert f'File "{site / "wmbench_t_broken.py"}", line 2' in done.stderr
