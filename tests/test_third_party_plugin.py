"""A plugin package outside wmbench/ works as a third party's would, and the plugin guide's code works as written.

The slow tests install packages with pip into a temporary ``--target`` folder and run ``wmbench`` in
subprocesses with that folder on PYTHONPATH, so the test environment itself is never changed. Entry points
in such a folder are found by ``importlib.metadata`` like those of any installed distribution.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest
from plugin_site import guide_files, wmbench

ROOT = Path(__file__).resolve().parents[1]
GRU = ROOT / "plugins" / "wmbench-gru"


def _install(source: Path, target: Path) -> Path:
    """pip-install the package at ``source`` into the folder ``target`` (from a copy: builds leave files behind)."""
    copy = target.parent / f"{target.name}-src"
    shutil.copytree(source, copy, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"))
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--no-input",
            "--disable-pip-version-check",
            "--quiet",
            "--target",
            str(target),
            str(copy),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return target


@pytest.fixture(scope="module")
def gru_site(tmp_path_factory) -> Path:
    return _install(GRU, tmp_path_factory.mktemp("gru") / "site")


def test_example_package_is_not_part_of_the_wmbench_distribution():
    import setuptools

    find = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    found = setuptools.find_packages(where=str(ROOT / "plugins"), include=find["include"])
    assert found and not any(p.startswith("wmbench_gru") for p in found), found


@pytest.mark.slow
def test_installed_plugin_is_listed(gru_site):
    done = wmbench("plugins", "--json", site=gru_site)
    assert done.returncode == 0, done.stderr
    rows = {r["name"]: r for r in json.loads(done.stdout)}
    assert rows["gru"]["distribution"] == "wmbench-gru"
    assert rows["gru"]["version"] == "0.1.0"
    assert rows["gru"]["hooks"] == ["wmbench_register_backbones"]
    assert rows["scratch"]["distribution"] == "wmbench"  # the built-ins still load beside it

    done = wmbench("list", "backbones", "--json", site=gru_site)
    assert done.returncode == 0, done.stderr
    backbones = {r["name"]: r for r in json.loads(done.stdout)}
    assert backbones["gru"]["plugin"] == "gru"
    assert "GRU" in backbones["gru"]["description"]


@pytest.mark.slow
def test_package_own_tests_pass_when_installed(gru_site, tmp_path):
    """The package's tests (the conformance kit) pass against the installed copy, as its author runs them."""
    tests = shutil.copytree(GRU / "tests", tmp_path / "tests")  # away from the source, so the installed copy is used
    (tests / "test_where.py").write_text(
        f"import wmbench_gru\ndef test_installed():\n    assert wmbench_gru.__file__.startswith({str(gru_site)!r})\n"
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(gru_site)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "4 passed" in done.stdout, done.stdout[-2000:]


@pytest.mark.slow
def test_smoke_run_end_to_end(gru_site, tmp_path):
    """The smoke preset, cut to three short epochs, with the actor-critic imagining through the GRU's cache."""
    out = tmp_path / "run"
    done = wmbench(
        "run",
        "--backbone",
        "gru",
        "--game",
        "Pong",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--set",
        "training.epochs=3",
        "--set",
        "training.collect.steps_per_epoch=50",
        "--set",
        "eval.final_episodes=1",
        "--set",
        "eval.num_envs=1",
        "--set",
        "training.actor_critic.start_after_epochs=2",
        "--set",
        "backbone.hidden_layers=1",
        site=gru_site,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["backbone"] == "gru" and summary["epochs"] == 3
    assert summary["backbone_info"] == {"layers": 1, "width": 64}  # the plugin's option reached build()
    assert summary["plugins"]["backbone"] == {
        "name": "gru",
        "plugin": "gru",
        "package": "wmbench-gru",
        "version": "0.1.0",
    }
    assert summary["plugins"]["tokenizer"]["package"] == "wmbench"
    config = json.loads((out / "config.json").read_text())
    assert config["backbone"] == {"name": "gru", "options": {"hidden_layers": 1}}
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("imagination/return" in m for m in metrics), "the actor-critic never imagined"


@pytest.mark.slow
def test_broken_plugin_names_itself_and_can_be_disabled(tmp_path):
    source = tmp_path / "wmbench-brokenexample"
    (source / "wmbench_brokenexample").mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        textwrap.dedent("""\
        [build-system]
        requires = ["setuptools>=64"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "wmbench-brokenexample"
        version = "0.0.1"

        [project.entry-points.wmbench]
        brokenexample = "wmbench_brokenexample"

        [tool.setuptools]
        packages = ["wmbench_brokenexample"]
        """)
    )
    (source / "wmbench_brokenexample" / "__init__.py").write_text("import wmbench_no_such_dependency\n")
    site = _install(source, tmp_path / "site")

    done = wmbench("list", "backbones", site=site)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "'brokenexample'" in lines[0] and "'wmbench-brokenexample'" in lines[0], lines[0]
    assert "WMBENCH_DISABLE_PLUGINS=brokenexample" in lines[0] and "ModuleNotFoundError" in lines[0], lines[0]
    assert "Traceback" not in done.stderr and done.stdout == ""

    for disabled in ("brokenexample", "someother, brokenexample"):
        done = wmbench("list", "backbones", site=site, WMBENCH_DISABLE_PLUGINS=disabled)
        assert done.returncode == 0, done.stderr
        assert re.search(r"^scratch\b", done.stdout, re.M), done.stdout


# The guide's complete plugin.


def test_guide_shows_the_example_package_file_for_file():
    files = guide_files()
    package = {"pyproject.toml", "wmbench_gru/__init__.py", "wmbench_gru/backbone.py", "tests/test_gru.py"}
    assert set(files) == package | {"wmbench_catch.py"}  # and the env-suite example, which tests/test_envs.py runs
    for path in package:
        body = files[path]
        assert body == (GRU / path).read_text(), f"docs/plugins.md's {path} differs from plugins/wmbench-gru/{path}"


def test_guide_plugin_works_as_written(tmp_path, monkeypatch):
    """Write the guide's files out, import the plugin from there, register it, and run the conformance kit."""
    import pluggy

    from wmbench import hookspecs
    from wmbench.plugins import GROUP, Registry
    from wmbench.testing import check_backbone, tiny_shape

    files = {p: b for p, b in guide_files().items() if p != "wmbench_catch.py"}
    for path, body in files.items():
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text(body)
    entry_points = tomllib.loads(files["pyproject.toml"])["project"]["entry-points"]["wmbench"]
    ((plugin_name, module_name),) = entry_points.items()

    monkeypatch.syspath_prepend(str(tmp_path))
    for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
        monkeypatch.delitem(sys.modules, name)
    module = importlib.import_module(module_name)
    assert Path(module.__file__).resolve().is_relative_to(tmp_path.resolve())
    try:
        # Load it as the plugin host loads an entry point, but alone.
        manager = pluggy.PluginManager(GROUP)
        manager.add_hookspecs(hookspecs)
        manager.register(module, name=plugin_name)
        manager.check_pending()
        (entry,) = Registry(manager).entries["backbone"].values()
        assert entry.plugin == plugin_name

        def make():
            import torch

            torch.manual_seed(0)
            return entry.build(entry.options(), tiny_shape())

        check_backbone(make, trainable=True)
    finally:
        for name in [m for m in sys.modules if m == module_name or m.startswith(module_name + ".")]:
            del sys.modules[name]
