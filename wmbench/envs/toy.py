"""Catcher, a small deterministic pixel game for checking that the agent learns (the suite: :mod:`toy_suite`).

A ball starts in a random column of the top row of a 4x4 grid and falls one row a step; the paddle starts in
column 2 of the bottom row and moves left, stays or moves right (actions 0, 1, 2). When the ball reaches the
bottom row (after 3 steps) the episode ends with +1 if the paddle is under it, else -1. Every ball can be caught,
so the optimal return is 1. A cell is size / 4 pixels wide: 8 at 32x32, the patch of one token of a tokenizer
that downsamples 8 times (on an 8x8 grid of 4-pixel cells, the smoke and fast VQ autoencoders stayed blind to the
ball for hundreds of steps). The ball's column is drawn from the env's ``np_random``: given the seed and the
actions, everything is deterministic.
"""

from __future__ import annotations

import gymnasium
import numpy as np

GRID = 4
BALL, PADDLE = (255, 255, 255), (0, 200, 255)


class Catcher(gymnasium.Env):
    """Observations are ``(size, size, 3)`` uint8 RGB, ``size`` a multiple of 8; a first plain reset is seeded."""

    action_space = gymnasium.spaces.Discrete(3)

    def __init__(self, size: int, seed: int):
        if size % GRID:
            raise ValueError(f"Catcher frames are a multiple of {GRID} pixels wide, got {size}")
        self.size, self.first_seed = size, seed
        self.observation_space = gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.row = self.column = self.paddle = 0

    def _obs(self) -> np.ndarray:
        grid = np.zeros((GRID, GRID, 3), np.uint8)
        grid[GRID - 1, self.paddle] = PADDLE
        grid[self.row, self.column] = BALL
        cell = self.size // GRID
        return grid.repeat(cell, 0).repeat(cell, 1)

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=self.first_seed if seed is None else seed)
        self.first_seed = None
        self.row, self.column, self.paddle = 0, int(self.np_random.integers(GRID)), GRID // 2
        return self._obs(), {}

    def step(self, action):
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, GRID - 1))
        self.row += 1
        done = self.row == GRID - 1
        reward = (1.0 if self.column == self.paddle else -1.0) if done else 0.0
        return self._obs(), reward, done, False, {}
