"""The world-model track: the cached random-policy dataset, its split and prefixes, a tiny run end to end (held-out
figures per budget, summary, resume after an interruption), and bad settings refused before anything is written."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.engine.replay import Episode
from wmbench.errors import WmbenchError
from wmbench.rundir import RunDir
from wmbench.tracks import dataset
from wmbench.tracks.world_model import OBS_LOSS, WorldModelTrack, frames_to_target

TINY = [
    "env.max_frames_train=400", "training.collect.steps_per_epoch=40",
    "training.tokenizer.start_after_epochs=0", "training.tokenizer.steps_per_epoch=2", "training.tokenizer.batch_size=8",
    "training.world_model.start_after_epochs=0", "training.world_model.steps_per_epoch=2", "training.world_model.batch_size=4",
    "world_model_track.dataset_steps=300", "world_model_track.heldout_fraction=0.25", "world_model_track.budgets=[40,80,120]",
    "world_model_track.eval_segments=3", "world_model_track.rollout_starts=3", "world_model_track.rollout_steps=[1,2,4]",
    "world_model_track.target_loss=100.0",
]  # fmt: skip


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def episode(length: int, start: int = 0) -> Episode:
    return Episode(
        frames=torch.arange(start, start + length, dtype=torch.uint8)[:, None, None, None]
        .expand(length, 3, 2, 2)
        .clone(),
        actions=torch.zeros(length, dtype=torch.long),
        rewards=torch.zeros(length),
        ends=torch.arange(length) == length - 1,
    )


def test_split_by_whole_episodes_and_prefixes():
    episodes = [episode(10, 0), episode(5, 10), episode(3, 15), episode(2, 18)]
    train, heldout = dataset.split(episodes, 0.2, "test")
    assert [len(e) for e in heldout] == [3, 2] and [len(e) for e in train] == [
        10,
        5,
    ]  # the last episodes, >= 4 of 20 steps
    cut = dataset.prefix(train, 12)
    assert [len(e) for e in cut] == [10, 2] and cut[1].frames[:, 0, 0, 0].tolist() == [10, 11]
    assert [len(e) for e in dataset.prefix(train, 10)] == [10]
    with pytest.raises(WmbenchError, match="cannot be split"):
        dataset.split([episode(20)], 0.2, "test")


def test_frames_to_target_is_the_first_budget_at_or_below():
    rows = [{"env_steps": 40, OBS_LOSS: 3.0}, {"env_steps": 80, OBS_LOSS: 2.0}, {"env_steps": 120, OBS_LOSS: 2.5}]
    assert (
        frames_to_target(rows, 2.0) == 80 and frames_to_target(rows, 3.5) == 40 and frames_to_target(rows, 1.0) is None
    )


def test_dataset_collected_once_and_cached(registry, cache, monkeypatch):
    config = cfg.resolve("smoke", "Breakout", 3, "vqvae", "scratch", TINY, registry)
    first, path = dataset.load_or_collect("Breakout", config.env, 120, 3, log=lambda *_: None)
    assert path.parent == cache / "datasets" and path.name.startswith("Breakout-seed3-120steps-")
    assert sum(len(e) for e in first) == 120 and all(e.frames.dtype == torch.uint8 for e in first)
    assert all(not e.ends[:-1].any() for e in first) and first[0].frames.shape[1:] == (3, 32, 32)
    monkeypatch.setattr(dataset, "collect", lambda *a: pytest.fail("collected twice"))
    again, _ = dataset.load_or_collect("Breakout", config.env, 120, 3, log=lambda *_: None)
    assert all(torch.equal(a.frames, b.frames) and torch.equal(a.actions, b.actions) for a, b in zip(first, again))
    other = dataset.dataset_path(
        "Breakout", cfg.resolve("smoke", "Breakout", 3, "vqvae", "scratch", [], registry).env, 120, 3
    )
    assert other != path  # other env settings (max_frames_train), another file
    path.write_bytes(b"not a dataset")
    with pytest.raises(WmbenchError, match="cannot load"):
        dataset.load_or_collect("Breakout", config.env, 120, 3)


def test_track_end_to_end_and_resume(registry, tmp_path, monkeypatch):
    config = cfg.resolve("smoke", "Breakout", 0, "vqvae", "scratch", TINY, registry)
    run = RunDir(tmp_path / "run")
    run.create(cfg.to_dict(config))
    track = WorldModelTrack(config, run, registry, log=lambda *_: None)
    calls = {"n": 0}
    evaluate = WorldModelTrack.evaluate

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate(self)

    monkeypatch.setattr(WorldModelTrack, "evaluate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        track.fit()
    assert [r["env_steps"] for r in run.read_metrics()] == [40] and run.last_checkpoint.is_file()
    monkeypatch.setattr(WorldModelTrack, "evaluate", evaluate)

    again = WorldModelTrack(config, run, registry, log=lambda *_: None)
    assert "after 40 frames seen" in again.resume()
    summary = again.fit()
    rows = run.read_metrics()
    assert [r["env_steps"] for r in rows] == [40, 80, 120]
    for row in rows:
        for key in ("heldout/loss/observations", "heldout/loss/rewards", "heldout/loss/ends", "heldout/reconstruction_mse",
                    "heldout/rollout_mse@1", "heldout/rollout_psnr@4", "heldout/rollout_token_accuracy@2",
                    "loss/world_model/total", "loss/tokenizer/total"):  # fmt: skip
            assert key in row and torch.isfinite(torch.tensor(row[key])), key
        assert 0 <= row["heldout/accuracy/rewards"] <= 1 and 0 <= row["heldout/accuracy/ends"] <= 1
        assert row["heldout/rollout_psnr@1"] == pytest.approx(
            -10 * torch.log10(torch.tensor(row["heldout/rollout_mse@1"])).item(), abs=3
        )
    assert rows[-1][OBS_LOSS] < rows[0][OBS_LOSS]  # 6 world-model steps already lower the held-out loss from log(64)
    written = json.loads(run.summary.read_text())
    assert written == {"schema_version": 1, **json.loads(json.dumps(summary))}
    assert written["track"] == "world-model" and written["budgets"] == [40, 80, 120] and written["env_steps"] == 120
    assert [r["env_steps"] for r in written["per_budget"]] == [40, 80, 120] and written["frames_to_target"] == 40
    d = written["dataset"]
    assert d["train_steps"] + d["heldout_steps"] == 300 and d["heldout_steps"] >= 75 and d["policy"] == "uniform random"


def test_budgets_beyond_the_train_part_are_refused(registry, tmp_path):
    config = cfg.resolve(
        "smoke", "Breakout", 0, "vqvae", "scratch", [*TINY, "world_model_track.budgets=[40,280]"], registry
    )
    with pytest.raises(WmbenchError, match=r"budgets go up to 280 frames, but the train part of the dataset holds \d+"):
        WorldModelTrack(config, RunDir(tmp_path / "run"), registry)


def test_cli_bad_budgets_one_line_nothing_written(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(
        cli, ["world-model", "-g", "Pong", "--set", "world_model_track.budgets=[150]", "--out", str(out)]
    )
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "wmbench: error: world_model_track.budgets must be increasing multiples of training.collect.steps_per_epoch (200), got [150]"
    ]
    assert not out.exists()


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    """`wmbench world-model` as a user runs it, then `--resume` of the finished folder rewrites the same summary."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [sys.executable, "-m", "wmbench", "world-model", "-g", "Breakout", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*args, *(a for item in TINY for a in ("--set", item))],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "target 100.0 reached after 40 frames" in result.stdout
    first = json.loads((out / "summary.json").read_text())
    result = subprocess.run(
        [sys.executable, "-m", "wmbench", "world-model", "--resume", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((out / "summary.json").read_text())
    assert again["per_budget"] == first["per_budget"] and len(RunDir(out).read_metrics()) == 3


@pytest.mark.slow
def test_observers_hear_a_world_model_track_run(registry, tmp_path):
    from test_plugins import Recorder, _with

    heard = Recorder()
    reg = _with(heard)
    config = cfg.resolve("smoke", "Breakout", 0, "vqvae", "scratch", [*TINY, 'loggers=["recorder0"]'], reg)
    run = RunDir(tmp_path / "run")
    track = WorldModelTrack(config, run, reg, log=lambda line: None)
    run.create(cfg.to_dict(config))
    summary = track.fit()
    records = [{k: v for k, v in r.items() if k != "time"} for r in run.read_metrics()]
    assert [c[0] for c in heard.calls] == ["started", *["metrics", "checkpoint"] * 3, "finished"]
    assert [c[1] for c in heard.calls if c[0] == "metrics"] == records and heard.calls[-1] == ("finished", summary)
