"""Catcher, a small deterministic pixel game for checking that the agent learns (the suite: :mod:`toy_suite`).

Balls fall, one at a time, down a 4x4 grid, one row a step; the paddle in the bottom row moves left, stays or moves
right (actions 0, 1, 2). A ball appears in a random column of the top row and reaches the bottom row 3 steps later;
the step after that scores +1 if the paddle is under it, else -1 (so the reward can be read off the frame the step
starts from), and the next ball appears in the top row of the frame that step returns. An episode is ``BALLS`` balls
(4 steps each), so ends are rare, as in an Atari game: the actor-critic's imagined rollouts then rarely run past an
end, where the world model has never been trained and its predictions mean nothing. (The frames do not show how
many balls have fallen: the world model learns an end as a 1-in-``BALLS`` chance at each score.) Every ball can be caught (the
paddle needs at most 3 moves and has 3 between a ball's appearing and its reaching the bottom row), so the optimal
return is ``BALLS``.

A cell is size / 4 pixels wide: 8 at 32x32, the patch of one token of a tokenizer that downsamples 8 times (on an
8x8 grid of 4-pixel cells, the smoke and fast VQ autoencoders stayed blind to the ball for hundreds of steps). The
balls' columns are drawn from the env's ``np_random``: given the seed and the actions, everything is deterministic.
"""

from __future__ import annotations

import gymnasium
import numpy as np

GRID = 4
BALLS = 10
BALL, PADDLE = (255, 255, 255), (0, 200, 255)


class Catcher(gymnasium.Env):
    """Observations are ``(size, size, 3)`` uint8 RGB, ``size`` a multiple of 4; a first plain reset is seeded."""

    action_space = gymnasium.spaces.Discrete(3)

    def __init__(self, size: int, seed: int):
        if size % GRID:
            raise ValueError(f"Catcher frames are a multiple of {GRID} pixels wide, got {size}")
        self.size, self.first_seed = size, seed
        self.observation_space = gymnasium.spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.row = self.column = self.paddle = self.balls = 0

    def _obs(self) -> np.ndarray:
        grid = np.zeros((GRID, GRID, 3), np.uint8)
        grid[GRID - 1, self.paddle] = PADDLE
        grid[self.row, self.column] = BALL
        cell = self.size // GRID
        return grid.repeat(cell, 0).repeat(cell, 1)

    def _drop(self) -> None:
        self.row, self.column = 0, int(self.np_random.integers(GRID))

    def reset(self, *, seed: int | None = None, options=None):
        super().reset(seed=self.first_seed if seed is None else seed)
        self.first_seed = None
        self.paddle, self.balls = GRID // 2, 0
        self._drop()
        return self._obs(), {}

    def step(self, action):
        reward = 0.0
        if self.row == GRID - 1:  # the ball lies in the bottom row: on the paddle (drawn over it) or beside it
            reward = 1.0 if self.column == self.paddle else -1.0
            self.balls += 1
            self._drop()
        else:
            self.row += 1
        self.paddle = int(np.clip(self.paddle + int(action) - 1, 0, GRID - 1))
        return self._obs(), reward, self.balls == BALLS, False, {}
