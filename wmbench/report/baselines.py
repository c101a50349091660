"""Published Atari 100k scores shipped with the package (``wmbench/data/baselines/``).

Each file maps the 26 games to a list of final scores, one per run: ``{"Alien": [score, ...], ...}``.
``results/baselines/`` in the repository holds the same files, and a README saying where each came from.
"""

from __future__ import annotations

import functools
import json
from importlib import resources

from wmbench.errors import unknown

#: The normalisation references, not methods.
REFERENCES = ("HUMAN", "RANDOM")

#: Baselines ``wmbench compare`` shows unless told otherwise.
DEFAULT = ("IRIS", "DIAMOND", "DeltaIRIS", "STORM")


def _folder():
    return resources.files("wmbench") / "data" / "baselines"


def available() -> list[str]:
    """Names of the published methods (file stems), HUMAN and RANDOM excluded."""
    names = (p.name[: -len(".json")] for p in _folder().iterdir() if p.name.endswith(".json"))
    return sorted((n for n in names if n not in REFERENCES), key=str.lower)


def check(name: str) -> str:
    """The canonical spelling of a published method's name (case-insensitive), or a WmbenchError."""
    names = available()
    by_lower = {n.lower(): n for n in names}
    if name.lower() not in by_lower:
        raise unknown("published baseline", name, names)
    return by_lower[name.lower()]


@functools.cache
def _read(name: str) -> dict[str, tuple[float, ...]]:
    text = (_folder() / f"{name}.json").read_text()
    return {game: tuple(float(s) for s in runs) for game, runs in json.loads(text).items()}


def load(name: str) -> dict[str, list[float]]:
    """Per-game raw scores of one published method, one entry per run."""
    return {game: list(runs) for game, runs in _read(check(name)).items()}


def human_scores() -> dict[str, float]:
    """Human reference score per game."""
    return {game: runs[0] for game, runs in _read("HUMAN").items()}


def random_scores() -> dict[str, float]:
    """Random-policy reference score per game."""
    return {game: runs[0] for game, runs in _read("RANDOM").items()}


def game_order(games) -> list[str]:
    """The games, Atari 100k's in the published order first, then those of other env suites by name."""
    games, atari = set(games), list(human_scores())
    return [g for g in atari if g in games] + sorted(games - set(atari))


def normalised(name: str) -> dict[str, list[float]]:
    """Per-game human-normalised scores of one published method."""
    h, r = human_scores(), random_scores()
    return {game: [(s - r[game]) / (h[game] - r[game]) for s in runs] for game, runs in load(name).items()}
