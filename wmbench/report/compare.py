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

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench import markdown as md
from wmbench.bench.results import markdown_table
from wmbench.errors import WmbenchError
from wmbench.report import agent as tables
from wmbench.report import baselines as published
from wmbench.report import plots, stats
from wmbench.report.agent import IMAGINED_FPS, PUBLISHED, WM_LOSS, Scores
from wmbench.report.runs import Run, load_runs, method_labels, read_bench_csvs
from wmbench.rundir import TRACK_WORLD_MODEL

#: Above this many rows a table is linked from report.md rather than shown inline.
INLINE_ROWS = 40


class _Writer:
    """Writes each output of the report atomically into its folder."""

    def __init__(self, out: Path):
        self.out = out

    def text(self, name: str, text: str) -> str:
        files.write_bytes(self.out / name, text.encode())
        return name

    def figure(self, name: str, fig) -> str:
        files.write_bytes(self.out / name, plots.png(fig))
        return name

    def table(self, name: str, data, shown=None) -> str:
        """``name.csv`` (all columns, full precision) and ``name.md`` (``shown``, or the data); returns the Markdown."""
        self.text(f"{name}.csv", data.to_csv(index=False))
        text = md.table(data if shown is None else shown)
        self.text(f"{name}.md", text)
        return text


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
        skipped = "Skipped: no game with a normalised score is covered by every backbone (and the published baselines shown): see the notes."
        titles = ("Aggregate human-normalised scores", "Probability of improvement", "Performance profiles")
        return [line for t in titles for line in _section(t, skipped)]
    agg = tables.aggregate_table(scores, reps, seed)
    lines = _section(
        "Aggregate human-normalised scores",
        f"IQM, median, mean and optimality gap of human-normalised scores over {len(scores.games)} game(s), with 95% "
        f"stratified-bootstrap intervals over runs ({reps} replications, as rliable computes them); a method with one "
        "run per game gets no interval: [aggregates.csv](aggregates.csv), [aggregates.md](aggregates.md).",
        w.table("aggregates", agg, tables.aggregate_markdown(agg)),
        len(agg),
        w.figure("aggregates.png", plots.plot_aggregates(agg, colours)),
    )
    poi = tables.improvement_table(scores, methods, reps, seed)
    if len(poi):
        text = w.table("improvement", poi, tables.improvement_markdown(poi))
        image = w.figure("improvement.png", plots.plot_improvement(poi)) if poi["P(X > Y)"].notna().any() else ""
        intro = (
            "P(X > Y): the probability that a run of X scores higher than a run of Y on a game, averaged over games, "
            "with a 95% stratified-bootstrap interval; 0.5 means no difference. Needs at least 2 runs per game of "
            "both: [improvement.csv](improvement.csv)."
        )
        lines += _section("Probability of improvement", intro, text, len(poi), image)
    else:
        lines += _section("Probability of improvement", "Only one backbone: nothing to compare.")
    taus = plots.profile_taus(scores.matrices)
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
        image=w.figure("performance_profiles.png", plots.plot_profiles(profiles, taus, colours)),
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
        long = tables.curves(runs, labels, metric, final_from_summary=final)
        if not len(long):
            lines += _section(title, f"Skipped: no metrics line has `{metric}`.")
            continue
        summary = tables.curve_summary(long)
        w.text(f"{name}.csv", summary.to_csv(index=False))
        fig = plots.plot_curves(summary, colours, ylabel, f"{title}: {metric} (mean ± std over seeds)")
        intro += f" against environment steps, mean ± std over seeds per backbone: [{name}.csv]({name}.csv)."
        lines += _section(title, intro, image=w.figure(f"{name}.png", fig))
    return lines


