"""Human-normalised scores and rliable's aggregate metrics with stratified-bootstrap intervals.

A score matrix is ``[runs x games]`` of human-normalised scores, the shape rliable expects. rliable's
bootstrap draws from numpy's global random generator (``np.random.choice``), whatever ``random_state`` is
given, so every function here seeds that generator for the call and restores its state afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import NamedTuple

import numpy as np

#: Bootstrap replications used unless the caller asks otherwise (rliable's own default is 50,000 for
#: intervals; 2,000 reproduces the published intervals to about 0.003 on Atari 100k in a few seconds).
REPS = 2000

#: The four aggregates of rliable's Atari 100k figure, in its order.
AGGREGATES: tuple[str, ...] = ("IQM", "Median", "Mean", "Optimality gap")


class Interval(NamedTuple):
    """A point estimate and its 95% confidence interval."""

    point: float
    low: float
    high: float


def score_matrix(scores: Mapping[str, Sequence[float]], games: Sequence[str]) -> np.ndarray:
    """Stack per-game run scores into ``[runs x games]``, keeping the first ``min(len)`` runs of each game.

    rliable needs a rectangle; a game with more runs than another is cut to the smallest count.
    """
    missing = [g for g in games if not len(scores.get(g, ()))]
    if missing:
        raise ValueError(f"no scores for {', '.join(missing)}")
    runs = min(len(scores[g]) for g in games)
    return np.array([[float(scores[g][i]) for g in games] for i in range(runs)], dtype=np.float64).reshape(
        runs, len(games)
    )


def iqm(matrix: np.ndarray) -> float:
    """Interquartile mean over all runs and games (25% trimmed mean)."""
    from rliable import metrics

    return float(metrics.aggregate_iqm(matrix))


def median(matrix: np.ndarray) -> float:
    """Median over games of the per-game mean over runs."""
    from rliable import metrics

    return float(metrics.aggregate_median(matrix))


def mean(matrix: np.ndarray) -> float:
    """Mean over games of the per-game mean over runs."""
    from rliable import metrics

    return float(metrics.aggregate_mean(matrix))


def optimality_gap(matrix: np.ndarray, gamma: float = 1.0) -> float:
    """How far scores fall short of ``gamma`` (human level), scores above it counted as ``gamma``."""
    from rliable import metrics

    return float(metrics.aggregate_optimality_gap(matrix, gamma))


def all_aggregates(matrix: np.ndarray) -> np.ndarray:
    """IQM, median, mean and optimality gap as one array (the function rliable bootstraps)."""
    return np.array([iqm(matrix), median(matrix), mean(matrix), optimality_gap(matrix)])


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's global generator (which rliable's bootstrap uses) and restore it afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(state)


def _intervals(
    score_dict: Mapping[str, np.ndarray | list[np.ndarray]], func: Callable[..., np.ndarray], reps: int, seed: int
) -> dict[str, list[Interval]]:
    """rliable's ``get_interval_estimates`` per key, each seeded alike (a method's interval does not depend
    on which other methods are in the report)."""
    from rliable import library

    out = {}
    for key, scores in score_dict.items():
        with seeded(seed):
            points, cis = library.get_interval_estimates({key: scores}, func, reps=reps)
        triples = zip(np.atleast_1d(points[key]), cis[key][0], cis[key][1])
        out[key] = [Interval(float(p), float(lo), float(hi)) for p, lo, hi in triples]
    return out


def aggregate_intervals(
    matrices: Mapping[str, np.ndarray], reps: int = REPS, seed: int = 0
) -> dict[str, dict[str, Interval]]:
    """For each method, IQM, median, mean and optimality gap with stratified-bootstrap 95% intervals."""
    out = _intervals(matrices, all_aggregates, reps, seed)
    return {k: dict(zip(AGGREGATES, v)) for k, v in out.items()}


def improvement(x: np.ndarray, y: np.ndarray) -> float:
    """rliable's ``metrics.probability_of_improvement`` without a Mann-Whitney call per game.

    Per game, the Mann-Whitney U statistic over ``n_x * n_y``: the share of (run of X, run of Y) pairs
    where X scores higher, ties counting one half; then the mean over games. Identical to rliable's value
    (its special case of identical columns gives 0.5 here too) and thousands of times cheaper to bootstrap.
    """
    pairs_x, pairs_y = x[:, None, :], y[None, :, :]
    per_game = (pairs_x > pairs_y).mean(axis=(0, 1)) + 0.5 * (pairs_x == pairs_y).mean(axis=(0, 1))
    return float(per_game.mean())


def probability_of_improvement(x: np.ndarray, y: np.ndarray, reps: int = REPS, seed: int = 0) -> Interval:
    """P(X > Y): the chance a run of X beats a run of Y on a game, averaged over games, with a 95% interval.

    ``x`` and ``y`` are ``[runs x games]`` over the same games; their run counts may differ. The interval
    is rliable's stratified bootstrap, resampling the runs of X and of Y independently.
    """

    def func(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.array([improvement(a, b)])

    return _intervals({"poi": [x, y]}, func, reps, seed)["poi"][0]


def paired_difference(diffs: Mapping[str, Sequence[float]], reps: int = REPS, seed: int = 0) -> Interval:
    """The mean over games of each game's mean paired difference (one per seed), with a 95% percentile interval from
    a bootstrap that resamples the seeds of each game (stratified over games). With one seed per game there is no
    spread to resample: the interval is the point. Few seeds give few distinct resamples (3 seeds: 10 per game),
    so the interval is coarse."""
    rng = np.random.default_rng(seed)
    point = float(np.mean([np.mean(v) for v in diffs.values()]))
    boot = np.zeros(reps)
    for values in diffs.values():
        d = np.asarray(values, dtype=np.float64)
        boot += d[rng.integers(0, len(d), (reps, len(d)))].mean(axis=1)
    boot /= len(diffs)
    low, high = np.percentile(boot, [2.5, 97.5])
    return Interval(point, float(low), float(high))


def run_score_distribution(matrix: np.ndarray, taus: np.ndarray) -> np.ndarray:
    """The fraction of all scores above each tau (rliable's ``score_distributions``, vectorised)."""
    return (matrix.reshape(-1, 1) > np.asarray(taus).reshape(1, -1)).mean(axis=0)


def performance_profiles(
    matrices: Mapping[str, np.ndarray], taus: np.ndarray, reps: int = REPS, seed: int = 0
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Run-score distributions: for each method, the fraction of runs above each tau, with 95% bands.

    Returns ``{method: (profile, low, high)}``, each the length of ``taus``.
    """
    from rliable import library

    out = {}
    for key, matrix in matrices.items():
        with seeded(seed):
            profiles, cis = library.create_performance_profile(
                {key: matrix}, taus, custom_profile_func=run_score_distribution, reps=reps
            )
        out[key] = (np.asarray(profiles[key]), np.asarray(cis[key][0]), np.asarray(cis[key][1]))
    return out
