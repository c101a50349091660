"""Test helpers: plugin packages installed into a folder as ``importlib.metadata`` sees them (a dist-info folder
with ``entry_points.txt``), without pip; put the folder on ``sys.path`` or PYTHONPATH to install them. And the
files the plugin guide shows, and the CLI run in a fresh interpreter."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "plugins.md"
FILE_BLOCK = re.compile(r'^```\w+ title="(?P<path>[^"]+)"\n(?P<body>.*?)^```$', re.M | re.S)


def guide_files() -> dict[str, str]:
    """The files the plugin guide shows in full: fenced blocks with a ``title="path"`` info string."""
    return {m["path"]: m["body"] for m in FILE_BLOCK.finditer(GUIDE.read_text())}


TINY = [
    "training.epochs=2", "training.collect.steps_per_epoch=30",
    "training.tokenizer.start_after_epochs=1", "training.tokenizer.steps_per_epoch=1", "training.tokenizer.batch_size=4",
    "training.world_model.start_after_epochs=1", "training.world_model.steps_per_epoch=1", "training.world_model.batch_size=2",
    "training.actor_critic.start_after_epochs=2", "training.actor_critic.steps_per_epoch=1", "training.actor_critic.batch_size=2",
    "eval.final_episodes=1", "eval.num_envs=1", "env.max_frames_test=200", "training.media_every=0",
]  # fmt: skip
"""Overrides of the smoke preset for runs of a few seconds (two epochs, one step of each kind)."""

CATCH = guide_files()["wmbench_catch.py"]
"""The guide's env-suite plugin module, as written there."""


def add_package(site: Path, dist: str, version: str, entry_points: dict[str, str], modules: dict[str, str]) -> Path:
    """Write modules (``{"pkg_mod": source}``) and a dist-info naming the entry points of group ``wmbench``."""
    site.mkdir(parents=True, exist_ok=True)
    for module, source in modules.items():
        (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[wmbench]\n{lines}")
    return site


def wmbench(*args: str, site: Path, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """Run the wmbench CLI in a fresh interpreter that sees the packages in ``site``."""
    full_env = {k: v for k, v in os.environ.items() if k not in ("WMBENCH_DISABLE_PLUGINS", "WMBENCH_PLUGINS")}
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    full_env.update(OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(paths), **env)
    code = "import sys; from wmbench.cli import main; sys.argv[0] = 'wmbench'; main()"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=site.parent,
    )
