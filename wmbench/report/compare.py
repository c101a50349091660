"""``wmbench compare``: run folders in, one report folder out (tables as CSV and Markdown, plots as PNG,
and a ``report.md`` that links them).

A run folder holds ``summary.json`` (final evaluation, costs) and ``metrics.jsonl`` (one line per epoch);
see :mod:`wmbench.rundir`. Runs are grouped by backbone (with the tokenizer and preset added to the label
when the runs mix several, and the options that tell apart runs of one backbone), and published baselines
appear beside them, always marked "published". Runs of the world-model track (``"track": "world-model"`` in
summary.json) get the data-efficiency sections of :mod:`wmbench.report.data_efficiency`, and throughput CSVs
written by ``wmbench bench`` a table of their own.
"""

from __future__ import annotations

import io
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wmbench import files
from wmbench.config import flatten
from wmbench.errors import WmbenchError
from wmbench.plugins import registry
from wmbench.report import baselines as published
from wmbench.report import stats
from wmbench.rundir import SCHEMA_VERSION, RunDir

#: summary.json fields a run must have, with the type each must be.
REQUIRED: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "game": str,
    "backbone": str,
    "seed": int,
    "eval_return_mean": (int, float),
}
#: The same for runs of the world-model track (no evaluation returns; held-out figures per budget instead).
REQUIRED_WORLD_MODEL: dict[str, type | tuple[type, ...]] = {
    "schema_version": int,
    "game": str,
    "backbone": str,
    "seed": int,
    "per_budget": list,
    "target_loss": (int, float),
}
WORLD_MODEL_TRACK = "world-model"
#: Config keys that never tell two setups apart (they vary within one setup, or name it already).
NOT_SETUP = {"game", "seed", "device", "bf16", "preset", "tokenizer.name", "backbone.name"}
WM_LOSS = "loss/world_model/total"
IMAGINED_FPS = "throughput/imagined_frames_per_s"
PUBLISHED = " (published)"
#: Optional columns of the runs table that must be numbers.
NUMERIC = (
    "epochs", "env_steps", "wall_time_s", "imagined_frames_per_s", "peak_cpu_rss_mb", "peak_cuda_mb",
    "world_model_params", "world_model_trainable", "tokenizer_params", "actor_critic_params",
)  # fmt: skip
#: Above this many rows a table is linked from report.md rather than shown inline.
INLINE_ROWS = 40


@dataclass(frozen=True)
class Run:
    """One finished run: its folder, its summary.json, its metrics.jsonl lines and its config.json."""

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    config: dict[str, Any]

    @property
    def track(self) -> str:
        return self.summary.get("track", "agent")


# Reading run folders ---------------------------------------------------------------------------------


def find_run_dirs(paths: Sequence[Path]) -> tuple[list[Path], list[Path]]:
    """Expand each path into run folders: a run folder itself, or every folder holding a summary.json below it.

    Returns ``(runs, unfinished)``: folders below a parent that have config.json but no summary.json are
    left out and listed as unfinished. A path given directly that looks like a run folder is kept even
    without summary.json, so that reading it names what is missing.
    """
    runs: list[Path] = []
    unfinished: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise WmbenchError(f"{path} does not exist")
        if not path.is_dir():
            raise WmbenchError(f"{path} is not a folder (give run folders or folders that contain them)")
        if any((path / name).exists() for name in ("summary.json", "config.json", "metrics.jsonl")):
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.rglob("summary.json"))
        unfinished += sorted(p.parent for p in path.rglob("config.json") if not (p.parent / "summary.json").exists())
        if not found and not find_bench_csvs([path]):
            waiting = sum(1 for u in unfinished if path in u.parents)
            hint = f"; {waiting} unfinished (config.json without summary.json)" if waiting else ""
            raise WmbenchError(f"{path} holds no finished run folders (no summary.json found below it{hint})")
        runs += found
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return unique, sorted(set(unfinished))


def find_bench_csvs(paths: Sequence[Path]) -> list[Path]:
    """The ``throughput.csv`` files of ``wmbench bench`` below the paths (a report's own throughput.csv, beside
    its report.md, is not one)."""
    found = [c for p in map(Path, paths) if p.is_dir() for c in p.rglob("throughput.csv") if not (c.parent / "report.md").exists()]
    return sorted({c.resolve() for c in found})


