"""The world-model track in a report: held-out figures against frames of training data, per setup and game, and
paired comparisons between setups.

Each world-model run's summary.json holds one row per budget (``per_budget``: ``env_steps``, the frames of training
data, and ``heldout/...`` and ``ood/...`` figures, see :mod:`wmbench.tracks.heldout`) and the sha256 of its frozen
tokenizer. Runs of one game and seed share their dataset, so setups are compared seed by seed:

- a paired difference per (game, seed, budget), aggregated as the mean over games of the mean over seeds, with a
  95% bootstrap interval that resamples seeds within each game (stratified over games), and rliable's probability
  of improvement;
- the pairs: every setup against each scratch setup, and every two setups whose configs differ in one key alone
  (``backbone.pretrained``: the pretraining control; ``backbone.embeddings``, ``backbone.name``: the mode, ...);
- frames to target: per game, the target is the held-out loss of the reference (the first scratch setup; for a
  sweep's cells, first in the benchmark file) at the largest budget, mean over seeds; per run, the frames at which
  its loss reaches it, interpolated in log frames between budgets, and "beyond the largest budget" when it never
  does (counted as twice the largest in means).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wmbench import markdown as md
from wmbench.config import flatten
from wmbench.errors import WmbenchError
from wmbench.report import stats
from wmbench.report.runs import method_labels
from wmbench.rundir import OBS_LOSS

SAME_SETUP = {"game", "seed", "device", "bf16", "preset"}
"""Config keys that vary within one setup (or across machines) and never make two setups."""

MAIN = {
    OBS_LOSS: ("held-out CE", "lower"),
    "heldout/loss/observations_history": ("CE with history", "lower"),
    "heldout/loss/observations_changed": ("CE changed tokens", "lower"),
    "ood/loss/observations": ("OOD CE", "lower"),
    "heldout/rewards/balanced_accuracy": ("reward bal. acc.", "higher"),
    "heldout/ends/balanced_accuracy": ("end bal. acc.", "higher"),
}
"""Figures compared between setups, with their short names and which way is better (rollout PSNR is added at its
longest horizon)."""

SHOWN = {
    OBS_LOSS: "CE",
    "heldout/reference/copy/observations": "copy ref.",
    "heldout/reference/unigram/observations": "unigram ref.",
    "heldout/loss/observations_no_history": "CE no history",
    "heldout/loss/observations_history": "CE history",
    "heldout/loss/observations_changed": "CE changed",
    "heldout/reference/copy/observations_changed": "copy ref. changed",
    "ood/loss/observations": "OOD CE",
    "ood/reference/copy/observations": "OOD copy ref.",
    "heldout/rewards/balanced_accuracy": "reward bal. acc.",
    "heldout/rewards/precision": "reward prec.",
    "heldout/rewards/recall": "reward rec.",
    "heldout/ends/balanced_accuracy": "end bal. acc.",
}
"""Figures of the per-budget Markdown table (every figure goes to the CSV), with short headings."""

CENSORED = 2.0
"""A run that never reaches the target counts as this many times the largest budget in means of frames."""


def _sweep_cells(runs: Sequence[Any]) -> list[tuple[int, str]] | None:
    """Per run that is a cell of a sweep (``SWEEP/cells/ID/``, with ``SWEEP/index.json`` listing its cells), its
    position in the index (the benchmark file's order) and its label there; None when any run is not."""
    cells = []
    indexes: dict[Path, dict[str, tuple[int, str]]] = {}
    for r in runs:
        folder = Path(r.path)
        index = folder.parent.parent / "index.json"
        if folder.parent.name != "cells" or not index.is_file():
            return None
        if index not in indexes:
            try:
                listed = json.loads(index.read_text())["cells"]
                indexes[index] = {c["id"]: (i, c["label"]) for i, c in enumerate(listed)}
            except (json.JSONDecodeError, KeyError, TypeError):
                return None
        if folder.name not in indexes[index]:
            return None
        cells.append(indexes[index][folder.name])
    return cells


def labels_of(runs: Sequence[Any]) -> list[str]:
    """The sweep's labels where the runs are its cells, else labels made from the configs."""
    cells = _sweep_cells(runs)
    return [label for _, label in cells] if cells else method_labels(runs)


def in_file_order(runs: Sequence[Any]) -> list[Any]:
    """Cells of a sweep in its benchmark file's order (so setups are listed, and the reference is the first scratch
    setup, as the file has them); other runs as given."""
    cells = _sweep_cells(runs)
    if not cells:
        return list(runs)
    return [r for _, r in sorted(zip(cells, runs), key=lambda pair: pair[0][0])]


def check_shared_inputs(runs: Sequence[Any]) -> None:
    """Runs of one game and seed must share their dataset and frozen tokenizer (else their losses are on other
    data or other tokens, and pairing them means nothing); a WmbenchError names the runs that differ."""
    seen: dict[tuple[str, int], dict[str, tuple[str, Path]]] = {}
    for r in runs:
        s = r.summary
        key = (s["game"], s["seed"])
        found = {"frozen tokenizer": s["frozen_tokenizer"].get("sha256"), "dataset": Path(s["dataset"]["file"]).name}
        for what, value in found.items():
            first = seen.setdefault(key, {}).setdefault(what, (value, r.path))
            if first[0] != value:
                raise WmbenchError(
                    f"world-model runs of {key[0]} seed {key[1]} used different {what}s ({first[0]} in {first[1]}, "
                    f"{value} in {r.path}): their losses cannot be compared; rerun them against one cache"
                )


def long_table(runs: Sequence[Any], labels: Sequence[str]):
    """One row per (run, budget): method, game, seed, env_steps, the run's learning rate and steps, and every
    held-out and out-of-distribution figure."""
    import pandas as pd

    rows = []
    for label, r in zip(labels, runs):
        s = r.summary
        for row in s["per_budget"]:
            figures = {k: float(v) for k, v in row.items() if k.startswith(("heldout/", "ood/")) and _number(v)}
            rows.append({"method": label, "game": s["game"], "seed": s["seed"], "env_steps": row["env_steps"],
                         "lr": row.get("lr"), "steps_run": row.get("steps_run"), "best_step": row.get("best_step"),
                         **figures})  # fmt: skip
    return pd.DataFrame(rows)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def figure_names(long) -> list[str]:
    """The figures present: held-out before out-of-distribution, losses, references, heads, then rollouts by k."""
    names = [c for c in long.columns if c.startswith(("heldout/", "ood/"))]

    def order(c: str) -> tuple:
        k = int(c.rsplit("@", 1)[1]) if "@" in c else 0
        return (c.startswith("ood/"), "@" in c, k, c)

    return sorted(names, key=order)


def longest_rollout(long) -> str | None:
    """The rollout PSNR at the longest horizon measured."""
    found = [c for c in figure_names(long) if c.startswith("heldout/rollout_psnr@")]
    return found[-1] if found else None


def budget_table(long):
    """Per method, game and budget: mean, std and count over seeds of every figure."""
    names = figure_names(long)
    grouped = long.groupby(["method", "game", "env_steps"], sort=False)
    table = grouped[names].agg(["mean", "std"])
    table.columns = [f"{name} {stat}" for name, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    return table.reset_index().sort_values(["game", "env_steps"], kind="stable").reset_index(drop=True)


def budget_markdown(table, long):
    """The per-budget table for reading: ``mean ± std`` of the main figures and the longest rollout."""
    import pandas as pd

    shown = dict(SHOWN)
    psnr = longest_rollout(long)
    if psnr:
        k = psnr.rsplit("@", 1)[1]
        shown[psnr] = f"PSNR@{k}"
        shown[f"heldout/copy_psnr@{k}"] = f"copy PSNR@{k}"
        shown[f"heldout/rollout_token_accuracy@{k}"] = f"token acc.@{k}"
        shown[f"heldout/copy_token_accuracy@{k}"] = f"copy token acc.@{k}"
    out = pd.DataFrame(
        {"game": table["game"], "frames": table["env_steps"], "method": table["method"], "seeds": table["seeds"]}
    )
    for name, heading in shown.items():
        if f"{name} mean" in table:
            out[heading] = [md.estimate(m, s) for m, s in zip(table[f"{name} mean"], table[f"{name} std"])]
    return out


def aggregate_table(long):
    """Per method and budget: the mean over games of each game's mean over seeds, for the compared figures."""
    names = [n for n in [*MAIN, longest_rollout(long)] if n and n in long]
    per_game = long.groupby(["method", "env_steps", "game"], sort=False)[names].mean()
    table = per_game.groupby(["method", "env_steps"], sort=False).mean()
    table.insert(0, "games", per_game.groupby(["method", "env_steps"], sort=False).size())
    return table.reset_index().sort_values(["env_steps"], kind="stable").reset_index(drop=True)


def cost_table(runs: Sequence[Any], labels: Sequence[str], long):
    """One row per setup: trainable and total world-model parameters, learning rates chosen, steps run, wall-clock
    per cell and per run, and imagined frames per second (held-out rollouts), means over cells."""
    import pandas as pd

    rows = []
    for label, r in zip(labels, runs):
        s = r.summary
        wm = s["parameters"]["world_model"]
        fps = [row.get("heldout/imagined_frames_per_s") for row in s["per_budget"]]
        rows.append({"method": label, "trainable": wm["trainable"], "parameters": wm["total"], "lr": s.get("lr"),
                     "cell_seconds": s["wall_time_s"], "runs": s["epochs"], "threads": s["host"]["threads"],
                     "device": s["device"], "imagined_frames_per_s": np.mean([f for f in fps if _number(f)] or [np.nan])})  # fmt: skip
    df = pd.DataFrame(rows)
    steps = long.groupby("method", sort=False)[["steps_run", "best_step"]].mean()
    table = df.groupby("method", sort=False).agg(
        cells=("trainable", "count"), trainable=("trainable", "median"), parameters=("parameters", "median"),
        lrs=("lr", lambda v: ", ".join(f"{x:g}×{list(v).count(x)}" for x in sorted(set(v)))),
        cell_seconds=("cell_seconds", "mean"), runs=("runs", "mean"), threads=("threads", "max"),
        device=("device", "first"), imagined_frames_per_s=("imagined_frames_per_s", "mean"),
    )  # fmt: skip
    table["seconds_per_run"] = table["cell_seconds"] / table["runs"]
    return table.join(steps).reset_index()


# Paired comparisons ----------------------------------------------------------------------------------


def comparison_pairs(runs: Sequence[Any], labels: Sequence[str]) -> list[tuple[str, str, str]]:
    """``(X, Y, why)``: every setup against each scratch setup ("vs scratch"), and every two setups whose configs
    differ in one key alone (``why`` names it; X is the pretrained side, else the one listed first)."""
    order = list(dict.fromkeys(labels))
    configs: dict[str, dict[str, Any]] = {}
    backbone: dict[str, str] = {}
    for label, r in zip(labels, runs):
        configs.setdefault(label, {k: v for k, v in flatten(r.config).items() if k not in SAME_SETUP})
        backbone.setdefault(label, r.summary["backbone"])
    pairs: dict[tuple[str, str], str] = {}
    for i, x in enumerate(order):
        for y in order[i + 1 :]:
            keys = configs[x].keys() | configs[y].keys()
            differ = [k for k in sorted(keys) if json.dumps(configs[x].get(k)) != json.dumps(configs[y].get(k))]
            if len(differ) == 1:
                key = differ[0]
                first, second = (y, x) if key == "backbone.pretrained" and configs[y].get(key) else (x, y)
                pairs[(first, second)] = (
                    f"{key}: {_value(configs[first].get(key))} vs {_value(configs[second].get(key))}"
                )
    for ref in (lab for lab in order if backbone[lab] == "scratch"):
        for x in order:
            if x != ref and (x, ref) not in pairs and (ref, x) not in pairs:
                pairs[(x, ref)] = f"vs {ref}"
    return [(x, y, why) for (x, y), why in pairs.items()]


def _value(v: Any) -> str:
    return str(v).lower() if isinstance(v, bool) else str(v)


def paired_table(long, pairs: list[tuple[str, str, str]], reps: int = stats.REPS, seed: int = 0):
    """Per pair, budget and compared figure: the mean paired difference X - Y (over games of the mean over seeds),
    its 95% interval stratified over games, the probability that X is better (rliable, over seeds and games), and
    the games and seeds paired."""
    import pandas as pd

    names = [n for n in [*MAIN, longest_rollout(long)] if n and n in long]
    rows = []
    for x, y, why in pairs:
        a = long[long["method"] == x].set_index(["game", "seed", "env_steps"])
        b = long[long["method"] == y].set_index(["game", "seed", "env_steps"])
        common = a.index.intersection(b.index)
        for budget in sorted({i[2] for i in common}):
            keys = [i for i in common if i[2] == budget]
            for name in names:
                lower = MAIN.get(name, ("", "higher"))[1] == "lower"
                diffs: dict[str, list[float]] = {}
                for key in keys:
                    d = a.at[key, name] - b.at[key, name]
                    if not math.isnan(d):
                        diffs.setdefault(key[0], []).append(float(d))
                if not diffs:
                    continue
                interval = stats.paired_difference(diffs, reps, seed)
                games = sorted(diffs)
                seeds = min(len(v) for v in diffs.values())
                poi = math.nan, math.nan, math.nan
                if seeds >= 2:
                    sign = -1.0 if lower else 1.0
                    mx = sign * np.array([[a.at[(g, s, budget), name] for g in games] for s in _seeds(keys, games)])
                    my = sign * np.array([[b.at[(g, s, budget), name] for g in games] for s in _seeds(keys, games)])
                    poi = tuple(stats.probability_of_improvement(mx, my, reps, seed))
                rows.append({"X": x, "Y": y, "comparison": why, "frames": budget, "figure": name,
                             "better": "lower" if lower else "higher", "difference": interval.point,
                             "low": interval.low, "high": interval.high, "P(X better)": poi[0], "poi_low": poi[1],
                             "poi_high": poi[2], "games": len(games), "seeds": sum(len(v) for v in diffs.values())})  # fmt: skip
    return pd.DataFrame(rows)


def _seeds(keys: list[tuple[str, int, int]], games: list[str]) -> list[int]:
    """Seeds present for every game (rliable needs a rectangle of runs x games)."""
    per_game = [{k[1] for k in keys if k[0] == g} for g in games]
    return sorted(set.intersection(*per_game))


def paired_markdown(table, figure: str = OBS_LOSS):
    import pandas as pd

    shown = table[table["figure"] == figure]
    return pd.DataFrame({
        "X": shown["X"], "Y": shown["Y"], "comparison": shown["comparison"], "frames": shown["frames"],
        "X - Y [95% CI]": [md.interval(p, lo, hi) for p, lo, hi in zip(shown["difference"], shown["low"], shown["high"])],
        "P(X better) [95% CI]": [md.interval(p, lo, hi) for p, lo, hi in
                                 zip(shown["P(X better)"], shown["poi_low"], shown["poi_high"])],
        "games x seeds": [f"{g} / {n}" for g, n in zip(shown["games"], shown["seeds"])],
    })  # fmt: skip


# Frames to target ------------------------------------------------------------------------------------


def frames_to_target(budgets: list[int], losses: list[float], target: float) -> float:
    """Frames at which the held-out loss first reaches ``target``, interpolated linearly in log frames between the
    budget before and the first budget at or below it; the first budget if that one is; ``inf`` if none is."""
    for i, (frames, loss) in enumerate(zip(budgets, losses)):
        if loss <= target:
            if i == 0 or not losses[i - 1] > target:
                return float(frames)
            share = (losses[i - 1] - target) / (losses[i - 1] - loss)
            return float(np.exp(np.log(budgets[i - 1]) + share * (np.log(frames) - np.log(budgets[i - 1]))))
    return math.inf


def targets(long, reference: str | None) -> dict[str, float]:
    """Per game: the reference setup's held-out loss at its largest budget, mean over seeds; without a reference,
    the copy-previous-frame reference loss."""
    out = {}
    for game, rows in long.groupby("game"):
        mine = rows[rows["method"] == reference] if reference else rows.iloc[0:0]
        if len(mine):
            out[game] = float(mine[mine["env_steps"] == mine["env_steps"].max()][OBS_LOSS].mean())
        else:
            out[game] = float(rows["heldout/reference/copy/observations"].mean())
    return out


def target_table(long, reference: str | None):
    """Per method, game and seed: frames to the game's target (``inf``: never reached), and per method and game the
    median over seeds, the seeds that reached it and the mean of log2 frames with never-reached runs counted as
    :data:`CENSORED` times the largest budget."""
    import pandas as pd

    goal = targets(long, reference)
    rows = []
    for (method, game, seed), r in long.groupby(["method", "game", "seed"], sort=False):
        r = r.sort_values("env_steps")
        frames = frames_to_target(list(r["env_steps"]), list(r[OBS_LOSS]), goal[game])
        rows.append({"method": method, "game": game, "seed": seed, "target": goal[game], "frames": frames,
                     "largest": int(r["env_steps"].max())})  # fmt: skip
    per_run = pd.DataFrame(rows)
    per_run["counted"] = np.minimum(per_run["frames"], CENSORED * per_run["largest"])
    grouped = per_run.groupby(["method", "game"], sort=False)
    table = grouped.agg(
        target=("target", "first"), seeds=("seed", "count"), reached=("frames", lambda v: int(np.isfinite(v).sum())),
        median_frames=("frames", "median"), log2_frames=("counted", lambda v: float(np.log2(v).mean())),
        largest=("largest", "max"),
    ).reset_index()  # fmt: skip
    return per_run, table


def target_markdown(table):
    import pandas as pd

    def frames(v: float, largest: int) -> str:
        return f"> {largest:,}" if not math.isfinite(v) else f"{v:,.0f}"

    return pd.DataFrame({
        "game": table["game"], "method": table["method"], "target CE": [f"{t:.4f}" for t in table["target"]],
        "reached": [f"{r}/{n}" for r, n in zip(table["reached"], table["seeds"])],
        "median frames": [frames(v, n) for v, n in zip(table["median_frames"], table["largest"])],
        "mean log2 frames": [f"{v:.2f}" for v in table["log2_frames"]],
    })  # fmt: skip


def curve_long(long, name: str):
    """The long table of one figure in the shape of :func:`wmbench.report.agent.curves`."""
    return long[["method", "game", "seed", "env_steps", name]].rename(columns={name: "value"}).dropna()
