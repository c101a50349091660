"""The built-in env suite ``atari``: the 26 Atari 100k games, registered by the plugin ``atari``.

This module is imported at every start, so it stays light: gymnasium and the ALE load in
:mod:`wmbench.envs.atari` when an env is built.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from wmbench.config import EnvConfig
from wmbench.envs.atari_games import GAMES
from wmbench.hookspecs import hookimpl


def make_env(game: str, config: EnvConfig, train: bool, seed: int):
    from wmbench.envs import atari

    return atari.make_env(game, config, train, seed)


def num_actions(game: str) -> int:
    from wmbench.envs import atari

    return atari.num_actions(game)


@functools.cache
def _scores(kind: str) -> dict[str, float]:
    text = (resources.files("wmbench") / "data" / "baselines" / f"{kind}.json").read_text()
    return {game: runs[0] for game, runs in json.loads(text).items()}


def reference_scores(game: str) -> tuple[float, float]:
    """The random and human scores IRIS normalises with."""
    return _scores("RANDOM")[game], _scores("HUMAN")[game]


@hookimpl
def wmbench_register_env_suites(register):
    register(
        "atari",
        GAMES,
        make_env,
        num_actions,
        reference_scores=reference_scores,
        summary="Atari 100k through gymnasium + ale-py, with IRIS's wrappers",
    )
