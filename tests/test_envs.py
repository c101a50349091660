"""Env suites: the built-in Atari suite (game names, IRIS's wrappers on a fake env and on the ALE, score
normalisation) and a non-Atari suite registered by a plugin."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import replace
from importlib import resources

import gymnasium
import numpy as np
import pytest
from plugin_site import CATCH, add_package, wmbench

from wmbench.config import EnvConfig
from wmbench.envs import atari, atari_suite
from wmbench.errors import WmbenchError


class FakeAtari(gymnasium.Env):
    """Frame t has pixel (0, 0) = t and pixel (0, 1) = 100 - t; reward 5 per frame; a life is lost at each
    frame in ``life_lost_at`` and the game is over at ``game_over_at``."""

    observation_space = gymnasium.spaces.Box(0, 255, (8, 8, 3), np.uint8)
    action_space = gymnasium.spaces.Discrete(3)

    def __init__(self, life_lost_at=(), game_over_at=1000):
        self.life_lost_at = life_lost_at
        self.game_over_at = game_over_at
        self.resets = 0

    def get_action_meanings(self):
        return ["NOOP", "FIRE", "LEFT"]

    def _obs(self):
        obs = np.zeros((8, 8, 3), np.uint8)
        obs[0, 0, 0], obs[0, 1, 0] = self.t, 100 - self.t
        return obs

    def _lives(self):
        return 3 - sum(self.t >= f for f in self.life_lost_at)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        self.resets += 1
        return self._obs(), {"lives": self._lives()}

    def step(self, action):
        self.t += 1
        return self._obs(), 5.0, self.t >= self.game_over_at, False, {"lives": self._lives()}


FAKE = EnvConfig(size=8, noop_max=1)


def test_games_match_the_score_tables(registry):
    assert len(atari_suite.GAMES) == 26
    for kind in ("HUMAN", "RANDOM"):
        table = json.loads((resources.files("wmbench") / "data" / "baselines" / f"{kind}.json").read_text())
        assert list(table) == list(atari_suite.GAMES)
    atari_games = {name: g for name, g in registry.games.items() if g.suite.name == "atari"}
    assert list(atari_games) == list(atari_suite.GAMES)
    assert {g.suite.plugin for g in atari_games.values()} == {"atari"}


@pytest.mark.parametrize("name", ["breakout", "Breakot"])
def test_unknown_game_suggests(registry, name):
    with pytest.raises(WmbenchError, match="did you mean 'Breakout'"):
        registry.game(name)
    with pytest.raises(WmbenchError, match="did you mean 'Breakout'"):
        atari.make_env(name, EnvConfig(), train=True, seed=0)


def test_imports_stay_cheap():
    code = (
        "import sys, wmbench; assert 'gymnasium' not in sys.modules\n"
        "from wmbench.plugins import registry; registry().game('Pong'); assert 'gymnasium' not in sys.modules\n"
        "import wmbench.envs.atari; assert not {'ale_py', 'cv2'} & set(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_skip_sums_rewards_and_pools_last_two_frames():
    env = atari.MaxAndSkip(FakeAtari(), skip=4)
    env.reset()
    obs, reward, terminated, truncated, _ = env.step(1)
    assert reward == 20.0  # 4 frames x 5, not clipped
    assert (obs[0, 0, 0], obs[0, 1, 0]) == (4, 97)  # max of frames 3 and 4
    single = atari.MaxAndSkip(FakeAtari(), skip=1)
    single.reset()
    assert single.step(0)[0][0, 1, 0] == 99


def test_skip_stops_at_the_end_of_an_episode():
    env = atari.MaxAndSkip(FakeAtari(game_over_at=6), skip=4)
    env.reset()
    env.step(0)
    obs, reward, terminated, _, _ = env.step(0)
    assert terminated and reward == 10.0 and obs[0, 0, 0] == 6


def test_frame_cap_truncates():
    env = atari.wrap(FakeAtari(), replace(FAKE, max_frames_test=10), train=False)
    _, info = env.reset()
    assert info["frames"] == 1  # exactly one no-op in the test env
    steps = [env.step(0) for _ in range(3)]
    assert [s[3] for s in steps] == [False, False, True]
    assert steps[-1][4]["frames"] == 10 and steps[-1][1] == 5.0  # the last step stopped at the cap


class FakeLarge(FakeAtari):
    """16x16 frames of noise that depends on the frame number only."""

    observation_space = gymnasium.spaces.Box(0, 255, (16, 16, 3), np.uint8)

    def _obs(self):
        return np.random.default_rng(self.t).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def test_frames_resized_then_pooled_as_iris():
    from PIL import Image

    def frame(t):
        return np.random.default_rng(t).integers(0, 256, (16, 16, 3), dtype=np.uint8)

    pil = [np.asarray(Image.fromarray(frame(t)).resize((8, 8), Image.BILINEAR)) for t in (3, 4)]
    assert EnvConfig().resize_each_frame  # the default, so the iris preset's
    env = atari.MaxAndSkip(atari.ResizeBilinear(FakeLarge(), 8), skip=4)
    env.reset()
    assert np.array_equal(env.step(0)[0], np.maximum(*pil))
    other = atari.wrap(FakeLarge(), replace(FAKE, resize_each_frame=False), train=False)
    other.reset()  # and its one no-op: the step sees frames 2 to 5
    import cv2

    pooled = cv2.resize(np.maximum(frame(4), frame(5)), (8, 8), interpolation=cv2.INTER_AREA)
    assert np.array_equal(other.step(0)[0], pooled)


def test_train_cap_is_stored_as_an_episode_end(smoke_config, registry, tmp_path):
    import torch

    from wmbench.engine.agent import build_agent
    from wmbench.engine.collector import Collector
    from wmbench.engine.replay import ReplayStore

    env = atari.wrap(FakeAtari(), replace(smoke_config.env, noop_max=1, max_frames_train=25), train=True)
    agent = build_agent(smoke_config, registry, num_actions=3)
    store = ReplayStore(None)
    Collector(env, store, agent, torch.device("cpu"), seed=0).collect(10, 0.0, 1.0, 4, torch.Generator().manual_seed(0))
    # 1 no-op, then 6 steps of 4 frames: the cap truncates the 6th; the next episode starts after it.
    assert len(store.episodes[0]) == 6 and store.episodes[0].ends.tolist() == [False] * 5 + [True]
    assert not store.episodes[1].ends.any()


def test_life_loss_ends_train_episodes_and_the_game_goes_on():
    fake = FakeAtari(life_lost_at=(10,), game_over_at=20)
    env = atari.wrap(fake, FAKE, train=True)
    env.reset()
    terminated = [env.step(0)[2] for _ in range(3)]  # frames 5, 9, 13
    assert terminated == [False, False, True]
    obs, info = env.reset()
    assert fake.resets == 1 and info["frames"] == 17 and info["lives"] == 2  # one no-op step, no real reset
    assert env.step(0)[2]  # game over at frame 20
    env.reset()
    assert fake.resets == 2 and env.reset(seed=1)[1]["frames"] == 1


def test_life_loss_does_not_end_test_episodes():
    env = atari.wrap(FakeAtari(life_lost_at=(10,), game_over_at=20), FAKE, train=False)
    env.reset()
    results = [env.step(0) for _ in range(5)]
    assert [r[2] for r in results] == [False] * 4 + [True]
    assert results[3][4]["lives"] == 2


def test_noops_are_action_zero():
    class NoNoop(FakeAtari):
        def get_action_meanings(self):
            return ["FIRE", "NOOP"]

    with pytest.raises(ValueError, match="NOOP"):
        atari.wrap(NoNoop(), EnvConfig(), train=True)


def test_breakout_observations_and_noops():
    env = atari.make_env("Breakout", EnvConfig(), train=True, seed=0)
    assert env.observation_space.shape == (64, 64, 3)
    frames = set()
    for seed in range(5):
        obs, info = env.reset(seed=seed)
        assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8
        assert 1 <= info["frames"] <= 30 and info["lives"] == 5
        frames.add(info["frames"])
    assert len(frames) > 1
    obs, reward, _, _, info = env.step(1)
    assert obs.shape == (64, 64, 3) and obs.dtype == np.uint8 and isinstance(reward, float)
    assert set(info) >= {"lives", "frames"}
    test_env = atari.make_env("Breakout", EnvConfig(size=32), train=False, seed=0)
    obs, info = test_env.reset()
    assert obs.shape == (32, 32, 3) and info["frames"] == 1


def _rollout(env, seed, steps, reset_seed=None):
    """Random actions until the episode ends: [first obs, (obs, reward, terminated, truncated, lives), ...]."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=reset_seed)
    out = [obs]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        out.append((obs, reward, terminated, truncated, info["lives"]))
        if terminated or truncated:
            break
    return out


