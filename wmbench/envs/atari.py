"""Atari 100k environments with IRIS's wrappers (games: :mod:`wmbench.envs.atari_games`, suite: :mod:`.atari_suite`).

``make_env`` builds ``<Game>NoFrameskip-v4`` (frame skip 1, no sticky actions, minimal action set) and wraps
it, innermost first: :class:`ResizeBilinear` (IRIS's order, ``resize_each_frame``), :class:`FrameLimit` (frame
count and cap), :class:`NoopReset`, :class:`MaxAndSkip`, :class:`Resize` (the other order only) and, in training,
:class:`EpisodicLife`. The wrappers only use the gymnasium API (plus ``info["lives"]`` and
``get_action_meanings``), so they run on any small fake env.

Frames: as IRIS, each emulator frame is resized with PIL bilinear and the last two of a skip are then max-pooled.
``resize_each_frame=False`` pools at full resolution and resizes once with cv2 INTER_AREA (baselines, Dopamine):
a 2x4 ball then comes out about 25% brighter.
"""

from __future__ import annotations

import functools
from typing import Any

import gymnasium
import numpy as np

from wmbench.config import EnvConfig
from wmbench.envs.atari_games import GAMES
from wmbench.errors import unknown


def _check(game: str) -> str:
    if game not in GAMES:
        raise unknown("Atari game", game, GAMES)
    return game


class FrameLimit(gymnasium.Wrapper):
    """Counts emulator frames since the last reset into ``info["frames"]``; truncates at ``max_frames``."""

    def __init__(self, env: gymnasium.Env, max_frames: int):
        super().__init__(env)
        self.max_frames = max_frames
        self.frames = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        self.frames = 0
        return obs, {**info, "frames": 0}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.frames += 1
        truncated = truncated or self.frames >= self.max_frames
        return obs, reward, terminated, truncated, {**info, "frames": self.frames}


class NoopReset(gymnasium.Wrapper):
    """After each reset, takes between 1 and ``noop_max`` no-ops (action 0, which must be NOOP).

    The count is drawn from the env's ``np_random``, so ``reset(seed=...)`` seeds it too.
    """

    def __init__(self, env: gymnasium.Env, noop_max: int):
        super().__init__(env)
        meanings = env.unwrapped.get_action_meanings()
        if meanings[0] != "NOOP":
            raise ValueError(f"no-op resets need action 0 to be NOOP, got {meanings[0]!r}")
        self.noop_max = noop_max

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        for _ in range(int(self.np_random.integers(1, self.noop_max + 1))):
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        return obs, info


class MaxAndSkip(gymnasium.Wrapper):
    """Repeats each action ``skip`` frames: rewards are summed (not clipped), the observation is the
    pixel-wise max of the last two frames. An episode ending early stops the repeat."""

    def __init__(self, env: gymnasium.Env, skip: int):
        super().__init__(env)
        if skip < 1:
            raise ValueError(f"frame skip must be at least 1, got {skip}")
        self.skip = skip

    def step(self, action):
        total = 0.0
        previous = obs = None
        for _ in range(self.skip):
            previous = obs
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            if terminated or truncated:
                break
        pooled = obs if previous is None else np.maximum(previous, obs)
        return pooled, total, terminated, truncated, info


class Resize(gymnasium.ObservationWrapper):
    """Resizes RGB frames to ``size`` x ``size`` with cv2 INTER_AREA."""

    def __init__(self, env: gymnasium.Env, size: int):
        super().__init__(env)
        import cv2  # slow to import (about 0.5 s): only when an env is built

        self._resize = functools.partial(cv2.resize, dsize=(size, size), interpolation=cv2.INTER_AREA)
        self.observation_space = gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self._resize(observation)