def load_run(folder: Path) -> Run:
    """Read and check one run folder; a missing file or field is a WmbenchError naming the folder."""
    folder = Path(folder)
    summary_path = folder / "summary.json"
    if not summary_path.is_file():
        raise WmbenchError(f"run folder {folder}: no summary.json (the run has not finished, or this is not a run folder)")
    try:
        summary = json.loads(summary_path.read_text())
    except json.JSONDecodeError as exc:
        raise WmbenchError(f"run folder {folder}: summary.json is not valid JSON ({exc})") from exc
    if not isinstance(summary, dict):
        raise WmbenchError(f"run folder {folder}: summary.json is not a JSON object")
    world_model = summary.get("track") == WORLD_MODEL_TRACK
    for field, kind in (REQUIRED_WORLD_MODEL if world_model else REQUIRED).items():
        if field not in summary or summary[field] is None:
            raise WmbenchError(f"run folder {folder}: summary.json has no field {field!r}")
        value = summary[field]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise WmbenchError(f"run folder {folder}: summary.json field {field!r} is {value!r}, not {_kind_name(kind)}")
    if summary["schema_version"] > SCHEMA_VERSION:
        raise WmbenchError(
            f"run folder {folder}: summary.json has schema_version {summary['schema_version']}; "
            f"this wmbench reads {SCHEMA_VERSION} (upgrade wmbench)"
        )
    if world_model:
        _check_budgets(folder, summary["per_budget"])
    elif not math.isfinite(summary["eval_return_mean"]):
        raise WmbenchError(
            f"run folder {folder}: summary.json field 'eval_return_mean' is not finite (no evaluation episode ended?)"
        )
    if summary["game"] not in registry().games:
        raise WmbenchError(f"run folder {folder}: summary.json field 'game' is {summary['game']!r}, not an Atari 100k game "
                           "nor a game of another installed env suite (wmbench list games)")
    run = RunDir(folder)
    return Run(folder, summary, run.read_metrics(), run.read_config() if run.config.is_file() else {})


