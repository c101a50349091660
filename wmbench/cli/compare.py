"""The ``wmbench compare`` command."""

from __future__ import annotations

from pathlib import Path

import click

from wmbench.cli.options import CONTEXT, SEED
from wmbench.report.baselines import DEFAULT


@click.command(context_settings=CONTEXT)
@click.argument("run_dirs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option(
    "--out", "out", required=True, type=click.Path(path_type=Path), help="Report folder to write (created if missing)."
)
@click.option(
    "--baseline",
    "baselines",
    multiple=True,
    help=f"Published method to show beside the runs (repeatable; default: {', '.join(DEFAULT)}; 'none' for none).",
)
@click.option("--reps", default=2000, show_default=True, type=click.IntRange(min=100), help="Bootstrap replications.")
@click.option("--seed", default=0, show_default=True, type=SEED, help="Seed of the bootstrap.")
def compare(run_dirs: tuple[Path, ...], out: Path, baselines: tuple[str, ...], reps: int, seed: int) -> None:
    """Compare finished runs: tables, aggregates with bootstrap intervals, plots and a report.md.

    RUN_DIR is a run folder or any folder with run folders below it, a sweep folder say (every folder
    holding a summary.json is taken, of the agent and the world-model tracks; unfinished runs are skipped
    with a warning; the throughput.csv files of `wmbench bench` below it make a throughput table).

    \b
    Examples:
      wmbench compare runs/ --out report/
      wmbench compare sweep/Pong sweep/Breakout --out report/ --baseline IRIS --baseline TWM
      wmbench compare runs/ --out report/ --baseline none

    A run folder that cannot be read whole (a torn metrics line, a corrupt config.json, a summary of another schema)
    is named in one line and left out; the others are compared.

    Exit codes: 0 report written, 2 bad input (a missing folder, none readable, an unknown baseline).
    """
    from wmbench.report.compare import compare as run_compare
    from wmbench.report.runs import find_bench_csvs
    from wmbench.rundir import find_run_dirs

    chosen = [b for b in baselines if b.lower() != "none"] if baselines else list(DEFAULT)
    csvs = find_bench_csvs(list(run_dirs))
    folders, unfinished = find_run_dirs(list(run_dirs), also=csvs)
    if unfinished:
        shown = ", ".join(map(str, unfinished[:5])) + (", ..." if len(unfinished) > 5 else "")
        click.echo(f"wmbench: skipping {len(unfinished)} unfinished run folder(s) (no summary.json): {shown}", err=True)
    skipped: list[str] = []

    def warn(line: str) -> None:
        skipped.append(line)
        click.echo(f"wmbench: warning: {line}", err=True)

    report = run_compare(folders, out, chosen, reps=reps, seed=seed, bench_csvs=csvs, warn=warn)
    extra = f" and {len(csvs)} throughput CSV(s)" if csvs else ""
    click.echo(f"{len(folders) - len(skipped)} run(s) compared{extra}; report: {report}")