def compare(
    run_dirs: list[Path],
    out: Path,
    baselines: list[str],
    reps: int = stats.REPS,
    seed: int = 0,
    bench_csvs: Sequence[Path] = (),
    warn: Callable[[str], object] = lambda line: None,
) -> Path:
    """Read the run folders (and ``wmbench bench`` CSVs), write tables, plots and ``report.md`` into ``out``;
    returns report.md's path. A folder that cannot be read whole is left out, its problem passed to ``warn`` and
    listed in report.md; none readable is a WmbenchError.

    ``baselines`` names published methods (see :func:`wmbench.report.baselines.available`) to show beside
    the agent runs. Every file is written atomically; files of an earlier report in ``out`` are replaced.
    """
    import wmbench

    if not run_dirs and not bench_csvs:
        raise WmbenchError("no run folders to compare")
    baseline_names = list(dict.fromkeys(published.check(b) for b in baselines))
    runs, problems = load_runs(run_dirs)
    if problems and not runs and not bench_csvs:
        raise WmbenchError(
            problems[0] + (f" (and {len(problems) - 1} other folder(s) unreadable)" if len(problems) > 1 else "")
        )
    for problem in problems:
        warn(f"skipping {problem}")
    bench = read_bench_csvs(bench_csvs)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise WmbenchError(f"--out {out} is a file, not a folder")
    w = _Writer(out)
    agent = [r for r in runs if r.track != TRACK_WORLD_MODEL]
    world_model = [r for r in runs if r.track == TRACK_WORLD_MODEL]
    parts = [f"{len(agent)} agent run(s)"] * bool(agent) + [f"{len(world_model)} world-model run(s)"] * bool(
        world_model
    )
    parts += [f"{len(bench_csvs)} throughput CSV(s) of `wmbench bench`"] * bool(bench_csvs)
    lines = [
        "# wmbench report",
        "",
        f"Made by `wmbench compare` (wmbench {wmbench.__version__}) from {', '.join(parts)}.",
        "",
    ]
    if problems:
        lines += [f"{len(problems)} run folder(s) could not be read whole and are left out:", "",
                  *[f"- {p}" for p in problems], ""]  # fmt: skip
    if agent:
        lines += _agent_sections(w, agent, baseline_names, reps, seed)
    if world_model:
        lines += _data_efficiency_sections(w, world_model, reps, seed)
    if bench is not None:
        w.text("bench.csv", bench.to_csv(index=False))
        text = markdown_table(out / "bench.csv")
        w.text("bench.md", text)
        lines += _section(
            "Throughput (wmbench bench)",
            "The latest figures of every setup measured by `wmbench bench`, medians over its repeats; every row of "
            "the CSVs found (the `source` column names each file) in [bench.csv](bench.csv).",
            text,
            len(bench),
        )
    return out / w.text("report.md", "\n".join(lines).rstrip() + "\n")


def _agent_sections(w: _Writer, runs: list[Run], baseline_names: list[str], reps: int, seed: int) -> list[str]:
    """Everything about the agent track's runs: aggregates, per-game scores, curves, throughput, runs."""
    df = tables.runs_table(runs)
    methods = list(dict.fromkeys(df["method"]))
    colours = plots.palette(methods + [f"{b}{PUBLISHED}" for b in baseline_names])
    scores = tables.score_matrices(df, methods, baseline_names)
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
        '(rows and columns marked "published": their authors\' scores, see `results/baselines/README.md` in the '
        "wmbench repository). Scores are final evaluation returns; human-normalised score = "
        "(score - random) / (human - random).",
        "",
    ]
    if notes:
        lines += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    lines += _aggregate_sections(w, scores, methods, colours, reps, seed)

    per_game = tables.per_game_table(df, methods, baseline_names)
    lines += _section(
        "Per-game scores",
        "Raw returns, mean ± std over seeds (n = seeds) per backbone, beside the published per-game means: "
        "[per_game.csv](per_game.csv), [per_game.md](per_game.md).",
        w.table("per_game", per_game, tables.per_game_markdown(per_game, methods, baseline_names)),
        len(per_game),
    )
    lines += _curve_sections(w, runs, colours)
    throughput = tables.throughput_table(df)
    lines += _section(
        "Throughput",
        "One row per setup, means over its runs: wall time (training and evaluation), imagined frames/s (the last "
        f"logged `{IMAGINED_FPS}` of each run), peak memory (the largest over runs), parameter counts (median over "
        "runs; action sets differ between games): [throughput.csv](throughput.csv).",
        w.table("throughput", throughput),
        len(throughput),
    )
    shown = df.drop(columns=["backbone", "path", "world_model_trainable", "tokenizer_params", "actor_critic_params"])
    lines += _section(
        "Runs", "One row per run: [runs.csv](runs.csv), [runs.md](runs.md).", w.table("runs", df, shown), len(df)
    )
    return lines


