"""What a wider learning-rate grid would change in a world-model sweep: for each cell of an edge sweep (a setup of
the main sweep at one more rate, at the largest budget; benchmarks/llm-data-efficiency-lr-edge.toml), set its
validation loss beside the main cell's grid, choose again on validation, and report the held-out loss at that
budget under the widened grid, per setup, and the paired differences it moves (mean over games of the mean over
seeds, 95% bootstrap stratified over games: wmbench.report.stats.paired_difference).

An edge setup's label is the main setup's label, a dash and the rate (``smollm2-full-1e-3``). Cells must share the
frozen tokenizer (its sha256) of their main cell. Held-out data chooses nothing here either.

    python benchmarks/lr_edge.py sweeps/llm-data-efficiency sweeps/llm-data-efficiency-lr-edge [--out edge.md]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from wmbench.files import write_bytes
from wmbench.report.data_efficiency import in_file_order, labels_of
from wmbench.report.runs import load_runs
from wmbench.report.stats import paired_difference
from wmbench.rundir import find_run_dirs

LOSS = "heldout/loss/observations"
PAIRS = [("smollm2-full", "smollm2-full-random"), ("smollm2-full", "scratch-matched"),
         ("smollm2-full-random", "scratch-matched"), ("minilm-full", "minilm-full-random"),
         ("scratch-iris", "scratch-matched")]  # fmt: skip


def finished_cells(sweep: Path) -> dict[tuple[str, str, int], dict]:
    """``(label, game, seed) -> summary`` of the sweep's finished cells, read as ``wmbench compare`` reads them."""
    folders, _ = find_run_dirs([sweep / "cells"])
    runs = in_file_order(load_runs(folders)[0])  # the benchmark file's order, as compare's bootstrap takes games
    return {(label, r.summary["game"], r.summary["seed"]): r.summary for r, label in zip(runs, labels_of(runs))}


def base_label(label: str, labels: set[str]) -> str | None:
    """The main setup an edge label extends (the longest ``<main>-<rate>`` match), or None."""
    for main in sorted(labels, key=len, reverse=True):
        if label.startswith(main + "-"):
            try:
                float(label[len(main) + 1 :])
            except ValueError:
                continue
            return main
    return None


def at_budget(summary: dict, budget: int) -> dict:
    return next(b for b in summary["per_budget"] if b["env_steps"] == budget)


def widened(main: dict, edge: dict) -> list[dict]:
    """One row per edge cell: the main grid's choice and validation loss, the extra rate's, the widened choice and
    the held-out loss at the edge sweep's budget before and after."""
    labels = {k[0] for k in main}
    rows = []
    for (label, game, seed), cell in sorted(edge.items(), key=lambda kv: (kv[0][1], kv[0][0], kv[0][2])):
        setup = base_label(label, labels)
        ref = main.get((setup, game, seed)) if setup else None
        if ref is None:
            continue
        if cell["frozen_tokenizer"]["sha256"] != ref["frozen_tokenizer"]["sha256"]:
            raise SystemExit(f"{label} {game} seed {seed}: its frozen tokenizer is not the main cell's")
        budget = cell["budgets"][-1]
        extra = at_budget(cell, budget)  # one rate: no search, the run itself
        best = min(ref["lr_search"], key=lambda r: r["validation_loss"])
        before = at_budget(ref, budget)[LOSS]
        takes = extra["validation_loss"] < best["validation_loss"]
        rows.append({"game": game, "setup": setup, "seed": seed, "budget": budget, "lr": best["lr"],
                     "validation": best["validation_loss"], "extra_lr": extra["lr"],
                     "extra_validation": extra["validation_loss"], "takes": takes, "heldout": before,
                     "heldout_widened": extra[LOSS] if takes else before})  # fmt: skip
    return rows


def _interval(diffs: dict[str, list[float]]) -> str:
    i = paired_difference(diffs)
    return f"{i.point:+.3f} [{i.low:+.3f}, {i.high:+.3f}]"


def report(main: dict, rows: list[dict]) -> str:
    lines = ["| game | setup | seed | grid's choice (validation) | extra rate (validation) | widened choice | "
             "held-out CE | held-out CE, widened |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    for r in rows:
        lines.append(f"| {r['game']} | {r['setup']} | {r['seed']} | {r['lr']:g} ({r['validation']:.3f}) | "
                     f"{r['extra_lr']:g} ({r['extra_validation']:.3f}) | {r['extra_lr' if r['takes'] else 'lr']:g} | "
                     f"{r['heldout']:.3f} | {r['heldout_widened']:.3f} |")  # fmt: skip
    budgets = {r["budget"] for r in rows}
    if len(budgets) != 1:
        return "\n".join(lines) + "\n"
    (budget,) = budgets
    widened_loss = {(r["setup"], r["game"], r["seed"]): r["heldout_widened"] for r in rows}

    def loss(setup: str, game: str, seed: int, widen: bool) -> float:
        key = (setup, game, seed)
        return widened_loss[key] if widen and key in widened_loss else at_budget(main[key], budget)[LOSS]

    lines += ["", f"Paired differences of held-out CE at {budget} frames, X - Y (negative: X better):", "",
              "| X - Y | main grids | widened grids | games x seeds |", "| --- | --- | --- | --- |"]  # fmt: skip
    for x, y in PAIRS:
        keys = [(g, s) for (lab, g, s) in main if lab == x and (y, g, s) in main]
        if not keys:
            continue
        cols = []
        for widen in (False, True):
            diffs: dict[str, list[float]] = {}
            for g, s in keys:
                diffs.setdefault(g, []).append(loss(x, g, s, widen) - loss(y, g, s, widen))
            cols.append(_interval(diffs))
        lines.append(f"| {x} - {y} | {cols[0]} | {cols[1]} | {len({g for g, _ in keys})} / {len(keys)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("main", type=Path, help="the main sweep folder")
    parser.add_argument("edge", type=Path, help="the edge sweep folder")
    parser.add_argument("--out", type=Path, help="also write the tables here (Markdown)")
    args = parser.parse_args()
    for folder in (args.main, args.edge):
        if not (folder / "index.json").is_file():
            parser.error(f"{folder} is not a sweep folder (no index.json)")
    main_cells, edge_cells = finished_cells(args.main), finished_cells(args.edge)
    text = report(main_cells, widened(main_cells, edge_cells))
    print(text, end="")
    if args.out:
        write_bytes(args.out, text.encode())


if __name__ == "__main__":
    main()