def test_breakout_life_loss_train_vs_test():
    train = _rollout(atari.make_env("Breakout", EnvConfig(), train=True, seed=0), 0, 300)
    assert train[-1][2] and train[-1][4] == 4  # the first life lost ends the episode
    test = _rollout(atari.make_env("Breakout", EnvConfig(), train=False, seed=0), 0, 1000)
    assert test[-1][2] and test[-1][4] == 0  # only the game over ends it
    assert {step[4] for step in test[1:-1]} == {1, 2, 3, 4, 5}


def test_frame_cap_on_the_ale():
    env = atari.make_env("Breakout", replace(EnvConfig(), max_frames_test=200), train=False, seed=0)
    steps = _rollout(env, 0, 100)
    assert len(steps) == 51 and steps[-1][3] and not steps[-1][2]  # 1 no-op + 49 x 4 + 3 frames


def test_rewards_are_not_clipped():
    steps = _rollout(atari.make_env("Asterix", EnvConfig(), train=False, seed=0), 0, 100)
    assert max(step[1] for step in steps[1:]) > 1


def test_seeding_is_reproducible():
    a = _rollout(atari.make_env("Pong", EnvConfig(), train=True, seed=3), 0, 50)
    b = _rollout(atari.make_env("Pong", EnvConfig(), train=True, seed=3), 0, 50, reset_seed=3)
    assert len(a) == len(b)
    np.testing.assert_array_equal(a[0], b[0])
    for x, y in zip(a[1:], b[1:]):
        np.testing.assert_array_equal(x[0], y[0])
        assert x[1:] == y[1:]


