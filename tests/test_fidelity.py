"""The iris preset as the reference trains it, and what a score stands for (score_notes, compare)."""

import json

import numpy as np
import pytest
from test_report import write_run

from wmbench import config as cfg
from wmbench.score_notes import marked_score, paper_departures, score_caveats


def test_cut_test_episodes_and_pipeline_presets_are_not_scores(registry):
    smoke = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [], registry)
    assert score_caveats(smoke) == ["test episodes cut at 3,000 frames", "pipeline preset smoke"]
    llm = cfg.resolve("smoke-llm", "Pong", 0, "vqvae", "scratch", ["env.max_frames_test=108000"], registry)
    assert score_caveats(llm) == ["pipeline preset smoke-llm"]  # inherited from its base preset
    for preset in ("iris", "fast", "cpu"):
        assert score_caveats(cfg.resolve(preset, "Pong", 0, "vqvae", "scratch", [], registry)) == []
    summary = {"eval_return_mean": -15.0, "human_normalised_score": 0.161, "score_caveats": score_caveats(smoke)}
    marked = "eval return -15.00 (not a score: test episodes cut at 3,000 frames; pipeline preset smoke)"
    assert marked_score(summary) == marked
    assert marked_score({**summary, "score_caveats": []}) == "eval return -15.00 (human-normalised 0.161)"


def test_lpips_off_is_said(registry):
    from wmbench.engine.agent import build_agent

    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [], registry)
    agent = build_agent(config, registry, num_actions=6)
    assert paper_departures(config, agent.tokenizer.describe()) == ["LPIPS off (the paper's tokenizer loss adds it)"]
    assert paper_departures(config, {"perceptual_loss": "LPIPS (VGG16) from x.pt, weight 1.0"}) == []
    assert "LPIPS off" in cfg.load_preset("iris")["meta"]["description"]


def test_describe_says_lpips_off_and_not_a_score():
    from test_cli import wmbench

    result = wmbench("describe", "--preset", "smoke", "--game", "Pong", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["paper_departures"] == ["LPIPS off (the paper's tokenizer loss adds it)"]
    assert data["score_caveats"] == ["test episodes cut at 3,000 frames", "pipeline preset smoke"]


def test_iris_preset_resizes_each_frame_bilinear_then_pools(registry):
    """The iris preset's env config through the wrappers the runs use: every frame resized (PIL bilinear), then the
    last two of a skip max-pooled (the other order gives other pixels on these noise frames)."""
    from dataclasses import replace

    from PIL import Image
    from test_envs import FakeLarge

    from wmbench.envs import atari

    iris = cfg.resolve("iris", "Pong", 0, "vqvae", "scratch", [], registry).env
    env = atari.wrap(FakeLarge(), replace(iris, size=8), train=False)
    env.reset()  # and the test env's one no-op: the first step sees frames 2 to 5

    def resized(t):
        frame = np.random.default_rng(t).integers(0, 256, (16, 16, 3), dtype=np.uint8)
        return np.asarray(Image.fromarray(frame).resize((8, 8), Image.BILINEAR))

    assert np.array_equal(env.step(0)[0], np.maximum(resized(4), resized(5)))


def test_compare_keeps_cut_scores_out_of_aggregates_beside_published(tmp_path):
    pytest.importorskip("pandas")
    from wmbench.report.agent import runs_table, score_matrices
    from wmbench.report.compare import compare
    from wmbench.report.runs import load_run

    folders = []
    for seed in (0, 1):
        folders.append(write_run(tmp_path / "real" / str(seed), "Pong", "scratch", seed, 0))
        cut = write_run(tmp_path / "cut" / str(seed), "Pong", "gpt2", seed, 1)
        summary = json.loads((cut / "summary.json").read_text())
        summary["score_caveats"] = ["test episodes cut at 3,000 frames"]
        summary["paper_departures"] = ["LPIPS off (the paper's tokenizer loss adds it)"]
        (cut / "summary.json").write_text(json.dumps(summary))
        folders.append(cut)
    df = runs_table([load_run(f) for f in folders])
    assert set(df.loc[df["backbone"] == "gpt2", "score_caveats"]) == {"test episodes cut at 3,000 frames"}
    beside = score_matrices(df, ["scratch"], ["IRIS"])
    assert beside.games == ["Pong"] and beside.matrices["scratch"].shape == (2, 1)
    assert any("2 run(s) left out" in n and "cut at 3,000" in n for n in beside.notes)
    alone = score_matrices(df, ["scratch", "gpt2"], [])
    assert alone.matrices["gpt2"].shape == (2, 1)  # among the runs themselves they still compare
    report = compare(folders, tmp_path / "out", ["IRIS"], reps=50).read_text()
    assert "2 run(s) depart from the paper's setup: LPIPS off" in report and "2 run(s) left out" in report


# The built-in toy suite: Catcher ------------------------------------------------------------------------------------


def _play(env, policy, episodes):
    returns = []
    for _ in range(episodes):
        obs, _ = env.reset()
        done, total = False, 0.0
        while not done:
            obs, reward, done, _, _ = env.step(policy(obs))
            total += reward
        returns.append(total)
    return returns


def _optimal(obs):
    """Move the paddle under the ball, reading both from the pixels (a ball in the bottom row is caught or missed
    already: the paddle, drawn under it when caught, stays)."""
    cell = obs.shape[0] // 4
    grid = obs[::cell, ::cell]
    ball = np.flatnonzero((grid[:3] == 255).all(-1).any(0))
    paddle = np.flatnonzero((grid[3] == (0, 200, 255)).all(-1))
    return 1 + int(np.sign(ball[0] - paddle[0])) if len(ball) and len(paddle) else 1


def test_catcher_is_registered_with_random_and_optimal_reference_scores(registry):
    game = registry.game("Catcher")
    assert (game.suite.name, game.suite.plugin, game.num_actions()) == ("toy", "toy", 3)
    assert game.human_normalised(-5.0) == pytest.approx(0.0) and game.human_normalised(10.0) == pytest.approx(1.0)
    env = game.make_env(cfg.EnvConfig(size=32), train=True, seed=0)
    assert _play(env, _optimal, 50) == [10.0] * 50  # 10 balls, every one caught
    rng = np.random.default_rng(0)
    random = _play(env, lambda obs: int(rng.integers(3)), 1000)
    assert np.mean(random) == pytest.approx(-5.0, abs=0.3)  # the registered random score (standard error 0.09)


def test_catcher_is_deterministic_given_seed_and_actions(registry):
    game = registry.game("Catcher")
    runs = []
    for _ in range(2):
        env = game.make_env(cfg.EnvConfig(size=32), train=False, seed=3)
        frames = [env.reset()[0]]
        for action in [0, 2, 1, 0, 2, 2, 1]:
            obs, _, done, _, _ = env.step(action)
            frames.append(obs)
            if done:
                frames.append(env.reset()[0])
        runs.append(np.stack(frames))
    assert np.array_equal(*runs) and runs[0].shape[1:] == (32, 32, 3) and runs[0].dtype == np.uint8
