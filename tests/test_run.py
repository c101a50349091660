"""Whole runs you can trust: metrics and summary, determinism, resume equal to never stopping (in process, after
Ctrl-C, after kill -9), media, the smoke preset end to end, and one-line errors for checkpoints that are missing,
torn, foreign or carry a pickle payload."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.trainer import Trainer
from wmbench.rundir import RunDir

TINY = [
    "training.epochs=3",
    "training.collect.steps_per_epoch=40",
    "training.media_every=3",
    "training.tokenizer.start_after_epochs=1",
    "training.tokenizer.steps_per_epoch=2",
    "training.tokenizer.batch_size=8",
    "training.world_model.start_after_epochs=1",
    "training.world_model.steps_per_epoch=2",
    "training.world_model.batch_size=4",
    "training.actor_critic.start_after_epochs=2",
    "training.actor_critic.steps_per_epoch=1",
    "training.actor_critic.batch_size=4",
    "eval.final_episodes=1",
    "eval.num_envs=1",
    "env.max_frames_test=400",
]
VOLATILE = ("time", "wall_time")
"""Metrics that measure the clock, not the run."""


def _trainer(registry, path, overrides=()):
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", TINY + list(overrides), registry)
    run = RunDir(path)
    if not run.config.exists():
        run.create(cfg.to_dict(config))
    return Trainer(config, run, registry, log=lambda *_: None)


def _stable(records):
    return [{k: v for k, v in r.items() if k not in VOLATILE and not k.endswith("_per_s")} for r in records]


def _episodes(run: RunDir):
    return [torch.load(p, weights_only=True) for p in sorted(run.replay.glob("*.pt"))]


def _same_episodes(a: RunDir, b: RunDir) -> None:
    ea, eb = _episodes(a), _episodes(b)
    assert len(ea) == len(eb)
    for x, y in zip(ea, eb):
        assert all(torch.equal(x[k], y[k]) for k in x)


@pytest.fixture(scope="module")
def straight(registry, tmp_path_factory):
    """A run never stopped: the reference for the others."""
    trainer = _trainer(registry, tmp_path_factory.mktemp("straight") / "run")
    summary = trainer.fit()
    return trainer.run, summary


def test_metrics_and_summary(straight):
    run, summary = straight
    records = run.read_metrics()
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all("env_steps" in r and "wall_time" in r for r in records)
    assert "loss/world_model/observations" in records[1] and "loss/actor_critic/total" in records[2]
    written = json.loads(run.summary.read_text())
    assert written["schema_version"] == 1 and written["seed"] == 0 and written["game"] == "Pong"
    for key in (
        "eval_returns",
        "human_normalised_score",
        "parameters",
        "peak_memory",
        "packages",
        "wall_time_s",
        "device",
    ):
        assert key in written
    assert summary["env_steps"] == 120
    import wmbench

    assert written["plugins"] == {  # which package, at which version, built the backbone and the tokenizer
        "backbone": {"name": "scratch", "plugin": "scratch", "package": "wmbench", "version": wmbench.__version__},
        "tokenizer": {"name": "vqvae", "plugin": "vqvae", "package": "wmbench", "version": wmbench.__version__},
    }
    state = torch.load(run.last_checkpoint, weights_only=True)
    assert {k.split(".")[0] for k in state["agent"]} == {
        "tokenizer",
        "world_model",
        "actor_critic",
    }  # the reference's prefixes


def test_same_seed_same_metrics(registry, tmp_path, straight):
    run, summary = straight
    again = _trainer(registry, tmp_path / "run")
    assert again.fit()["eval_returns"] == summary["eval_returns"]
    assert _stable(again.run.read_metrics()) == _stable(run.read_metrics())
    _same_episodes(again.run, run)
    written = json.loads(run.summary.read_text())
    assert written["seed"] == 0 and {"torch", "numpy", "gymnasium", "ale-py", "wmbench"} <= set(written["packages"])


def test_stop_and_resume_equals_never_stopping(registry, tmp_path, straight):
    run, summary = straight
    first = _trainer(registry, tmp_path / "run")
    first.stop_requested = True  # as the signal handler sets it: finish the epoch, checkpoint, stop
    assert first.fit() is None and first.epoch == 1
    assert len(first.store.episodes) == 1 and first.collector.obs is not None  # stopped mid-episode
    resumed = _trainer(registry, tmp_path / "run")
    line = resumed.resume()
    assert "after epoch 1" in line and "replayed" in line
    assert resumed.fit()["eval_returns"] == summary["eval_returns"]
    assert _stable(resumed.run.read_metrics()) == _stable(run.read_metrics())
    _same_episodes(resumed.run, run)


def test_fixed_shape_imagination_trains_as_the_eager_path(registry, tmp_path, straight):
    """Imagination with fixed shapes, switched on at a resume (it changes how imagination computes, not what): the
    same metrics, episodes and returns as the eager run."""
    run, summary = straight
    first = _trainer(registry, tmp_path / "run")
    first.stop_requested = True
    assert first.fit() is None and first.epoch == 1  # the actor-critic trains from epoch 3 on
    resumed = _trainer(registry, tmp_path / "run", ["training.actor_critic.fixed_shape=true"])
    resumed.resume()
    assert resumed.fit()["eval_returns"] == summary["eval_returns"]
    assert _stable(resumed.run.read_metrics()) == _stable(run.read_metrics())
    _same_episodes(resumed.run, run)


def test_media_videos_and_grids(straight):
    run, _ = straight
    names = sorted(p.name for p in run.media.iterdir())
    suffix = ".mp4" if any(n.endswith(".mp4") for n in names) else ".gif"
    assert {
        f"train_epoch_0003{suffix}",
        f"imagined_epoch_0003{suffix}",
        "reconstructions_epoch_0003.png",
        f"test_final{suffix}",
    } <= set(names), names
    import imageio.v3 as iio

    video = iio.imread(run.media / f"imagined_epoch_0003{suffix}")
    burn_in, horizon = 4, 8  # the smoke preset's actor-critic
    assert video.shape[0] <= burn_in + horizon and video.shape[0] >= horizon and video.shape[-1] == 3


def test_gif_when_no_mp4_encoder(tmp_path, monkeypatch):
    from wmbench import media

    monkeypatch.setattr(media.importlib.util, "find_spec", lambda name: None)
    path = media.save_video(tmp_path / "clip", torch.rand(5, 3, 32, 32))
    assert path.suffix == ".gif" and path.stat().st_size > 0


def test_resume_refuses_a_checkpoint_of_another_config(registry, tmp_path, straight):
    run, _ = straight
    other = _trainer(registry, tmp_path / "run", ["world_model.num_layers=1"])
    other.run.last_checkpoint.write_bytes(run.last_checkpoint.read_bytes())
    with pytest.raises(Exception, match=r"belongs to another config: world_model.num_layers=2 \(run: 1\)"):
        other.resume()


@pytest.mark.slow
def test_smoke_run_end_to_end(tmp_path):
    """The README's main job: the smoke preset on Pong, to the end, with falling losses."""
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wmbench",
            "run",
            "--backbone",
            "scratch",
            "--game",
            "Pong",
            "--preset",
            "smoke",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
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


