"""Env suites: families of games a plugin registers (``wmbench_register_env_suites``); Atari is the built-in one.

Game names are bare (``--game Pong``) and unique across installed suites. What the trainer, evaluation and
reports use is a :class:`Game`, looked up with ``registry.game(name)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmbench.errors import WmbenchError

if TYPE_CHECKING:
    import gymnasium

    from wmbench.config import EnvConfig


@dataclass(frozen=True)
class EnvSuite:
    """A family of games and how to build them (see :func:`wmbench.hookspecs.wmbench_register_env_suites`)."""

    name: str
    games: tuple[str, ...]
    make_env: Callable[[str, EnvConfig, bool, int], gymnasium.Env]
    """``(game, config, train, seed)``: a train (``train=True``) or test env seeded with ``seed``."""
    num_actions: Callable[[str], int]
    """The size of the game's discrete action space."""
    reference_scores: Callable[[str], tuple[float, float] | None] | None = None
    """``(random, human)`` scores of a game for human normalisation, or None when there are none."""
    summary: str = ""
    plugin: str = ""


@dataclass(frozen=True)
class Game:
    """One game of a registered suite, with the suite's contract checked where it is used."""

    name: str
    suite: EnvSuite

    def _broken(self, problem: str) -> WmbenchError:
        return WmbenchError(
            f"env suite {self.suite.name!r} of plugin {self.suite.plugin!r}: game {self.name!r} {problem}"
        )

    def make_env(self, config: EnvConfig, train: bool, seed: int) -> gymnasium.Env:
        """The suite's env; its observations must be ``(size, size, 3)`` uint8 RGB."""
        env = self.suite.make_env(self.name, config, train, seed)
        space = env.observation_space
        if space.shape != (config.size, config.size, 3) or space.dtype != "uint8":
            raise self._broken(f"gives observations {space}, not uint8 RGB of shape {(config.size, config.size, 3)}")
        return env

    def num_actions(self) -> int:
        n = self.suite.num_actions(self.name)
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise self._broken(f"has {n!r} actions, not a positive integer")
        return n

    def reference_scores(self) -> tuple[float, float] | None:
        """The game's ``(random, human)`` scores, or None when its suite has none."""
        return self.suite.reference_scores(self.name) if self.suite.reference_scores else None

    def human_normalised(self, score: float) -> float:
        """``(score - random) / (human - random)``, or NaN when the suite has no reference scores for the game."""
        scores = self.reference_scores()
        if scores is None:
            return math.nan
        random, human = scores
        return (score - random) / (human - random)