class ResizeBilinear(gymnasium.ObservationWrapper):
    """Resizes RGB frames to ``size`` x ``size`` with PIL bilinear, as IRIS does to every emulator frame."""

    def __init__(self, env: gymnasium.Env, size: int):
        super().__init__(env)
        from PIL import Image

        self._image, self._size = Image, (size, size)
        self.observation_space = gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return np.asarray(self._image.fromarray(observation).resize(self._size, self._image.BILINEAR))


class EpisodicLife(gymnasium.Wrapper):
    """Losing a life ends the episode (``terminated``), but the game goes on: as IRIS does (baselines'
    EpisodicLifeEnv), the next ``reset`` only takes one no-op step from where the life was lost, and really
    resets the emulator only after a game over, a truncation, or when given a seed.
    """

    def __init__(self, env: gymnasium.Env):
        super().__init__(env)
        self.lives = 0
        self.game_over = True

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.game_over = terminated or truncated
        lives = info["lives"]
        # Only 0 < lives: some games (Qbert) sit at 0 lives for a few frames before the game over.
        if 0 < lives < self.lives:
            terminated = True
        self.lives = lives
        return obs, reward, terminated, truncated, info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        if self.game_over or seed is not None:
            obs, info = self.env.reset(seed=seed, options=options)
        else:
            obs, _, terminated, truncated, info = self.env.step(0)
            if terminated or truncated:
                obs, info = self.env.reset()
        self.lives = info["lives"]
        return obs, info


def _import_ale():
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no banner on stderr: errors stay one line
    gymnasium.register_envs(ale_py)


def make_env(game: str, config: EnvConfig, train: bool, seed: int) -> gymnasium.Env:
    """An Atari env with IRIS's train (``train=True``) or test wrappers, seeded with ``seed``.

    Train: 1 to ``noop_max`` no-ops at reset, life loss ends the episode (if ``done_on_life_loss``), cap of
    ``max_frames_train`` emulator frames per game. Test: exactly 1 no-op, no life-loss episodes, cap of
    ``max_frames_test``. Observations are (size, size, 3) uint8 RGB; ``info`` has ``lives`` and ``frames``
    (emulator frames since the last real reset, no-ops included). A first ``reset()`` without a seed is the
    same as ``reset(seed=seed)``.
    """
    _check(game)
    _import_ale()
    # ALE's own frame cap is disabled (0): FrameLimit applies the configured one.
    base = gymnasium.make(f"{game}NoFrameskip-v4", max_num_frames_per_episode=0, disable_env_checker=True)
    base.unwrapped.seed_game(seed)  # what reset(seed=seed) does, so that a plain first reset is seeded
    base.unwrapped.load_game()
    base.action_space.seed(seed)
    return wrap(base, config, train)


def wrap(env: gymnasium.Env, config: EnvConfig, train: bool) -> gymnasium.Env:
    """IRIS's train or test wrappers around a frame-skip-1 env (see :func:`make_env`)."""
    if config.resize_each_frame:
        env = ResizeBilinear(env, config.size)
    env = FrameLimit(env, config.max_frames_train if train else config.max_frames_test)
    noop_max = config.noop_max if train else 1
    if noop_max > 0:
        env = NoopReset(env, noop_max)
    env = MaxAndSkip(env, config.frame_skip)
    if not config.resize_each_frame:
        env = Resize(env, config.size)
    if train and config.done_on_life_loss:
        env = EpisodicLife(env)
    return env


def action_names(game: str) -> list[str]:
    """Names of the game's minimal action set, in action order (``["NOOP", "FIRE", ...]``)."""
    return list(_action_names(_check(game)))


@functools.cache
def _action_names(game: str) -> tuple[str, ...]:
    _import_ale()
    env = gymnasium.make(f"{game}NoFrameskip-v4", disable_env_checker=True)
    try:
        return tuple(env.unwrapped.get_action_meanings())
    finally:
        env.close()


def num_actions(game: str) -> int:
    """Size of the game's minimal action set (Breakout 4, Pong 6)."""
    return len(action_names(game))
