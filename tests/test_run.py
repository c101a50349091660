"""Whole runs: checkpoint round trip in process, and the smoke preset end to end on a real Atari game."""

import json
import os
import subprocess
import sys

import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.trainer import Trainer
from wmbench.rundir import RunDir

TINY = [
    "training.epochs=3", "training.collect.steps_per_epoch=40",
    "training.tokenizer.start_after_epochs=1", "training.tokenizer.steps_per_epoch=2", "training.tokenizer.batch_size=8",
    "training.world_model.start_after_epochs=1", "training.world_model.steps_per_epoch=2", "training.world_model.batch_size=4",
    "training.actor_critic.start_after_epochs=2", "training.actor_critic.steps_per_epoch=1", "training.actor_critic.batch_size=4",
    "eval.final_episodes=1", "eval.num_envs=1", "env.max_frames_test=400",
]


def _trainer(registry, path, overrides=()):
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", TINY + list(overrides), registry)
    run = RunDir(path)
    if not run.config.exists():
        run.create(cfg.to_dict(config))
    return Trainer(config, run, registry, log=lambda *_: None)


def test_checkpoint_round_trip_and_resume(registry, tmp_path):
    trainer = _trainer(registry, tmp_path / "run", ["training.epochs=2"])
    trainer.fit()
    state = torch.load(trainer.run.last_checkpoint, weights_only=True)
    assert set(state) >= {"agent", "optimizers", "epoch", "replay", "rng"}
    prefixes = {k.split(".")[0] for k in state["agent"]}
    assert prefixes == {"tokenizer", "world_model", "actor_critic"}

    again = _trainer(registry, tmp_path / "run", ["training.epochs=2"])
    again.resume()
    for (name, a), (_, b) in zip(trainer.agent.state_dict().items(), again.agent.state_dict().items()):
        assert torch.equal(a, b), name
    assert again.epoch == 2 and again.env_steps == trainer.env_steps
    assert [len(e) for e in again.store.episodes] == [len(e) for e in trainer.store.episodes]
    frames = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(again.agent.tokenizer.reconstruct(frames), trainer.agent.tokenizer.reconstruct(frames))


def test_metrics_and_summary(registry, tmp_path):
    trainer = _trainer(registry, tmp_path / "run")
    summary = trainer.fit()
    records = trainer.run.read_metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all("env_steps" in r and "wall_time" in r for r in records)
    assert "loss/world_model/observations" in records[1] and "loss/actor_critic/total" in records[2]
    written = json.loads(trainer.run.summary.read_text())
    assert written["schema_version"] == 1 and written["seed"] == 0 and written["game"] == "Pong"
    for key in ("eval_returns", "human_normalised_score", "parameters", "peak_memory", "packages", "wall_time_s", "device"):
        assert key in written
    assert summary["env_steps"] == 120


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    """The README's main job: the smoke preset on Pong, to the end, with falling losses."""
    out = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, "-m", "wmbench", "run", "--backbone", "scratch", "--game", "Pong", "--preset", "smoke", "--out", str(out)],
        capture_output=True, text=True, timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    run = RunDir(out)
    records = run.read_metrics()
    wm = [r["loss/world_model/total"] for r in records if "loss/world_model/total" in r]
    tok = [r["loss/tokenizer/total"] for r in records if "loss/tokenizer/total" in r]
    assert wm[-1] < 0.5 * wm[0] and tok[-1] < 0.5 * tok[0], (wm, tok)
    summary = json.loads(run.summary.read_text())
    assert len(summary["eval_returns"]) == 2 and summary["env_steps"] == 1600
    assert sorted(p.name for p in run.media.glob("*.png"))
    assert (run.checkpoints / "last.pt").exists() and len(list(run.replay.glob("*.pt"))) >= 1
