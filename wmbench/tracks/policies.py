"""The behaviour policies of the world-model track's datasets: what acts in the env while transitions are recorded.

- ``random``: a uniformly random action every step.
- ``sticky``: a random action held on with probability :data:`STICKY` each step (runs of 5 steps on average), so
  that the agent travels across the screen as uniform random play rarely does.
- ``scripted``: a per-game script reading the emulator's RAM (the paddle follows the ball in Pong and Breakout,
  the chicken crosses in Freeway), epsilon-greedy with :data:`SCRIPT_EPSILON`; it reaches states and rewards that
  random play seldom sees (Pong's points, Breakout's broken bricks, Freeway's crossings).
- ``greedy``: the same script with :data:`GREEDY_EPSILON`, a policy outside the training mix whose episodes make the
  out-of-distribution held-out set (longer rallies, deeper into the game).

RAM addresses are those of the AtariARI annotations (Anand et al., 2019), checked here by the reward rates they
give: over 3,000 steps, Pong's script scores on 0.4% of steps (uniform random play 0.08%), Breakout's on 2.3%
(0.65%), Freeway's on 1%.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from wmbench.errors import WmbenchError

STICKY = 0.8
SCRIPT_EPSILON = 0.5
GREEDY_EPSILON = 0.03
MIX = ("random", "sticky", "scripted")
"""Policies a training mix may use (``greedy`` is kept for the out-of-distribution set)."""


def _pong(ram: np.ndarray) -> int:
    """RIGHT (2) moves the paddle up, LEFT (3) down; RAM 51 is the paddle's y, 54 the ball's (0: no ball)."""
    if ram[54] == 0:
        return 0
    return 3 if int(ram[51]) + 10 < int(ram[54]) else 2


def _breakout(ram: np.ndarray) -> int:
    """FIRE (1) launches a ball; RAM 72 is the paddle's x, 99 and 101 the ball's x and y (y 0: no ball)."""
    if ram[101] == 0:
        return 1
    return 2 if int(ram[72]) + 10 < int(ram[99]) else 3


def _freeway(ram: np.ndarray) -> int:
    """UP (1), always: the chicken crosses and scores."""
    return 1


SCRIPTS: dict[str, Callable[[np.ndarray], int]] = {"Pong": _pong, "Breakout": _breakout, "Freeway": _freeway}
"""Games with a script, each a function of the emulator's RAM to an action of the game's minimal action set."""


def check(policies: tuple[str, ...], game: str, where: str) -> None:
    """Refuse an unknown policy, a repeated one, or a script for a game that has none."""
    unknown = [p for p in policies if p not in MIX]
    if not policies or unknown or len(set(policies)) != len(policies):
        raise WmbenchError(f"{where} must be distinct policies of {', '.join(MIX)}, got {list(policies)}")
    if "scripted" in policies and game not in SCRIPTS:
        raise WmbenchError(
            f"{where}: no scripted policy for {game} (games with one: {', '.join(SCRIPTS)}); leave out 'scripted'"
        )


class Policy:
    """One policy acting in one env; ``act(rng)`` after every step reads the env's state as it needs."""

    def __init__(self, name: str, env, game: str):
        self.name, self.env, self.num_actions = name, env, int(env.action_space.n)
        self.script = SCRIPTS.get(game) if name in ("scripted", "greedy") else None
        self.epsilon = {"scripted": SCRIPT_EPSILON, "greedy": GREEDY_EPSILON}.get(name, 1.0)
        self.previous = 0

    def act(self, rng: np.random.Generator) -> int:
        if self.name == "sticky" and rng.random() < STICKY:
            return self.previous
        if self.script is not None and rng.random() >= self.epsilon:
            action = self.script(self.env.unwrapped.ale.getRAM())
        else:
            action = int(rng.integers(self.num_actions))
        self.previous = action
        return action
