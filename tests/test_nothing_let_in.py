"""Nothing let in: every torch file loads with ``weights_only=True`` (checked over the whole tree, and by a pickle
payload in a replay file and a dataset), no command goes through a shell, remote code never runs unless asked for (only tests ask),
and damaged run folders (a corrupt config.json, a truncated replay file, a torn metrics line, a summary of another
schema) are one line naming the file, ``compare`` going on with the other folders."""

from __future__ import annotations

import ast
import json
import os
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from plugin_site import TINY

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.engine.trainer import Trainer
from wmbench.errors import WmbenchError
from wmbench.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".venv", ".ci-venv", "build", ".git", ".ci-cache", ".hypothesis"}


def _sources() -> list[Path]:
    return [p for p in ROOT.rglob("*.py") if not SKIP & set(p.relative_to(ROOT).parts)]


def _calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = ast.unparse(func)
            keywords = {k.arg: k.value for k in node.keywords}
            yield name, keywords, f"{path.relative_to(ROOT)}:{node.lineno}"


def _is(value, constant) -> bool:
    return isinstance(value, ast.Constant) and value.value is constant


def test_no_load_of_pickles_and_no_shell_anywhere_in_the_tree():
    problems = []
    sources = _sources()
    assert len(sources) > 100  # the tree was found
    for path in sources:
        for name, keywords, where in _calls(path):
            if name == "torch.load" and not _is(keywords.get("weights_only"), True):
                problems.append(f"{where}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and "allow_pickle" in keywords:
                problems.append(f"{where}: np.load with allow_pickle")
            if name in ("pickle.load", "pickle.loads", "marshal.loads", "os.system", "os.popen", "eval", "exec"):
                problems.append(f"{where}: {name}")
            if name.startswith("subprocess.") and "shell" in keywords and not _is(keywords["shell"], False):
                problems.append(f"{where}: {name} through a shell")
            user = path.is_relative_to(ROOT / "tests")  # a test stands for a user who asks for remote code
            if not user and "trust_remote_code" in keywords and _is(keywords["trust_remote_code"], True):
                problems.append(f"{where}: trust_remote_code=True")
    assert problems == []


def test_remote_code_is_off_unless_the_user_sets_it(registry):
    for name in ("llm-frozen", "llm-lora", "llm-qlora", "llm-full"):
        config = cfg.resolve("smoke", "Pong", 0, "vqvae", name, [], registry)
        assert config.backbone.options.trust_remote_code is False
    assert cfg.resolve("smoke", "Pong", 0, "vqvae", "llm-lora", ["backbone.trust_remote_code=true"], registry)


class Payload:
    """Unpickling this would run a command: weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


@pytest.fixture(scope="module")
def stopped_run(registry, tmp_path_factory):
    """A Catcher run stopped after its first epoch (a checkpoint, replay files), as a template to damage."""
    folder = tmp_path_factory.mktemp("stopped") / "run"
    config = cfg.resolve("smoke", "Catcher", 0, "vqvae", "scratch", TINY, registry)
    run = RunDir(folder)
    trainer = Trainer(config, run, registry, log=lambda *_: None)
    run.create(cfg.to_dict(config))
    trainer.stop_requested = True
    assert trainer.fit() is None
    return folder


def _copy(folder: Path, to: Path) -> Path:
    import shutil

    shutil.copytree(folder, to)
    return to


def _one_line(args: list[str], cwd: Path) -> str:
    old = Path.cwd()
    os.chdir(cwd)
    try:
        result = CliRunner().invoke(cli, args)
    finally:
        os.chdir(old)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.splitlines()
    assert not (cwd / "PWNED").exists()
    return line


def _listing(folder: Path) -> list[tuple[Path, int, int]]:
    return sorted((p.relative_to(folder), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in folder.rglob("*") if p.is_file() and p.name != ".lock")  # fmt: skip


def test_a_replay_file_or_config_damaged_is_one_line_naming_it(stopped_run, tmp_path):
    cases = {
        "pickled replay": ("replay/000000.pt", lambda p: torch.save({"frames": Payload()}, p),
                           "refusing replay file {p}: it holds pickled Python objects"),
        "truncated replay": ("replay/000000.pt", lambda p: p.write_bytes(p.read_bytes()[:300]),
                             "cannot load replay file {p}: truncated"),
        "foreign replay": ("replay/000000.pt", lambda p: torch.save({"weights": torch.zeros(2)}, p),
                           "replay file {p} is not an episode"),
        "corrupt config": ("config.json", lambda p: p.write_bytes(b"\\x00\\xff{"), "{p} is not valid JSON"),
        "config of nothing": ("config.json", lambda p: p.write_text("[1, 2]"), "{p} is not a JSON object"),
        "config missing a part": ("config.json", lambda p: p.write_text(json.dumps({**json.loads(p.read_text()), "backbone": 3})),
                                  "{p}: 'backbone' must be a table with a name and options"),
    }  # fmt: skip
    for name, (file, damage, message) in cases.items():
        folder = _copy(stopped_run, tmp_path / name.replace(" ", "-"))
        damage(folder / file)
        before = _listing(folder)
        line = _one_line(["run", "--resume", str(folder)], tmp_path)
        assert line.startswith("wmbench: error: ") and message.format(p=folder / file) in line, (name, line)
        assert _listing(folder) == before, name  # nothing written but the folder's lock file


def test_a_dataset_holding_a_pickle_is_refused(registry, tmp_path, monkeypatch):
    from wmbench.tracks import dataset

    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path))
    env = cfg.EnvConfig(size=32)
    path = dataset.dataset_path("Catcher", env, 100, 0)
    path.parent.mkdir(parents=True)
    torch.save({"format": dataset.FORMAT, "episodes": [Payload()]}, path)
    with pytest.raises(WmbenchError, match=f"refusing dataset {path}: it holds pickled Python objects"):
        dataset.load_or_collect("Catcher", env, 100, 0, log=lambda line: None)
    assert not (Path.cwd() / "PWNED").exists()


def test_compare_names_each_damaged_folder_and_goes_on(tmp_path):
    from test_report import write_run

    good = [write_run(tmp_path / "runs" / f"good{seed}", "Pong", "scratch", seed, 0) for seed in (0, 1)]
    torn = write_run(tmp_path / "runs" / "torn", "Pong", "scratch", 2, 0)
    lines = (torn / "metrics.jsonl").read_text().splitlines()
    (torn / "metrics.jsonl").write_text("\n".join([lines[0], lines[1][:20], *lines[2:]]) + "\n")
    config = write_run(tmp_path / "runs" / "config", "Pong", "scratch", 3, 0)
    (config / "config.json").write_text("{not json")
    older = write_run(tmp_path / "runs" / "older", "Pong", "scratch", 4, 0)
    (older / "summary.json").write_text(
        json.dumps({**json.loads((older / "summary.json").read_text()), "schema_version": 0})
    )
    result = CliRunner().invoke(
        cli, ["compare", str(tmp_path / "runs"), "--out", str(tmp_path / "out"), "--reps", "100"]
    )
    assert result.exit_code == 0, result.output
    warnings = result.stderr.splitlines()
    assert len(warnings) == 3 and all(w.startswith("wmbench: warning: skipping ") for w in warnings), warnings
    assert any(f"{torn / 'metrics.jsonl'} line 2 is torn" in w for w in warnings)
    assert any(f"{config / 'config.json'} is not valid JSON" in w for w in warnings)
    assert any(
        f"run folder {older}: summary.json has schema_version 0; this wmbench reads 1 (an older schema" in w
        for w in warnings
    )
    assert result.stdout.startswith("2 run(s) compared")
    report = (tmp_path / "out" / "report.md").read_text()
    assert (
        "3 run folder(s) could not be read whole" in report
        and str(good[0]) in (tmp_path / "out" / "runs.csv").read_text()
    )