def test_action_sets(registry):
    assert registry.game("Breakout").num_actions() == 4
    assert registry.game("Pong").num_actions() == 6
    assert atari.action_names("Breakout") == ["NOOP", "FIRE", "RIGHT", "LEFT"]


def test_atari_envs_through_the_registry(registry):
    env = registry.game("Pong").make_env(EnvConfig(size=32), train=False, seed=0)
    obs, _ = env.reset()
    assert obs.shape == (32, 32, 3) and obs.dtype == np.uint8 and env.action_space.n == 6


def test_human_normalised(registry):
    assert registry.game("Breakout").human_normalised(30.5) == pytest.approx(1.0)
    assert registry.game("Breakout").human_normalised(1.7) == pytest.approx(0.0)
    assert registry.game("Breakout").human_normalised(16.1) == pytest.approx(0.5)
    assert registry.game("Pong").human_normalised(-20.7 + 2 * 35.3) == pytest.approx(2.0)


# A non-Atari suite from a plugin package --------------------------------------------------------------------


@pytest.fixture
def catch_registry(tmp_path, monkeypatch):
    """The registry with the ``catch`` plugin installed beside the built-ins."""
    from wmbench.plugins import Registry, plugin_manager

    site = add_package(tmp_path / "site", "wmbench-catch", "1.0", {"catch": "wmbench_catch"}, {"wmbench_catch": CATCH})
    monkeypatch.syspath_prepend(str(site))
    yield Registry(*plugin_manager()).check()
    sys.modules.pop("wmbench_catch", None)