# Whole processes: kill -9 at several points, Ctrl-C, and the command line's errors. -------------------------


def wmbench(*args, **kwargs):
    return subprocess.Popen(
        [sys.executable, "-m", "wmbench", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        **kwargs,
    )


def _sets(overrides):
    return [a for o in overrides for a in ("--set", o)]


def _wait_for_lines(run: RunDir, n: int, process) -> None:
    while len(run.read_metrics()) < n:
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.01)


KILLABLE = TINY[:1] + ["training.epochs=4"] + TINY[1:]


@pytest.fixture(scope="module")
def straight_cli(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "straight"
    done = wmbench("run", "--out", str(out), *_sets(KILLABLE))
    assert done.wait(600) == 0, done.stderr.read()
    return RunDir(out)


@pytest.mark.slow
def test_kill_9_at_several_points_then_resume(tmp_path, straight_cli):
    """SIGKILL right after epochs 1 and 3 are logged (the process is then mid-checkpoint or mid-collection),
    resuming each time: the run ends with the same episodes and metrics as one never killed."""
    run = RunDir(tmp_path / "run")
    process = wmbench("run", "--out", str(run.path), *_sets(KILLABLE))
    for lines in (1, 3):
        _wait_for_lines(run, lines, process)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
        assert process.returncode == -signal.SIGKILL
        process = wmbench("run", "--resume", str(run.path))
    out, err = process.communicate(timeout=600)
    assert process.returncode == 0, err
    assert "resumed" in out and "replayed" in out
    assert _stable(run.read_metrics()) == _stable(straight_cli.read_metrics())
    _same_episodes(run, straight_cli)
    assert not list(run.path.rglob(".*.tmp"))


@pytest.mark.slow
def test_ctrl_c_stops_after_a_checkpoint(tmp_path, straight_cli):
    run = RunDir(tmp_path / "run")
    process = wmbench("run", "--out", str(run.path), *_sets(KILLABLE))
    _wait_for_lines(run, 1, process)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=600)
    assert process.returncode == 130 and "wmbench run --resume" in err and "Traceback" not in err
    stopped_at = len(run.read_metrics())
    assert torch.load(run.last_checkpoint, weights_only=True)["epoch"] == stopped_at < 4
    process = wmbench("run", "--resume", str(run.path))
    assert process.wait(600) == 0
    assert _stable(run.read_metrics()) == _stable(straight_cli.read_metrics())


class Payload:
    """Unpickling this would run a command: weights_only must refuse it."""

    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, Path]:
    truncated = folder / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:1000])
    pickled = folder / "pickled.pt"
    torch.save({"agent": Payload()}, pickled)
    garbage = folder / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    foreign = folder / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    return {
        "missing": folder / "missing.pt",
        "truncated": truncated,
        "garbage": garbage,
        "pickled": pickled,
        "foreign": foreign,
    }


def test_bad_checkpoints_are_one_line_errors(tmp_path, straight):
    run, _ = straight
    cases = _bad_checkpoints(tmp_path, run.last_checkpoint)
    expected = {
        "missing": "does not exist",
        "truncated": "truncated or not a torch checkpoint",
        "garbage": "truncated or not a torch checkpoint",
        "pickled": "holds pickled Python objects, which wmbench never loads",
        "foreign": "is not a wmbench checkpoint",
    }
    for name, path in cases.items():
        for args in (["eval", str(path)], ["describe", "--preset", "iris", "--game", "Breakout", "--init", str(path)]):
            result = subprocess.run(
                [sys.executable, "-m", "wmbench", *args], capture_output=True, text=True, cwd=tmp_path
            )
            lines = result.stderr.strip().splitlines()
            assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, (
                name,
                args,
                result.stderr,
            )
            if args[0] == "eval":
                assert expected[name] in lines[0], lines[0]
    assert not (tmp_path / "PWNED").exists()
