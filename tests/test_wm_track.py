"""The world-model track: the policy mix and its dataset, split by whole episodes and cached; the frozen tokenizer,
trained once and shared; the measures beside their references; a fresh run per budget at equal steps with the
learning rate chosen on validation; resume; bad settings refused before anything is written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.engine.replay import Episode
from wmbench.errors import WmbenchError
from wmbench.rundir import RunDir
from wmbench.tracks import dataset, frozen_tokenizer, heldout, policies
from wmbench.tracks.world_model import OBS_LOSS, WorldModelTrack, check_settings, token_table_rms

TINY = [
    "env.max_frames_train=400",
    "training.tokenizer.batch_size=8", "training.world_model.steps_per_epoch=2", "training.world_model.batch_size=4",
    "world_model_track.dataset_steps=900", "world_model_track.ood_steps=150", "world_model_track.budgets=[60,180]",
    "world_model_track.steps=4", "world_model_track.tokenizer_steps=4", "world_model_track.eval_segments=3",
    "world_model_track.rollout_starts=3", "world_model_track.rollout_samples=2", "world_model_track.rollout_burn_in=2",
    "world_model_track.rollout_steps=[1,2]",
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


def test_split_interleave_prefix_and_windows():
    episodes = [episode(10, 0), episode(5, 10), episode(3, 15), episode(2, 18)]
    train, validation, held = dataset.split(episodes, (0.1, 0.2), "test")
    assert [len(e) for e in held] == [3, 2] and [len(e) for e in validation] == [5] and [len(e) for e in train] == [10]
    with pytest.raises(WmbenchError, match="cannot be split into train, validation and held-out"):
        dataset.split([episode(20)], (0.1, 0.2), "test")
    mixed = dataset.interleave([[episode(4, 0), episode(4, 4)], [episode(1, 100), episode(1, 101), episode(6, 102)]])
    assert [int(e.frames[0, 0, 0, 0]) for e in mixed] == [0, 100, 101, 102, 4]  # fewest steps so far goes next
    cut = dataset.prefix(mixed, 7)
    assert [len(e) for e in cut] == [4, 1, 1, 1] and cut[-1].frames[:, 0, 0, 0].tolist() == [102]
    spans = dataset.windows([episode(7), episode(3)], 3)
    assert spans == [(0, 0), (0, 3), (0, 6), (1, 0)]  # every step in exactly one window


def test_policies_checked_and_scripts_follow_the_ball():
    with pytest.raises(WmbenchError, match="no scripted policy for MsPacman"):
        policies.check(("random", "scripted"), "MsPacman", "world_model_track.policies")
    with pytest.raises(WmbenchError, match="distinct policies of random, sticky, scripted"):
        policies.check(("random", "random"), "Pong", "world_model_track.policies")
    ram = np.zeros(128, dtype=np.uint8)
    assert policies.SCRIPTS["Breakout"](ram) == 1  # no ball: FIRE
    ram[101], ram[72], ram[99] = 50, 60, 120
    assert policies.SCRIPTS["Breakout"](ram) == 2  # ball to the right: RIGHT
    ram[54], ram[51] = 150, 40
    assert policies.SCRIPTS["Pong"](ram) == 3  # ball below the paddle: LEFT moves it down


def test_mixed_dataset_collected_once_cached_and_split_per_policy(registry, cache, monkeypatch):
    config = cfg.resolve("smoke", "Breakout", 3, "vqvae", "scratch", TINY, registry)
    w = config.world_model_track
    data = dataset.load_or_collect("Breakout", config.env, w, 3, log=lambda *_: None)
    assert data.file.parent == cache / "datasets" and data.file.name.startswith("Breakout-seed3-900steps-")
    facts = data.facts()
    steps = [facts[p]["steps"] for p in ("train", "validation", "heldout")]
    assert sum(steps) == 900 and facts["ood"]["steps"] == 150 and min(steps) > 0
    assert all(not e.ends[:-1].any() and e.frames.dtype == torch.uint8 for e in data.train)
    # The sticky policy holds its action: far more repeats than uniform random play's quarter.
    sticky = dataset.collect("Breakout", config.env, 200, 0, "sticky")
    actions = torch.cat([e.actions for e in sticky])
    assert (actions[1:] == actions[:-1]).float().mean() > 0.7
    monkeypatch.setattr(dataset, "collect", lambda *a: pytest.fail("collected twice"))
    again = dataset.load_or_collect("Breakout", config.env, w, 3, log=lambda *_: None)
    assert all(torch.equal(a.frames, b.frames) for a, b in zip(data.heldout, again.heldout))
    data.file.write_bytes(b"not a dataset")
    with pytest.raises(WmbenchError, match="cannot load"):
        dataset.load_or_collect("Breakout", config.env, w, 3)


def test_references_and_classification():
    tokens = [torch.tensor([[0, 1], [0, 1], [0, 2], [0, 2]])]  # 5 of 6 consecutive tokens unchanged
    refs = heldout.References.fit(tokens, 4)
    assert refs.unigram.tolist() == pytest.approx([5 / 12, 3 / 12, 3 / 12, 1 / 12])
    assert refs.copy == pytest.approx(0.8, abs=0.06)  # the grid point nearest the best probability
    labels, previous = torch.tensor([[1, 3]]), torch.tensor([[1, 1]])
    out = refs.losses(labels, previous, torch.tensor([True, False]))
    u = refs.unigram
    assert out["copy"].tolist()[0] == pytest.approx(
        [-np.log(refs.copy + (1 - refs.copy) * u[1].item()), -np.log(u[3].item())], rel=1e-5
    )
    pred, label = torch.tensor([1, 1, 2, 1, 0]), torch.tensor([1, 1, 2, 2, 1])
    figures = heldout._classification(pred, label, lambda x: x != 1)
    assert figures == {
        "balanced_accuracy": pytest.approx((2 / 3 + 1 / 2) / 2),
        "precision": 0.5,
        "recall": 0.5,
        "count": 2,
    }
    one_class = heldout._classification(torch.tensor([0, 0]), torch.tensor([0, 0]), lambda x: x == 1)
    assert one_class["recall"] is None and one_class["balanced_accuracy"] is None  # not 1: nothing to balance


def test_track_end_to_end_and_resume(registry, tmp_path, monkeypatch):
    """Two learning-rate candidates at the largest budget, then the smaller budget; killed after the first run and
    resumed; the frozen tokenizer is trained once and shared with a second backbone."""
    overrides = [*TINY, "world_model_track.lrs=[0.001,0.003]"]
    config = cfg.resolve("smoke", "Breakout", 0, "vqvae", "scratch", overrides, registry)
    run = RunDir(tmp_path / "run")
    run.create(cfg.to_dict(config))
    track = WorldModelTrack(config, run, registry, log=lambda *_: None)
    a, b = track.fresh_agent(), track.fresh_agent()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))  # alike per budget
    assert not any(p.requires_grad for p in a.tokenizer.parameters())
    train = WorldModelTrack.train

    def killed(self, budget, lr):
        if self.trainer.epoch == 1:
            raise KeyboardInterrupt
        return train(self, budget, lr)

    monkeypatch.setattr(WorldModelTrack, "train", killed)
    with pytest.raises(KeyboardInterrupt):
        track.fit()
    assert [r["lr"] for r in run.read_metrics()] == [0.001] and run.last_checkpoint.is_file()
    monkeypatch.setattr(WorldModelTrack, "train", train)
    monkeypatch.setattr(frozen_tokenizer, "train", lambda *a: pytest.fail("the tokenizer was trained twice"))
    again = WorldModelTrack(config, run, registry, log=lambda *_: None)
    assert "after 1 run(s)" in again.resume()
    summary = again.fit()
    lines = run.read_metrics()
    assert [(r["env_steps"], r["lr"], r.get("candidate", False)) for r in lines[:2]] == [
        (180, 0.001, True), (180, 0.003, True)]  # fmt: skip
    chosen = min((0.001, 0.003), key=lambda lr: next(r["validation_loss"] for r in lines if r["lr"] == lr))
    assert summary["lr"] == chosen and [r["env_steps"] for r in lines[2:]] == [180, 60]
    assert all(r["lr"] == chosen and r["steps_run"] == 4 for r in lines[2:])
    written = json.loads(run.summary.read_text())
    assert written == {"schema_version": 1, **json.loads(json.dumps(summary))}
    rows = written["per_budget"]
    assert written["track"] == "world-model" and [r["env_steps"] for r in rows] == [60, 180]
    for row in rows:
        groups = {g: row[f"heldout/loss/observations_{g}"] for g in ("no_history", "history", "changed", "unchanged")}
        assert all(np.isfinite(v) for v in groups.values()) and np.isfinite(row["ood/loss/observations"])
        share = row["heldout/share/changed"]
        assert groups["history"] == pytest.approx(share * groups["changed"] + (1 - share) * groups["unchanged"])
        assert (
            min(groups["no_history"], groups["history"])
            <= row[OBS_LOSS]
            <= max(groups["no_history"], groups["history"])
        )
        assert 0 < row["heldout/share/changed"] < 1
        assert row["heldout/copy_token_accuracy@1"] > 0.5 and row["heldout/rollout/samples"] == 2
        assert row["heldout/imagined_frames_per_s"] > 0 and np.isfinite(row["heldout/rollout_psnr@2"])
    data = dataset.load_or_collect("Breakout", config.env, config.world_model_track, 0)
    rewarded = sum(int((e.rewards != 0).sum()) for e in data.heldout)
    assert rows[0]["heldout/rewards/count"] == rewarded  # every held-out step is measured
    for row in rows:  # a balanced accuracy needs both classes in the held-out steps
        accuracy = row["heldout/rewards/balanced_accuracy"]
        assert accuracy is None if rewarded == 0 else 0 <= accuracy <= 1
    # A second backbone of the same game and seed shares the frozen tokenizer (not trained again: see above).
    other = cfg.resolve("smoke", "Breakout", 0, "vqvae", "llm-full",
                        [*TINY, "backbone.model=tiny-llama", "backbone.pretrained=false"], registry)  # fmt: skip
    llm = WorldModelTrack(other, RunDir(tmp_path / "llm"), registry, log=lambda *_: None)
    assert llm.tokenizer_facts["sha256"] == written["frozen_tokenizer"]["sha256"]


def test_input_tables_take_the_backbone_scale(registry, tmp_path, monkeypatch):
    from wmbench.tracks import world_model

    over = [*TINY, "backbone.model=tiny-llama", "backbone.pretrained=false", "world_model_track.input_scale=backbone"]
    config = cfg.resolve("smoke", "Breakout", 0, "vqvae", "llm-full", over, registry)
    track = WorldModelTrack(config, RunDir(tmp_path / "run"), registry, log=lambda *_: None)
    backbone = track.fresh_agent().world_model.transformer
    table = backbone.model.get_input_embeddings().weight
    assert token_table_rms(backbone) == pytest.approx(table.pow(2).mean().sqrt().item())
    plain = cfg.resolve(
        "smoke", "Breakout", 0, "vqvae", "scratch", [*TINY, "world_model_track.input_scale=backbone"], registry
    )
    with pytest.raises(WmbenchError, match="has no token table of its own"):
        WorldModelTrack(plain, RunDir(tmp_path / "plain"), registry, log=lambda *_: None).fresh_agent()
    monkeypatch.setattr(world_model, "token_table_rms", lambda backbone: 0.5)  # as a pretrained table's scale
    for table in track.fresh_agent().world_model.embedder.embedding_tables:
        assert table.weight.pow(2).mean().sqrt().item() == pytest.approx(0.5, rel=1e-4)


@pytest.mark.parametrize(
    "override, message",
    [
        ("world_model_track.budgets=[180,60]", "budgets must be increasing positive frame counts"),
        (
            "world_model_track.steps=5",
            r"steps must be a positive multiple of training.world_model.steps_per_epoch \(2\)",
        ),
        ("world_model_track.heldout_fraction=0.95", "below 1 together"),
        ("world_model_track.input_scale=llm", "input_scale must be one of engine, backbone"),
        (
            "world_model_track.rollout_burn_in=8",
            r"rollout_burn_in must be at least 1 and below world_model.max_blocks \(8\)",
        ),
        ("world_model_track.lrs=[0.001,0.001]", "lrs must be distinct positive learning rates"),
    ],
)
def test_bad_settings_refused(registry, override, message):
    with pytest.raises(WmbenchError, match=message):
        check_settings(cfg.resolve("smoke", "Breakout", 0, "vqvae", "scratch", [*TINY, override], registry))


def test_budgets_beyond_the_train_part_are_refused(registry, tmp_path):
    config = cfg.resolve(
        "smoke", "Breakout", 0, "vqvae", "scratch", [*TINY, "world_model_track.budgets=[60,880]"], registry
    )
    with pytest.raises(WmbenchError, match=r"budgets go up to 880 frames, but the train part of the dataset holds \d+"):
        WorldModelTrack(config, RunDir(tmp_path / "run"), registry)


def test_cli_bad_settings_one_line_nothing_written(tmp_path):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["world-model", "-g", "MsPacman", "--out", str(out)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [
        "wmbench: error: world_model_track.policies: no scripted policy for MsPacman (games with one: Pong, Breakout, "
        "Freeway); leave out 'scripted'"
    ]
    assert not out.exists()


@pytest.mark.slow
def test_cli_end_to_end(tmp_path):
    """`wmbench world-model` as a user runs it, then `--resume` of the finished folder rewrites the same summary."""
    import os
    import subprocess
    import sys

    out = tmp_path / "run"
    args = [sys.executable, "-m", "wmbench", "world-model", "-g", "Pong", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([*args, *(a for item in TINY for a in ("--set", item))], capture_output=True, text=True,
                            env=env, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert "done: held-out next-token loss" in result.stdout and "copy-previous-frame reference" in result.stdout
    first = json.loads((out / "summary.json").read_text())
    result = subprocess.run([sys.executable, "-m", "wmbench", "world-model", "--resume", str(out)],
                            capture_output=True, text=True, env=env, timeout=600, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((out / "summary.json").read_text())
    assert again["per_budget"] == first["per_budget"] and len(RunDir(out).read_metrics()) == 2


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
    assert [c[0] for c in heard.calls] == ["started", *["metrics", "checkpoint"] * 2, "finished"]
    assert [c[1] for c in heard.calls if c[0] == "metrics"] == records and heard.calls[-1] == ("finished", summary)