def test_plugin_suite_builds_steps_and_collects(catch_registry, tmp_path):
    import torch

    from wmbench import config as cfg
    from wmbench.engine.agent import build_agent
    from wmbench.engine.collector import Collector
    from wmbench.engine.replay import ReplayStore

    game = catch_registry.game("Catch")
    assert (game.suite.name, game.suite.plugin, game.num_actions()) == ("catch", "catch", 3)
    assert game.human_normalised(1.0) == pytest.approx(1.0) and game.human_normalised(-0.75) == pytest.approx(0.0)
    assert "Pong" in catch_registry.games  # the built-in suite is still there

    config = cfg.resolve("smoke", "Catch", 0, "vqvae", "scratch", [], catch_registry)
    agent = build_agent(config, catch_registry, game.num_actions())
    store = ReplayStore(tmp_path / "replay", config.training.sampling_weights)
    collector = Collector(game.make_env(config.env, train=True, seed=0), store, agent, torch.device("cpu"), seed=0)
    metrics = collector.collect(30, 0.01, 1.0, 4, torch.Generator().manual_seed(0))
    assert metrics["collect/episodes"] == 4  # an episode is 7 steps
    assert metrics["collect/return"] in (-1.0, -0.5, 0.0, 0.5, 1.0)
    assert [len(e) for e in store.episodes[:4]] == [7] * 4
    assert store.episodes[0].frames.shape == (7, 3, 32, 32) and store.episodes[0].frames.dtype == torch.uint8


def test_a_game_claimed_by_two_suites_names_both_plugins(tmp_path, monkeypatch):
    from wmbench.plugins import Registry, plugin_manager

    site = add_package(tmp_path / "site", "wmbench-catch", "1.0", {"catch": "wmbench_catch"}, {"wmbench_catch": CATCH})
    other = CATCH.replace('register("catch",', 'register("catch2",')
    add_package(site, "wmbench-catch2", "1.0", {"catch2": "wmbench_catch2"}, {"wmbench_catch2": other})
    monkeypatch.syspath_prepend(str(site))
    try:
        reg = Registry(*plugin_manager())
    finally:
        for name in ("wmbench_catch", "wmbench_catch2"):
            sys.modules.pop(name, None)
    (problem,) = reg.problems
    assert "plugin 'catch2' from package 'wmbench-catch2'" in problem
    assert "game 'Catch', which plugin 'catch' registered first" in problem
    assert "WMBENCH_DISABLE_PLUGINS=catch2" in problem
    assert "catch2" not in reg.suites and reg.game("Catch").suite.plugin == "catch"  # nothing of catch2 is kept
    with pytest.raises(WmbenchError, match="catch2"):
        reg.check()


def test_a_suite_breaking_its_contract_is_named():
    from wmbench.envs.suite import EnvSuite, Game

    class Gray(gymnasium.Env):
        observation_space = gymnasium.spaces.Box(0, 255, (32, 32), np.uint8)
        action_space = gymnasium.spaces.Discrete(2)

    game = Game("Gray", EnvSuite("gray", ("Gray",), lambda *args: Gray(), lambda name: 0, plugin="grayplugin"))
    with pytest.raises(WmbenchError, match="env suite 'gray' of plugin 'grayplugin': game 'Gray' gives observations"):
        game.make_env(EnvConfig(size=32), train=True, seed=0)
    with pytest.raises(WmbenchError, match="game 'Gray' has 0 actions"):
        game.num_actions()
    assert np.isnan(game.human_normalised(1.0))  # no reference scores


@pytest.mark.slow
def test_smoke_run_on_a_plugin_suite(tmp_path):
    """wmbench run on the plugin's game, end to end: the smoke preset cut to three short epochs."""
    site = add_package(tmp_path / "site", "wmbench-catch", "1.0", {"catch": "wmbench_catch"}, {"wmbench_catch": CATCH})
    done = wmbench("list", "games", site=site)
    assert re.search(r"^Catch +catch +catch$", done.stdout, re.M), done.stdout
    out = tmp_path / "run"
    done = wmbench(
        "run",
        "--game",
        "Catch",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--set",
        "training.epochs=3",
        "--set",
        "training.collect.steps_per_epoch=70",
        "--set",
        "training.actor_critic.start_after_epochs=2",
        site=site,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["game"] == "Catch" and summary["epochs"] == 3 and summary["env_steps"] == 210
    assert len(summary["eval_returns"]) == 2 and set(summary["eval_returns"]) <= {-1.0, 1.0}
    assert summary["human_normalised_score"] == pytest.approx((summary["eval_return_mean"] + 0.75) / 1.75)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("imagination/return" in m for m in metrics), "the actor-critic never imagined"
