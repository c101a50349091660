"""The report's figures (matplotlib through seaborn's styles), each returned as a figure for the writer."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from wmbench.report import baselines as published
from wmbench.report import stats
from wmbench.report.agent import PUBLISHED


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def png(fig) -> bytes:
    """The figure as PNG bytes; closes it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    _pyplot().close(fig)
    return buffer.getvalue()


def palette(methods: Sequence[str]) -> dict[str, Any]:
    """One colour per method, the same in every plot: tab10 for runs, Dark2 for published baselines
    (which are also dashed or hatched), a spread of hues when there are more than those hold."""
    import seaborn as sns

    def colours(names: list[str], name: str, size: int) -> dict[str, Any]:
        hues = sns.color_palette(name, len(names)) if len(names) <= size else sns.color_palette("husl", len(names))
        return dict(zip(names, hues))

    ours = [m for m in methods if not m.endswith(PUBLISHED)]
    theirs = [m for m in methods if m.endswith(PUBLISHED)]
    return {**colours(ours, "tab10", 10), **colours(theirs, "Dark2", 8)}


def plot_aggregates(table, colours: dict[str, Any]):
    """rliable's four panels: a bar per method over its 95% interval, a tick at the point estimate.

    Published baselines are hatched; a method with one run per game has only the tick.
    """
    import seaborn as sns

    plt = _pyplot()
    methods = list(table["method"])
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(1, 4, figsize=(15, 0.5 * len(methods) + 1.5), sharey=True)
        for ax, name in zip(axes, stats.AGGREGATES):
            key = name.lower().replace(" ", "_")
            values = []
            for i, row in enumerate(table.itertuples(index=False)):
                point, low, high = getattr(row, key), getattr(row, f"{key}_low"), getattr(row, f"{key}_high")
                published_row = row.source == "published"
                if not math.isnan(low):
                    ax.barh(i, max(high - low, 1e-9), left=low, height=0.6, color=colours[row.method], alpha=0.55 if published_row else 0.85,
                            hatch="//" if published_row else None, edgecolor=colours[row.method], lw=0)  # fmt: skip
                    values += [low, high]
                ax.plot([point, point], [i - 0.34, i + 0.34], color="black", lw=2)
                values.append(point)
            lo, hi = min(0.0, *values), max(values)
            pad = 0.05 * (hi - lo or 1.0)
            ax.set_xlim(lo - pad, hi + pad)
            ax.set_title(name + (" (lower is better)" if name == "Optimality gap" else ""), fontsize=12)
            ax.set_xlabel("human-normalised score")
            ax.grid(axis="y", visible=False)
        axes[0].set_yticks(range(len(methods)), methods, fontsize=11)
        axes[0].set_ylim(len(methods) - 0.5, -0.5)
        title = "Aggregate human-normalised scores (tick: point estimate; bar: 95% stratified-bootstrap interval)"
        fig.suptitle(title, fontsize=12)
        fig.tight_layout()
    return fig


def plot_improvement(table):
    """P(X > Y) per pair as an interval, with 0.5 (no difference) marked."""
    import seaborn as sns

    plt = _pyplot()
    done = table.dropna(subset=["P(X > Y)"]).reset_index(drop=True)
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(6.5, 0.45 * len(done) + 1.2))
        for i, row in done.iterrows():
            ax.barh(i, row["high"] - row["low"], left=row["low"], height=0.6, color="tab:blue", alpha=0.7)
            ax.plot([row["P(X > Y)"]] * 2, [i - 0.3, i + 0.3], color="black", lw=1.5)
        ax.axvline(0.5, color="grey", ls="--", lw=1)
        ax.set_yticks(range(len(done)), [f"P({x} > {y})" for x, y in zip(done["X"], done["Y"])])
        ax.invert_yaxis()
        ax.set_xlim(-0.02, 1.02)
        ax.set_xlabel("probability of improvement")
        ax.set_title("Probability of improvement, 95% intervals")
        fig.tight_layout()
    return fig


