"""The built-in env suite ``toy``: Catcher (:mod:`wmbench.envs.toy`), a game an agent should master in minutes.

Its reference scores are the uniformly random policy's expected return and the optimal return, so the
normalised score in ``summary.json`` (``(s - random) / (optimal - random)``) reads 0 for random play and 1 for
optimal play. Light at import: gymnasium loads when an env is built.
"""

from __future__ import annotations

from wmbench.config import EnvConfig
from wmbench.hookspecs import hookimpl

GAMES = ("Catcher",)
GRID, BALLS = 4, 10  # as wmbench.envs.toy, which this module does not import


def make_env(game: str, config: EnvConfig, train: bool, seed: int):
    from wmbench.envs import toy

    return toy.Catcher(config.size, seed)


def random_return() -> float:
    """The expected return of a policy blind to the balls, uniformly random actions included: each ball's column is
    uniform and independent of the paddle, so the paddle is under it with probability 1 / 4."""
    return BALLS * (2 / GRID - 1)


def reference_scores(game: str) -> tuple[float, float]:
    """``(random, optimal)``: the optimal return (every ball caught) stands where Atari has the human score."""
    return random_return(), float(BALLS)


@hookimpl
def wmbench_register_env_suites(register):
    register(
        "toy",
        GAMES,
        make_env,
        lambda game: 3,
        reference_scores=reference_scores,
        summary=f"Catcher: {BALLS} balls to catch on a 4x4 grid (reference scores: random and optimal play)",
    )