def _check_budgets(folder: Path, rows: list[Any]) -> None:
    """Every per-budget row of a world-model run has its frames seen and a finite held-out next-token loss."""
    from wmbench.report.data_efficiency import OBS_LOSS

    if not rows:
        raise WmbenchError(f"run folder {folder}: summary.json field 'per_budget' is empty")
    for i, row in enumerate(rows):
        for key in ("env_steps", OBS_LOSS):
            value = row.get(key) if isinstance(row, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise WmbenchError(f"run folder {folder}: summary.json per_budget[{i}] has no number {key!r}")


def _kind_name(kind: type | tuple[type, ...]) -> str:
    return "a number" if isinstance(kind, tuple) else {int: "an integer", str: "a string"}.get(kind, kind.__name__)


# Tables ----------------------------------------------------------------------------------------------


def method_labels(runs: Sequence[Run]) -> list[str]:
    """The backbone of each run, with ``/tokenizer`` and ``@preset`` added when the runs mix several, and
    ``[option=value, ...]`` for the config options that differ between runs of the same label (the LLM
    backbone pretrained and its random-weight control, say; a key that only some configs have is a change of
    wmbench version, not of setup, and is left out)."""
    tokenizers = {r.summary.get("tokenizer") for r in runs}
    presets = {r.summary.get("preset") for r in runs}
    labels = []
    for r in runs:
        label = r.summary["backbone"]
        if len(tokenizers) > 1:
            label += f"/{r.summary.get('tokenizer')}"
        if len(presets) > 1:
            label += f"@{r.summary.get('preset')}"
        labels.append(label)
    flat = [flatten(r.config) for r in runs]
    for label in set(labels):
        members = [i for i, lab in enumerate(labels) if lab == label]
        keys = sorted(set.intersection(*(set(flat[i]) for i in members)) - NOT_SETUP)
        differing = [k for k in keys if len({json.dumps(flat[i].get(k)) for i in members}) > 1]
        for i in members:
            if differing:
                labels[i] = label + "[" + ", ".join(f"{k.split('.')[-1]}={_option(flat[i].get(k))}" for k in differing) + "]"
    return labels


def _option(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else "–" if value is None else str(value)


def _last(metrics: list[dict[str, Any]], key: str) -> float:
    values = [m[key] for m in metrics if isinstance(m.get(key), (int, float))]
    return float(values[-1]) if values else math.nan


def runs_table(runs: Sequence[Run]):
    """One row per run: what it was, its final score, and its costs."""
    import pandas as pd

    human = published.human_scores()
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
    order = {g: i for i, g in enumerate(human)}
    df = pd.DataFrame(rows)
    for col in NUMERIC:  # optional fields: a missing or odd value becomes NaN, not a crash later
        df[col] = pd.to_numeric(df[col], errors="coerce")
    df["_game"] = df["game"].map(order)
    return df.sort_values(["method", "_game", "seed"], kind="stable").drop(columns="_game").reset_index(drop=True)


def per_game_table(df, methods: Sequence[str], baseline_names: Sequence[str]):
    """Per game: random and human scores, mean, std and count over seeds per method, and published means."""
    import pandas as pd

    human, rand = published.human_scores(), published.random_scores()
    games = [g for g in human if g in set(df["game"])]
    table = pd.DataFrame({"game": games, "random": [rand[g] for g in games], "human": [human[g] for g in games]})
    for m in methods:
        grouped = df[df["method"] == m].groupby("game")["eval_return_mean"]
        table[f"{m} mean"] = table["game"].map(grouped.mean())
        table[f"{m} std"] = table["game"].map(grouped.std(ddof=1))
        table[f"{m} n"] = table["game"].map(grouped.count()).fillna(0).astype(int)
    for b in baseline_names:
        scores = published.load(b)
        table[f"{b}{PUBLISHED} mean"] = [float(np.mean(scores[g])) for g in games]
        table[f"{b}{PUBLISHED} std"] = [float(np.std(scores[g], ddof=1)) if len(scores[g]) > 1 else math.nan for g in games]
        table[f"{b}{PUBLISHED} n"] = [len(scores[g]) for g in games]
    return table


def per_game_markdown(table, methods: Sequence[str], baseline_names: Sequence[str]):
    """The per-game table for reading: ``mean ± std (n)`` per method, the published mean per baseline."""
    import pandas as pd

    shown = pd.DataFrame({"game": table["game"], "random": table["random"].map(_score), "human": table["human"].map(_score)})
    for m in methods:
        shown[m] = [_mean_std(a, b, n) for a, b, n in zip(table[f"{m} mean"], table[f"{m} std"], table[f"{m} n"])]
    for b in baseline_names:
        shown[f"{b}{PUBLISHED}"] = table[f"{b}{PUBLISHED} mean"].map(_score)
    return shown


def _score(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.2f}"


def _mean_std(mean: float, std: float, n: int) -> str:
    if not n:
        return "–"
    if n < 2 or math.isnan(std):
        return f"{_score(mean)} (n=1)"
    return f"{_score(mean)} ± {_score(std)} (n={n})"


def markdown(df) -> str:
    """A GitHub Markdown table of a DataFrame (floats to 3 significant digits, NaN as a dash)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, (float, np.floating)):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"  # from 100 up the same digits, never 1e+03
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


# Aggregates ------------------------------------------------------------------------------------------


@dataclass
class Scores:
    """Human-normalised ``[runs x games]`` matrices per method, over the games every backbone covers."""

    games: list[str]
    matrices: dict[str, np.ndarray]
    kinds: dict[str, str]
    notes: list[str]


def score_matrices(df, methods: Sequence[str], baseline_names: Sequence[str]) -> Scores:
    """Matrices of the runs' and the baselines' human-normalised scores over the games all methods ran."""
    human = published.human_scores()
    notes = []
    if baseline_names and "score_caveats" in df and (df["score_caveats"] != "").any():
        cut = df[df["score_caveats"] != ""]
        notes.append(f"{len(cut)} run(s) left out of the aggregates beside published rows, their returns not being "
                     f"scores: {'; '.join(sorted(set(cut['score_caveats'])))}.")
        df = df[df["score_caveats"] == ""]
    covered = [set(df.loc[df["method"] == m, "game"]) for m in methods]
    games = [g for g in human if all(g in c for c in covered)]
    if len(games) < len(human):
        notes.append(
            f"Aggregates are over the {len(games)} game(s) every backbone ran ({', '.join(games) or 'none'}), "
            f"not the 26 of Atari 100k; published baselines are restricted to the same games, so their figures "
            f"differ from the published 26-game aggregates."
        )
    for m, c in zip(methods, covered):
        extra = sorted(c - set(games))
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
        shown[name] = [_interval(p, lo, hi) for p, lo, hi in zip(table[key], table[f"{key}_low"], table[f"{key}_high"])]
    return shown


def _interval(point: float, low: float, high: float) -> str:
    return f"{point:.3f}" if math.isnan(low) else f"{point:.3f} [{low:.3f}, {high:.3f}]"


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
    shown["P(X > Y) [95% CI]"] = ["–" if math.isnan(p) else _interval(p, lo, hi) for p, lo, hi in cells]
    shown["note"] = table["note"]
    return shown


# Curves and throughput -------------------------------------------------------------------------------


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


# Plots -----------------------------------------------------------------------------------------------


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


def plot_profiles(profiles: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]], taus: np.ndarray, colours: dict[str, Any]):
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

    ``summary`` is :func:`curve_summary`'s table (drawn directly: seaborn's own aggregation is slow
    with 26 panels).
    """
    import seaborn as sns

    plt = _pyplot()
    games = [g for g in published.human_scores() if g in set(summary["game"])]
    methods = list(dict.fromkeys(summary["method"]))
    cols = min(4, len(games))
    rows = math.ceil(len(games) / cols)
    with sns.axes_style("whitegrid"):
        fig, axes = plt.subplots(rows, cols, figsize=(3.8 * cols + 1.6, 2.7 * rows + 0.9), squeeze=False, layout="constrained")
        for ax, game in zip(axes.flat, games):
            for method in methods:
                c = summary[(summary["game"] == game) & (summary["method"] == method)].sort_values("env_steps")
                if not len(c):
                    continue
                x, mean, std = c["env_steps"].to_numpy(float), c["mean"].to_numpy(float), c["std"].fillna(0).to_numpy(float)
                ax.plot(x, mean, color=colours[method], lw=1.8, marker="o", ms=3, label=method)
                ax.fill_between(x, mean - std, mean + std, color=colours[method], alpha=0.2, lw=0)
            ax.set_title(game, fontsize=11)
            ax.tick_params(labelsize=9)
            ax.xaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v / 1000:g}k" if abs(v) >= 1000 else f"{v:g}"))
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


# The report ------------------------------------------------------------------------------------------


class _Writer:
    """Writes each output of the report atomically into its folder."""

    def __init__(self, out: Path):
        self.out = out

    def text(self, name: str, text: str) -> str:
        files.write_bytes(self.out / name, text.encode())
        return name

    def figure(self, name: str, fig) -> str:
        files.write_bytes(self.out / name, png(fig))
        return name

    def table(self, name: str, data, shown=None) -> str:
        """``name.csv`` (all columns, full precision) and ``name.md`` (``shown``, or the data); returns the Markdown."""
        self.text(f"{name}.csv", data.to_csv(index=False))
        md = markdown(data if shown is None else shown)
        self.text(f"{name}.md", md)
        return md


def _section(title: str, intro: str, md_table: str = "", rows: int = 0, image: str = "") -> list[str]:
    lines = [f"## {title}", "", intro, ""]
    if md_table:
        lines += [md_table if rows <= INLINE_ROWS else f"({rows} rows: see the files.)\n"]
    if image:
        lines += [f"![{title}]({image})", ""]
    return lines


def _aggregate_sections(
    w: _Writer, scores: Scores, methods: list[str], colours: dict[str, Any], reps: int, seed: int
) -> list[str]:
    """Aggregates, probability of improvement and performance profiles (report.md lines)."""
    import pandas as pd

    if not scores.matrices:
        skipped = "Skipped: no game is covered by every backbone."
        titles = ("Aggregate human-normalised scores", "Probability of improvement", "Performance profiles")
        return [line for t in titles for line in _section(t, skipped)]
    agg = aggregate_table(scores, reps, seed)
    lines = _section(
        "Aggregate human-normalised scores",
        f"IQM, median, mean and optimality gap of human-normalised scores over {len(scores.games)} game(s), with 95% "
        f"stratified-bootstrap intervals over runs ({reps} replications, as rliable computes them); a method with one "
        "run per game gets no interval: [aggregates.csv](aggregates.csv), [aggregates.md](aggregates.md).",
        w.table("aggregates", agg, aggregate_markdown(agg)),
        len(agg),
        w.figure("aggregates.png", plot_aggregates(agg, colours)),
    )
    poi = improvement_table(scores, methods, reps, seed)
    if len(poi):
        md = w.table("improvement", poi, improvement_markdown(poi))
        image = w.figure("improvement.png", plot_improvement(poi)) if poi["P(X > Y)"].notna().any() else ""
        intro = (
            "P(X > Y): the probability that a run of X scores higher than a run of Y on a game, averaged over games, "
            "with a 95% stratified-bootstrap interval; 0.5 means no difference. Needs at least 2 runs per game of "
            "both: [improvement.csv](improvement.csv)."
        )
        lines += _section("Probability of improvement", intro, md, len(poi), image)
    else:
        lines += _section("Probability of improvement", "Only one backbone: nothing to compare.")
    taus = profile_taus(scores.matrices)
    profiles = stats.performance_profiles(scores.matrices, taus, reps=reps, seed=seed)
    rows = [
        {"method": m, "tau": t, "fraction": f, "low": lo, "high": hi}
        for m, v in profiles.items()
        for t, f, lo, hi in zip(taus, *v)
    ]
    w.text("performance_profiles.csv", pd.DataFrame(rows).to_csv(index=False))
    lines += _section(
        "Performance profiles",
        "The fraction of runs (over all games) whose human-normalised score exceeds τ, with 95% stratified-bootstrap "
        "bands; a curve above another is better everywhere: [performance_profiles.csv](performance_profiles.csv).",
        image=w.figure("performance_profiles.png", plot_profiles(profiles, taus, colours)),
    )
    return lines


def _curve_sections(w: _Writer, runs: Sequence[Run], colours: dict[str, Any]) -> list[str]:
    """Sample-efficiency and world-model loss curves (report.md lines)."""
    labels = method_labels(runs)
    has_eval = any("eval/return" in m for r in runs for m in r.metrics)
    key = "eval/return" if has_eval else "collect/return"
    what = (
        "evaluation return (the last point is the final evaluation)"
        if has_eval
        else "mean return of the episodes collected for training (no evaluation during training was logged)"
    )
    lines: list[str] = []
    for title, metric, name, ylabel, intro, final in (
        ("Sample efficiency", key, "sample_efficiency", "return", f"Per game, the {what}", has_eval),
        ("World-model loss", WM_LOSS, "world_model_loss", "loss",
         f"Per game, `{WM_LOSS}` (observation + reward + end losses, averaged over the epoch's steps)", False),
    ):  # fmt: skip
        long = curves(runs, labels, metric, final_from_summary=final)
        if not len(long):
            lines += _section(title, f"Skipped: no metrics line has `{metric}`.")
            continue
        summary = curve_summary(long)
        w.text(f"{name}.csv", summary.to_csv(index=False))
        fig = plot_curves(summary, colours, ylabel, f"{title}: {metric} (mean ± std over seeds)")
        intro += f" against environment steps, mean ± std over seeds per backbone: [{name}.csv]({name}.csv)."
        lines += _section(title, intro, image=w.figure(f"{name}.png", fig))
    return lines


def compare(
    run_dirs: list[Path], out: Path, baselines: list[str], reps: int = stats.REPS, seed: int = 0, bench_csvs: Sequence[Path] = ()
) -> Path:
    """Read the run folders (and ``wmbench bench`` CSVs), write tables, plots and ``report.md`` into ``out``;
    returns report.md's path.

    ``baselines`` names published methods (see :func:`wmbench.report.baselines.available`) to show beside
    the agent runs. Every file is written atomically; files of an earlier report in ``out`` are replaced.
    """
    import wmbench

    if not run_dirs and not bench_csvs:
        raise WmbenchError("no run folders to compare")
    baseline_names = list(dict.fromkeys(published.check(b) for b in baselines))
    runs = [load_run(Path(p)) for p in run_dirs]
    bench = read_bench_csvs(bench_csvs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WmbenchError(f"--out {out} is a file, not a folder")
    w = _Writer(out)
    agent = [r for r in runs if r.track != WORLD_MODEL_TRACK]
    world_model = [r for r in runs if r.track == WORLD_MODEL_TRACK]
    parts = [f"{len(agent)} agent run(s)"] * bool(agent) + [f"{len(world_model)} world-model run(s)"] * bool(world_model)
    parts += [f"{len(bench_csvs)} throughput CSV(s) of `wmbench bench`"] * bool(bench_csvs)
    lines = ["# wmbench report", "", f"Made by `wmbench compare` (wmbench {wmbench.__version__}) from {', '.join(parts)}.", ""]
    if agent:
        lines += _agent_sections(w, agent, baseline_names, reps, seed)
    if world_model:
        lines += _data_efficiency_sections(w, world_model)
    if bench is not None:
        from wmbench.bench import markdown_table

        w.text("bench.csv", bench.to_csv(index=False))
        md = markdown_table(out / "bench.csv")
        w.text("bench.md", md)
        lines += _section(
            "Throughput (wmbench bench)",
            "The latest figures of every setup measured by `wmbench bench`, medians over its repeats; every row of "
            "the CSVs found (the `source` column names each file) in [bench.csv](bench.csv).",
            md,
            len(bench),
        )
    return out / w.text("report.md", "\n".join(lines).rstrip() + "\n")


def read_bench_csvs(paths: Sequence[Path]):
    """The rows of every throughput CSV of ``wmbench bench``, with a ``source`` column; None when there are none."""
    import pandas as pd

    from wmbench.bench import COLUMNS

    frames = []
    for path in map(Path, paths):
        try:
            frame = pd.read_csv(path, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise WmbenchError(f"throughput CSV {path} cannot be read ({exc})") from exc
        if list(frame.columns) != list(COLUMNS) or frame.empty:
            raise WmbenchError(f"throughput CSV {path} is not a wmbench bench CSV with rows (columns {list(frame.columns)})")
        frames.append(frame.assign(source=str(path)))
    return pd.concat(frames, ignore_index=True) if frames else None


def _agent_sections(w: _Writer, runs: list[Run], baseline_names: list[str], reps: int, seed: int) -> list[str]:
    """Everything about the agent track's runs: aggregates, per-game scores, curves, throughput, runs."""
    df = runs_table(runs)
    methods = list(dict.fromkeys(df["method"]))
    colours = palette(methods + [f"{b}{PUBLISHED}" for b in baseline_names])
    scores = score_matrices(df, methods, baseline_names)
    notes = list(scores.notes)
    silent = [str(r.path) for r in runs if not r.metrics]
    if silent:
        notes.append(f"{len(silent)} run folder(s) have no metrics.jsonl lines, so no curves: {', '.join(silent)}.")
    for departure in sorted(set(df["paper_departures"]) - {""}):
        count = (df["paper_departures"] == departure).sum()
        notes.append(f"{count} run(s) depart from the paper's setup: {departure}.")

    lines = [
        "# Agent track",
        "",
        f"{len(runs)} run folder(s): "
        f"{len(methods)} backbone setup(s) ({', '.join(methods)}) on {df['game'].nunique()} game(s), seeds "
        f"{', '.join(map(str, sorted(df['seed'].unique())))}. Published baselines: {', '.join(baseline_names) or 'none'} "
        "(rows and columns marked \"published\": their authors' scores, see `results/baselines/README.md` in the "
        "wmbench repository). Scores are final evaluation returns; human-normalised score = "
        "(score - random) / (human - random).",
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += _aggregate_sections(w, scores, methods, colours, reps, seed)

    per_game = per_game_table(df, methods, baseline_names)
    lines += _section(
        "Per-game scores",
        "Raw returns, mean ± std over seeds (n = seeds) per backbone, beside the published per-game means: "
        "[per_game.csv](per_game.csv), [per_game.md](per_game.md).",
        w.table("per_game", per_game, per_game_markdown(per_game, methods, baseline_names)),
        len(per_game),
    )
    lines += _curve_sections(w, runs, colours)
    throughput = throughput_table(df)
    lines += _section(
        "Throughput",
        "One row per setup, means over its runs: wall time (training and evaluation), imagined frames/s (the last "
        f"logged `{IMAGINED_FPS}` of each run), peak memory (the largest over runs), parameter counts (median over "
        "runs; action sets differ between games): [throughput.csv](throughput.csv).",
        w.table("throughput", throughput),
        len(throughput),
    )
    shown = df.drop(columns=["backbone", "path", "world_model_trainable", "tokenizer_params", "actor_critic_params"])
    lines += _section("Runs", "One row per run: [runs.csv](runs.csv), [runs.md](runs.md).", w.table("runs", df, shown), len(df))
    return lines


def _data_efficiency_sections(w: _Writer, runs: list[Run]) -> list[str]:
    """The world-model track: held-out figures per budget, frames to the target loss, and curves."""
    from wmbench.report import data_efficiency as de

    labels = method_labels(runs)
    long = de.long_table(runs, labels)
    colours = palette(list(dict.fromkeys(labels)))
    table = de.budget_table(long)
    targets = de.target_table(runs, labels)
    lines = [
        "# World-model track",
        "",
        f"{len(runs)} run folder(s): {len(set(labels))} backbone setup(s) ({', '.join(dict.fromkeys(labels))}) on "
        f"{long['game'].nunique()} game(s), seeds {', '.join(map(str, sorted(long['seed'].unique())))}. The tokenizer and world "
        "model alone, trained on growing prefixes of a fixed random-policy dataset per game and seed; every figure is "
        "measured on held-out episodes of that dataset, at each budget of frames seen (equal data for every backbone).",
        "",
    ]
    lines += _section(
        "Data efficiency",
        "Per game and budget, mean ± std over seeds: held-out next-token cross-entropy (nats), reward-sign and "
        "episode-end accuracy (also on the rewarded steps alone), the tokenizer's reconstruction MSE (the floor of "
        "the rollout error), and for frames imagined k steps ahead, driven by the held-out actions, their PSNR "
        "against the real frames and the share of their tokens equal to the real frames' tokens (the world model's "
        "own error; both higher is better); every figure with its std in [data_efficiency.csv](data_efficiency.csv).",
        w.table("data_efficiency", table, de.budget_markdown(table, long)),
        len(table),
    )
    lines += _section(
        "Frames to target loss",
        "Per game, the seeds whose held-out next-token loss reached the target at one of the budgets, the frames "
        "they needed (mean ± std over those seeds; budgets are the resolution) and the loss at the last budget: "
        "[frames_to_target.csv](frames_to_target.csv).",
        w.table("frames_to_target", targets, de.target_markdown(targets)),
        len(targets),
    )
    names = de.figure_names(long)
    plotted = [(de.OBS_LOSS, "wm_heldout_loss", "next-token loss (nats)")]
    for prefix, file, ylabel in (("heldout/rollout_psnr@", "wm_rollout_psnr", "PSNR (dB)"),
                                 ("heldout/rollout_token_accuracy@", "wm_rollout_tokens", "token accuracy")):  # fmt: skip
        longest = [n for n in names if n.startswith(prefix)][-1:]
        plotted += [(n, file, ylabel) for n in longest]
    for name, file, ylabel in plotted:
        summary = curve_summary(de.curve_long(long, name))
        fig = plot_curves(summary, colours, ylabel, f"World-model track: {name} against frames seen (mean ± std over seeds)")
        lines += _section(
            f"Curves: {name}",
            f"Per game, `{name}` against frames seen (the x axis reads environment steps), mean ± std over seeds "
            f"per backbone: [{file}.csv]({file}.csv).",
            image=w.figure(f"{file}.png", fig),
        )
        w.text(f"{file}.csv", summary.to_csv(index=False))
    return lines