def profile_taus(matrices: dict[str, np.ndarray]) -> np.ndarray:
    """Thresholds for performance profiles: fine steps on [0, 1] (where most Atari 100k scores lie), then
    coarser ones up to the largest score (at most 8, as rliable's Atari 100k figure)."""
    top = float(np.clip(max(float(np.max(m)) for m in matrices.values()), 1.0, 8.0))
    return np.unique(np.concatenate([np.linspace(0.0, 1.0, 101), np.linspace(1.0, top, 141)]))


def plot_profiles(
    profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], taus: np.ndarray, colours: dict[str, Any]
):
    """Performance profiles: fraction of runs above each human-normalised score, with 95% bands.

    The x axis is linear up to 1 (human level) and logarithmic above, so that both weak and strong
    methods are readable; published baselines are dashed.
    """
    import seaborn as sns

    plt = _pyplot()
    with sns.axes_style("whitegrid"):
        fig, ax = plt.subplots(figsize=(9.5, 4.8))
        for method, (profile, low, high) in profiles.items():
            dashed = method.endswith(PUBLISHED)
            ax.plot(taus, profile, color=colours[method], lw=2, ls="--" if dashed else "-", label=method)
            ax.fill_between(taus, low, high, color=colours[method], alpha=0.15, lw=0)
        ax.set_xscale("symlog", linthresh=1.0, linscale=1.5)
        ticks = [t for t in (0, 0.25, 0.5, 0.75, 1, 2, 4, 8) if t <= taus[-1]]
        ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.axvline(1.0, color="grey", lw=1, ls=":")
        ax.set_xlim(taus[0], taus[-1])
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("human-normalised score τ (linear to 1, logarithmic above)")
        ax.set_ylabel("fraction of runs with score > τ")
        ax.set_title("Performance profiles (run-score distributions), 95% bands")
        ax.legend(fontsize=9, frameon=False, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        fig.tight_layout()
    return fig


def plot_curves(summary, colours: dict[str, Any], ylabel: str, title: str):
    """One panel per game: the mean over seeds per method against environment steps, ± one std.

    ``summary`` is :func:`wmbench.report.agent.curve_summary`'s table (drawn directly: seaborn's own aggregation is slow
    with 26 panels).
    """
    import seaborn as sns

    plt = _pyplot()
    games = published.game_order(summary["game"])
    methods = list(dict.fromkeys(summary["method"]))
    cols = min(4, len(games))
    rows = math.ceil(len(games) / cols)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(
            rows, cols, figsize=(3.8 * cols + 1.6, 2.7 * rows + 0.9), squeeze=False, layout="constrained"
        )
        for ax, game in zip(axes.flat, games):
            for method in methods:
                c = summary[(summary["game"] == game) & (summary["method"] == method)].sort_values("env_steps")
                if not len(c):
                    continue
                x, mean, std = (
                    c["env_steps"].to_numpy(float),
                    c["mean"].to_numpy(float),
                    c["std"].fillna(0).to_numpy(float),
                )
                ax.plot(x, mean, color=colours[method], lw=1.8, marker="o", ms=3, label=method)
                ax.fill_between(x, mean - std, mean + std, color=colours[method], alpha=0.2, lw=0)
            ax.set_title(game, fontsize=11)
            ax.tick_params(labelsize=9)
            ax.xaxis.set_major_formatter(
                plt.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}")
            )
        for ax in axes.flat[len(games) :]:
            ax.set_visible(False)
        for ax in axes[-1]:
            ax.set_xlabel("environment steps")
        for ax in axes[:, 0]:
            ax.set_ylabel(ylabel)
        handles = [plt.Line2D([], [], color=colours[m], lw=2, marker="o", ms=4) for m in methods]
        # The title rides on the legend: constrained layout stacks a suptitle and an outside legend on top of each other.
        fig.legend(handles, methods, loc="outside upper center", ncol=min(len(methods), 6), frameon=False, fontsize=10,
                   title=title, title_fontsize=12)  # fmt: skip
    return fig