def _data_efficiency_sections(w: _Writer, runs: list[Run], reps: int, seed: int) -> list[str]:
    """The world-model track: figures per budget and aggregated, paired comparisons, frames to target, cost, curves."""
    from wmbench.report import data_efficiency as de

    de.check_shared_inputs(runs)
    runs = de.in_file_order(runs)
    labels = de.labels_of(runs)
    methods = list(dict.fromkeys(labels))
    long = de.long_table(runs, labels)
    colours = plots.palette(methods)
    reference = next((m for m, r in zip(labels, runs) if r.summary["backbone"] == "scratch"), None)
    seeds = ", ".join(map(str, sorted(long["seed"].unique())))
    lines = [
        "# World-model track",
        "",
        f"{len(runs)} run folder(s): {len(methods)} setup(s) ({', '.join(methods)}) on {long['game'].nunique()} "
        f"game(s), seeds {seeds}. Per game and seed one dataset (a mix of behaviour policies, split by whole episodes "
        "into train, validation and held-out parts, and an out-of-distribution part) and one frozen tokenizer, shared "
        "by every setup (checked: same dataset file and tokenizer sha256). Each budget is a fresh world model trained "
        "on that many frames for at most the same number of optimiser steps, its best validated state measured on the "
        "held-out episodes. Cross-entropies (CE) in nats per token, lower is better.",
        "",
    ]
    table = de.budget_table(long)
    lines += _section(
        "Per game and budget",
        "Mean ± std over seeds: held-out CE, beside the copy-previous-frame and unigram references on the same tokens; "
        "CE on frames without history (a window's first frame), with history, and on tokens that changed from the "
        "previous frame; CE on the out-of-distribution episodes; balanced accuracy, precision and recall of the reward "
        "and end heads over every held-out step; imagined rollouts after a real burn-in (PSNR and token accuracy) "
        "beside copying the last real frame. Every figure: [data_efficiency.csv](data_efficiency.csv).",
        w.table("data_efficiency", table, de.budget_markdown(table, long)),
        len(table),
    )
    agg = de.aggregate_table(long)
    lines += _section(
        "Aggregated over games",
        "Per setup and budget, the mean over games of each game's mean over seeds: "
        "[data_efficiency_aggregate.csv](data_efficiency_aggregate.csv).",
        w.table("data_efficiency_aggregate", agg),
        len(agg),
    )
    pairs = de.comparison_pairs(runs, labels)
    paired = de.paired_table(long, pairs, reps, seed)
    if len(paired):
        shown = de.paired_markdown(paired)
        lines += _section(
            "Paired comparisons",
            "Held-out CE of X minus Y, paired by game and seed (the same data and tokens), at each budget: the mean "
            f"over games of the mean over seeds with a 95% bootstrap interval resampling seeds within games ({reps} "
            "replications), and rliable's probability that a run of X beats a run of Y (0.5: no difference). Pairs: "
            "each setup against each scratch setup, and setups whose configs differ in one key. Negative is better "
            "for X. Every compared figure (CE with history, on changed tokens, out of distribution, reward and end "
            "balanced accuracy, rollout PSNR): [paired.csv](paired.csv).",
            w.table("paired", paired, shown),
            len(shown),
            w.figure("paired.png", plots.plot_paired(paired[paired["figure"] == de.OBS_LOSS],
                                                     "Held-out CE, X − Y paired by seed (95% intervals)")),
        )  # fmt: skip
    per_run, targets = de.target_table(long, reference)
    w.text("frames_to_target_runs.csv", per_run.to_csv(index=False))
    what = f"`{reference}` at its largest budget" if reference else "the copy-previous-frame reference"
    lines += _section(
        "Frames to target",
        f"Per game the target is the held-out CE of {what} (mean over seeds); per run, the frames at which its CE "
        'reaches it, interpolated in log frames between budgets; never reached reads "> largest budget" and counts '
        f"as {de.CENSORED:g}x the largest budget in the mean of log2 frames: [frames_to_target.csv](frames_to_target.csv), "
        "[frames_to_target_runs.csv](frames_to_target_runs.csv).",
        w.table("frames_to_target", targets, de.target_markdown(targets)),
        len(targets),
    )
    cost = de.cost_table(runs, labels, long)
    lines += _section(
        "Cost",
        "Per setup, means over its cells: world-model parameters (trainable and total), the learning rates chosen "
        "(rate x cells), optimiser steps run and the best validated step, wall-clock per cell and per run (training, "
        "validation and measures), threads and device, and imagined frames per second in the held-out rollouts: "
        "[cost.csv](cost.csv).",
        w.table("cost", cost),
        len(cost),
    )
    psnr = de.longest_rollout(long)
    plotted = [(de.OBS_LOSS, "wm_heldout_loss", "held-out CE (nats)"),
               ("heldout/loss/observations_changed", "wm_changed_loss", "CE, changed tokens (nats)"),
               ("ood/loss/observations", "wm_ood_loss", "out-of-distribution CE (nats)"),
               (psnr, "wm_rollout_psnr", "PSNR (dB)")]  # fmt: skip
    for name, file, ylabel in plotted:
        if not name or name not in long:
            continue
        summary = tables.curve_summary(de.curve_long(long, name))
        fig = plots.plot_curves(summary, colours, ylabel, f"World-model track: {name} (mean ± std over seeds)",
                                logx=True, xlabel="frames of training data")  # fmt: skip
        lines += _section(
            f"Curves: {name}",
            f"Per game, `{name}` against frames of training data (log scale), mean ± std over seeds per setup: "
            f"[{file}.csv]({file}.csv).",
            image=w.figure(f"{file}.png", fig),
        )
        w.text(f"{file}.csv", summary.to_csv(index=False))
    return lines
