"""``wmbench sweep``: every cell of a benchmark file, here or on a cluster (the runner is :mod:`wmbench.sweep`)."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from wmbench.cli.options import CONTEXT, quiet_option
from wmbench.errors import WmbenchError


@click.command(context_settings=CONTEXT)
@click.argument("benchmark", required=False, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Sweep folder (created; rerun to resume).")
@click.option(
    "--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1), help="Cells run at the same time (local)."
)
@click.option(
    "--executor", "-x", help="Where cells run: local, slurm, ray [default: the file's [executor] name, else local]."
)
@click.option(
    "--executor-option",
    "-E",
    "executor_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An executor option (repeatable), over the file's [executor] table: partition=gpu, gpus_per_cell=1.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="List the cells and their commands, and what would be submitted; run and write nothing.",
)
@click.option(
    "--status", "status_dir", type=click.Path(path_type=Path), help="Report the cells of this sweep folder and exit."
)
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
@quiet_option
def sweep(benchmark: Path | None, out: Path | None, jobs: int, executor: str | None, executor_options: tuple[str, ...],
          dry_run: bool, status_dir: Path | None, as_json: bool, quiet: bool) -> None:  # fmt: skip
    """Run every cell of a benchmark file, each as its own wmbench process: JOBS at a time here, or as Slurm jobs
    or Ray actors (--executor).

    The file is checked whole before anything runs. A finished cell is skipped, an interrupted one resumed from
    its checkpoint and a cell whose job is still queued or running left alone, so rerunning the same command
    continues a sweep; a failed cell does not stop the others (its output is kept in its folder's log.txt, and
    the next sweep runs it again from the start). OUT/index.json and OUT/index.csv list every cell with its
    status, duration, folder, executor, job id and state, and command. On a terminal a progress bar shows the
    cells over, running, queued and failed, and the time left; elsewhere each cell that ends prints one line.

    \b
    Examples:
      wmbench sweep benchmarks/smoke.toml --out sweeps/smoke --jobs 2
      wmbench sweep benchmarks/atari100k.toml --out sweeps/a100k --executor slurm -E partition=gpu -E gpus_per_cell=1
      wmbench sweep benchmarks/smoke.toml --out sweeps/smoke --executor ray -E address=head:6379 --dry-run
      wmbench sweep --status sweeps/a100k --json
      wmbench compare sweeps/smoke --out sweeps/smoke/report

    Exit codes: 0 every cell finished, 1 some cell failed, 2 bad input, 130 interrupted (rerun to resume).
    """
    from wmbench.benchmark import load_benchmark
    from wmbench.executors.options import make_executor
    from wmbench.executors.status import status, status_lines
    from wmbench.progress import Progress
    from wmbench.sweep import Sweep

    if status_dir is not None:
        report = status(status_dir)
        click.echo(json.dumps(report, indent=2) if as_json else "\n".join(status_lines(report)))
        return
    if benchmark is None or out is None:
        raise WmbenchError("wmbench sweep needs a benchmark file and --out (or --status DIR)")
    bench = load_benchmark(benchmark)
    where = f"benchmark file {benchmark}: executor"
    engine = make_executor(executor, bench.executor, executor_options, Path(out).absolute(), jobs, where)
    progress = Progress.for_terminal(quiet, click.echo)
    runner = Sweep(bench, out, jobs, executor=engine, progress=progress)
    if dry_run:
        runner.check_folder()
        plan = runner.plan()
        for cell, action in plan:
            click.echo(f"{cell.id}  [{action}]  {shlex.join(runner.argv(cell, action))}")
        described = engine.describe([runner.task(c, a) for c, a in plan if a != "skip"])
        if described:
            click.echo(described.rstrip())
        return
    with progress:
        rows = runner.run()
    failed = [r for r in rows if r["status"] != "finished"]
    total = sum(r["duration_s"] or 0 for r in rows)
    click.echo(f"{len(rows) - len(failed)} of {len(rows)} cells finished ({total:.0f}s of cell time); "
               f"index: {runner.out / 'index.csv'}")  # fmt: skip
    if failed:
        click.echo(f"wmbench: {len(failed)} cell(s) did not finish: {', '.join(r['id'] for r in failed)}", err=True)
        sys.exit(1)
