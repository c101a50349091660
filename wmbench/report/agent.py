"""The agent track's tables: runs, per-game scores beside published baselines, aggregates with intervals,
probability of improvement, curves over training, and throughput."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from wmbench import markdown as md
from wmbench.plugins import registry
from wmbench.report import baselines as published
from wmbench.report import stats
from wmbench.report.runs import Run, method_labels

WM_LOSS = "loss/world_model/total"
IMAGINED_FPS = "throughput/imagined_frames_per_s"
PUBLISHED = " (published)"
#: Optional columns of the runs table that must be numbers.
NUMERIC = (
    "epochs", "env_steps", "wall_time_s", "imagined_frames_per_s", "peak_cpu_rss_mb", "peak_cuda_mb",
    "world_model_params", "world_model_trainable", "tokenizer_params", "actor_critic_params",
)  # fmt: skip


def _last(metrics: list[dict[str, Any]], key: str) -> float:
    values = [m[key] for m in metrics if isinstance(m.get(key), (int, float))]
    return float(values[-1]) if values else math.nan


def runs_table(runs: Sequence[Run]):
    """One row per run: what it was, its final score, and its costs."""
    import pandas as pd

    rows = []
    for label, r in zip(method_labels(runs), runs):
        s = r.summary
        params = s.get("parameters") or {}
        memory = s.get("peak_memory") or {}
        game = s["game"]
        rows.append(
            {
                "method": label,
                "backbone": s["backbone"],
                "tokenizer": s.get("tokenizer"),
                "preset": s.get("preset"),
                "game": game,
                "seed": s["seed"],
                "epochs": s.get("epochs"),
                "env_steps": s.get("env_steps"),
                "eval_episodes": len(s.get("eval_returns") or []),
                "eval_return_mean": float(s["eval_return_mean"]),
                "human_normalised_score": registry().game(game).human_normalised(float(s["eval_return_mean"])),
                "score_caveats": "; ".join(s.get("score_caveats") or []),
                "paper_departures": "; ".join(s.get("paper_departures") or []),
                "wall_time_s": s.get("wall_time_s"),
                "imagined_frames_per_s": _last(r.metrics, IMAGINED_FPS),
                "peak_cpu_rss_mb": memory.get("cpu_rss_mb"),
                "peak_cuda_mb": memory.get("cuda_mb"),
                "world_model_params": (params.get("world_model") or {}).get("total"),
                "world_model_trainable": (params.get("world_model") or {}).get("trainable"),
                "tokenizer_params": (params.get("tokenizer") or {}).get("total"),
                "actor_critic_params": (params.get("actor_critic") or {}).get("total"),
                "device": s.get("device"),
                "bf16": s.get("bf16"),
                "path": str(r.path),
            }
        )
    df = pd.DataFrame(rows)
    order = {g: i for i, g in enumerate(published.game_order(df["game"]))}
    for col in NUMERIC:  # optional fields: a missing or odd value becomes NaN, not a crash later
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["_game"] = df["game"].map(order)
    return df.sort_values(["method", "_game", "seed"], kind="stable").drop(columns="_game").reset_index(drop=True)


def per_game_table(df, methods: Sequence[str], baseline_names: Sequence[str]):
    """Per game (of every env suite): the reference random and human scores (NaN where the suite has none), mean,
    std and count over seeds per method, and published means (NaN for a game they did not play)."""
    import pandas as pd

    games = published.game_order(df["game"])
    references = [registry().game(g).reference_scores() or (math.nan, math.nan) for g in games]
    table = pd.DataFrame({"game": games, "random": [r for r, _ in references], "human": [h for _, h in references]})
    for m in methods:
        grouped = df[df["method"] == m].groupby("game")["eval_return_mean"]
        table[f"{m} mean"] = table["game"].map(grouped.mean())
        table[f"{m} std"] = table["game"].map(grouped.std(ddof=1))
        table[f"{m} n"] = table["game"].map(grouped.count()).fillna(0).astype(int)
    for b in baseline_names:
        scores = published.load(b)
        table[f"{b}{PUBLISHED} mean"] = [float(np.mean(scores[g])) if g in scores else math.nan for g in games]
        table[f"{b}{PUBLISHED} std"] = [
            float(np.std(scores[g], ddof=1)) if len(scores.get(g, ())) > 1 else math.nan for g in games
        ]
        table[f"{b}{PUBLISHED} n"] = [len(scores.get(g, ())) for g in games]
    return table


def per_game_markdown(table, methods: Sequence[str], baseline_names: Sequence[str]):
    """The per-game table for reading: ``mean ± std (n)`` per method, the published mean per baseline."""
    import pandas as pd

    shown = pd.DataFrame(
        {"game": table["game"], "random": table["random"].map(md.score), "human": table["human"].map(md.score)}
    )
    for m in methods:
        shown[m] = [md.mean_std(a, b, n) for a, b, n in zip(table[f"{m} mean"], table[f"{m} std"], table[f"{m} n"])]
    for b in baseline_names:
        shown[f"{b}{PUBLISHED}"] = table[f"{b}{PUBLISHED} mean"].map(md.score)
    return shown


@dataclass
class Scores:
    """Human-normalised ``[runs x games]`` matrices per method, over the games every backbone covers."""

    games: list[str]
    matrices: dict[str, np.ndarray]
    kinds: dict[str, str]
    notes: list[str]


def score_matrices(df, methods: Sequence[str], baseline_names: Sequence[str]) -> Scores:
    """Matrices of the runs' and the baselines' human-normalised scores over the games all methods ran (games without
    reference scores have no normalised score and are left out, and so are games the published baselines lack)."""
    human = published.human_scores()
    notes = []
    if baseline_names and "score_caveats" in df and (df["score_caveats"] != "").any():
        cut = df[df["score_caveats"] != ""]
        notes.append(
            f"{len(cut)} run(s) left out of the aggregates beside published rows, their returns not being "
            f"scores: {'; '.join(sorted(set(cut['score_caveats'])))}."
        )
        df = df[df["score_caveats"] == ""]
    covered = [set(df.loc[df["method"] == m, "game"]) for m in methods]
    normalisable = set(df.loc[df["human_normalised_score"].notna(), "game"])
    unscored = sorted(set(df["game"]) - normalisable)
    if unscored:
        notes.append(f"{', '.join(unscored)}: no reference scores (its env suite gives none), so no normalised "
                     "score and no place in the aggregates.")  # fmt: skip
    games = [g for g in published.game_order(normalisable) if all(g in c for c in covered)]
    unpublished = [g for g in games if g not in human] if baseline_names else []
    if unpublished:
        notes.append(f"{', '.join(unpublished)} left out of the aggregates beside the published baselines, which have "
                     "no scores for them (compare with --baseline none to aggregate them).")  # fmt: skip
        games = [g for g in games if g in human]
    if any(g in human for g in games) and len(games) < len(human):
        notes.append(
            f"Aggregates are over the {len(games)} game(s) every backbone ran ({', '.join(games) or 'none'}), "
            f"not the 26 of Atari 100k; published baselines are restricted to the same games, so their figures "
            f"differ from the published 26-game aggregates."
        )
    for m, c in zip(methods, covered):
        extra = sorted(c - set(games) - set(unscored) - set(unpublished))
        if extra:
            notes.append(f"{m} also ran {', '.join(extra)}, left out of the aggregates (not every backbone ran them).")
    matrices, kinds = {}, {}
    if not games:
        return Scores(games, matrices, kinds, notes)
    for m in methods:
        sub = df[df["method"] == m]
        per_game = {g: sub.loc[sub["game"] == g, "human_normalised_score"].tolist() for g in games}
        matrices[m], kinds[m] = stats.score_matrix(per_game, games), "run"
        counts = {len(v) for v in per_game.values()}
        if len(counts) > 1:
            notes.append(
                f"{m} has {min(counts)} to {max(counts)} runs per game; the aggregates use the first {min(counts)} "
                f"of each game (rliable needs the same number of runs on every game)."
            )
    for b in baseline_names:
        norm = published.normalised(b)
        matrices[f"{b}{PUBLISHED}"] = stats.score_matrix(norm, games)
        kinds[f"{b}{PUBLISHED}"] = "published"
    return Scores(games, matrices, kinds, notes)


def aggregate_table(scores: Scores, reps: int, seed: int):
    """IQM, median, mean and optimality gap with 95% stratified-bootstrap intervals, one row per method."""
    import pandas as pd

    intervals = stats.aggregate_intervals(scores.matrices, reps=reps, seed=seed)
    rows = []
    for method, matrix in scores.matrices.items():
        row: dict[str, Any] = {"method": method, "source": scores.kinds[method]}
        row["games"], row["runs_per_game"] = matrix.shape[1], matrix.shape[0]
        for name, iv in intervals[method].items():
            key = name.lower().replace(" ", "_")
            single = matrix.shape[0] < 2
            row[key] = iv.point
            row[f"{key}_low"], row[f"{key}_high"] = (math.nan, math.nan) if single else (iv.low, iv.high)
        rows.append(row)
    return pd.DataFrame(rows)


def aggregate_markdown(table):
    """The aggregate table for reading: ``point [low, high]``."""
    shown = table[["method", "source", "games", "runs_per_game"]].rename(columns={"runs_per_game": "runs/game"})
    for name in stats.AGGREGATES:
        key = name.lower().replace(" ", "_")
        shown[name] = [
            md.interval(p, lo, hi) for p, lo, hi in zip(table[key], table[f"{key}_low"], table[f"{key}_high"])
        ]
    return shown


def improvement_table(scores: Scores, methods: Sequence[str], reps: int, seed: int):
    """P(X > Y) with a 95% interval for every pair of backbones; a pair with < 2 runs per game is skipped."""
    import pandas as pd

    rows = []
    for i, x in enumerate(methods):
        for y in methods[i + 1 :]:
            row: dict[str, Any] = {"X": x, "Y": y, "games": len(scores.games), "runs_X": 0, "runs_Y": 0}
            row.update({"P(X > Y)": math.nan, "low": math.nan, "high": math.nan, "note": ""})
            if x not in scores.matrices or y not in scores.matrices:
                row["note"] = "no game both ran"
            else:
                mx, my = scores.matrices[x], scores.matrices[y]
                row["runs_X"], row["runs_Y"] = mx.shape[0], my.shape[0]
                if min(mx.shape[0], my.shape[0]) < 2:
                    row["note"] = "skipped: needs at least 2 runs per game of each"
                else:
                    iv = stats.probability_of_improvement(mx, my, reps=reps, seed=seed)
                    row["P(X > Y)"], row["low"], row["high"] = iv
            rows.append(row)
    return pd.DataFrame(rows, columns=["X", "Y", "games", "runs_X", "runs_Y", "P(X > Y)", "low", "high", "note"])


def improvement_markdown(table):
    """The improvement table for reading: ``P [low, high]``."""
    shown = table[["X", "Y", "games", "runs_X", "runs_Y"]].copy()
    cells = zip(table["P(X > Y)"], table["low"], table["high"])
    shown["P(X > Y) [95% CI]"] = ["–" if math.isnan(p) else md.interval(p, lo, hi) for p, lo, hi in cells]
    shown["note"] = table["note"]
    return shown


def curves(runs: Sequence[Run], labels: Sequence[str], key: str, final_from_summary: bool = False):
    """Long table (method, game, seed, env_steps, value) of one metrics key over training.

    With ``final_from_summary`` the final evaluation in summary.json is added as the last point.
    """
    import pandas as pd

    rows = []
    for label, r in zip(labels, runs):
        base = {"method": label, "game": r.summary["game"], "seed": r.summary["seed"]}
        for m in r.metrics:
            if isinstance(m.get(key), (int, float)) and isinstance(m.get("env_steps"), (int, float)):
                rows.append({**base, "env_steps": m["env_steps"], "value": float(m[key])})
        if final_from_summary and isinstance(r.summary.get("env_steps"), (int, float)):
            rows.append({**base, "env_steps": r.summary["env_steps"], "value": float(r.summary["eval_return_mean"])})
    df = pd.DataFrame(rows, columns=["method", "game", "seed", "env_steps", "value"])
    return df.drop_duplicates(["method", "game", "seed", "env_steps"], keep="last")


def curve_summary(long):
    """Mean, std and count over seeds per method, game and env_steps."""
    grouped = long.groupby(["method", "game", "env_steps"])["value"]
    return grouped.agg(mean="mean", std="std", seeds="count").reset_index()


def throughput_table(df):
    """One row per setup (method, tokenizer, preset, device, bf16): mean wall time and speed, peak memory,
    parameter counts (the median over runs: counts differ a little between games' action sets)."""
    keys = ["method", "tokenizer", "preset", "device", "bf16"]
    filled = df.assign(**{k: df[k].astype(str) for k in keys})
    grouped = filled.groupby(keys, sort=False)
    table = grouped.agg(
        runs=("seed", "count"),
        env_steps=("env_steps", "mean"),
        wall_time_s=("wall_time_s", "mean"),
        imagined_frames_per_s=("imagined_frames_per_s", "mean"),
        peak_cpu_rss_mb=("peak_cpu_rss_mb", "max"),
        peak_cuda_mb=("peak_cuda_mb", "max"),
        world_model_params=("world_model_params", "median"),
        world_model_trainable=("world_model_trainable", "median"),
        tokenizer_params=("tokenizer_params", "median"),
        actor_critic_params=("actor_critic_params", "median"),
    ).reset_index()
    table["env_steps_per_s"] = table["env_steps"] / table["wall_time_s"]
    for col in ("world_model_params", "world_model_trainable", "tokenizer_params", "actor_critic_params"):
        table[col] = table[col].round().astype("Int64")
    return table
