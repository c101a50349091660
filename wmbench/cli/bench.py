"""``wmbench bench``: one setup's throughput, or a suite's, beside ALE's (see :mod:`wmbench.bench.measure`)."""

from __future__ import annotations

from pathlib import Path

import click

from wmbench import files
from wmbench.cli.options import CONTEXT, cell_config, quiet_option
from wmbench.errors import WmbenchError

BATCH, REPEATS = 8, 5
"""The bench's defaults, of a suite's cells too."""


@click.command(context_settings=CONTEXT)
@click.option("--backbone", "-b", default="scratch", show_default=True, help="Backbone id (wmbench list backbones).")
@click.option("--tokenizer", "-t", default="vqvae", show_default=True, help="Tokenizer id.")
@click.option("--game", "-g", default="Breakout", show_default=True, help="Atari 100k game (wmbench list games).")
@click.option("--preset", "-p", default="smoke", show_default=True, help="Config preset (wmbench list presets).")
@click.option(
    "--batch",
    "-n",
    default=BATCH,
    show_default=True,
    type=click.IntRange(min=1),
    help="Imagined environments, segments per world-model batch.",
)
@click.option(
    "--device",
    type=click.Choice(["auto", "cpu", "cuda"]),
    default="auto",
    show_default=True,
    help="auto: cuda when available.",
)
@click.option("--bf16", is_flag=True, help="bf16 autocast for every measured pass.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable).")
@click.option(
    "--repeats", "-r", default=REPEATS, show_default=True, type=click.IntRange(1), help="Timed repeats per measure."
)
@click.option("--csv", "csv_path", type=click.Path(path_type=Path), help="Append the rows to this CSV.")
@click.option(
    "--suite",
    type=click.Path(path_type=Path),
    help="Measure every cell of a throughput benchmark file (other setup options ignored); needs --csv, writes a "
    "Markdown table beside it.",
)
@click.option(
    "--projection/--no-projection",
    default=True,
    show_default=True,
    help="Also time one step of each training phase at the preset's batch sizes, and project a whole run's hours.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@quiet_option
def bench(backbone, tokenizer, game, preset, batch, device, bf16, overrides, repeats, csv_path, suite, projection,
          as_json, quiet):  # fmt: skip
    """Measure one setup's throughput beside ALE's: imagination (with and without decoding, at short and full
    context), world-model training, tokenizer, actor-critic updates, peak memory; and the wall time of one whole run
    of the preset, projected from one step of each training phase (collection, tokenizer, world model,
    actor-critic) at the preset's batch sizes (evaluation not counted).

    \b
    Examples:
      wmbench bench --backbone scratch --preset iris --batch 8 --repeats 3
      wmbench bench -b llm-lora --set backbone.model=smollm2-135m --csv results/throughput.csv --json
      wmbench bench --suite benchmarks/throughput.toml --csv results/throughput.csv
      wmbench bench -p iris --device cuda --bf16 --set training.actor_critic.fixed_shape=true  # CUDA graphs

    Exit codes: 0 done, 1 a failure while measuring, 2 bad input (nothing measured or written).
    """
    import json

    import torch

    from wmbench.bench.results import append_csv
    from wmbench.progress import Progress

    if device == "cuda" and not torch.cuda.is_available():
        raise WmbenchError("--device cuda was asked for, but no CUDA device is available")
    if csv_path and csv_path.exists():
        append_csv(csv_path, [])  # refuses a foreign file before anything is measured
    if suite:
        setups, device = _suite(suite, csv_path)
        jobs = [(cell_config(s.preset, s.game, 0, s.tokenizer, s.backbone, s.overrides, device, bf16), s.overrides,
                 s.batch, s.repeats) for s in setups]  # fmt: skip
    else:
        setups = []
        jobs = [(cell_config(preset, game, 0, tokenizer, backbone, overrides, device, bf16), overrides, batch, repeats)]
    log = (lambda line: click.echo(line, err=True)) if not (as_json or quiet) else (lambda _: None)
    with Progress.for_terminal(quiet or as_json, log) as progress:
        out = _measure_all(jobs, csv_path, suite, setups, as_json, progress, projection)
    if suite:
        log(f"table written to {csv_path.with_suffix('.md')}")
    if as_json:
        click.echo(json.dumps(out, indent=2))


def _suite(path: Path, csv_path: Path | None) -> tuple[list, str | None]:
    """The cells of a throughput benchmark file, the bench's defaults filled in, and the file's device."""
    from dataclasses import replace

    from wmbench.benchmark import TRACKS, cells, load_benchmark

    if not csv_path:
        raise WmbenchError("--suite needs --csv: the file its rows are appended to")
    suite = load_benchmark(path)
    if not TRACKS[suite.track].measures:
        raise WmbenchError(
            f"--suite takes a benchmark file of the throughput track; {path} is of the {suite.track} track"
        )
    return [replace(c, batch=c.batch or BATCH, repeats=c.repeats or REPEATS) for c in cells(suite)], suite.device


def _measure_all(jobs, csv_path, suite, setups, as_json, progress, projection) -> list[dict]:
    """Measure every setup in turn, appending its rows to the CSV (and the suite's page) as soon as it is done."""
    from wmbench.bench.measure import measure
    from wmbench.bench.results import append_csv, records, suite_page

    out = []
    for config, overrides, batch, repeats in progress.track(jobs, "setups"):
        name = f"{config.backbone.name} {' '.join(overrides)} at {config.preset}, batch {batch}".replace("  ", " ")
        rows = measure(config, batch, repeats, lambda what, name=name: progress.log(f"{name}: {what}"), projection)
        found = records(config, batch, list(overrides), rows)
        if csv_path:
            append_csv(csv_path, found)
        if suite:  # after every setup, so that an interrupted suite leaves the table of what it measured
            files.write_bytes(csv_path.with_suffix(".md"), suite_page(suite, setups, csv_path).encode())
        out += found
        if not as_json:
            for r in found:
                ratio = f"  ({r['ratio_to_ale']}x ALE)" if r["ratio_to_ale"] != "" else ""
                click.echo(
                    f"{r['measure']:<36} {r['median']:>12,.4g} {r['unit']:<10} [{r['p25']:.4g}, {r['p75']:.4g}]{ratio}"
                )
            if projection:
                click.echo(_projection_line(config, {r["measure"]: r["median"] for r in found}))
    return out


def _projection_line(config, medians: dict[str, float]) -> str:
    """The projected wall time of a run of ``config`` (h:mm:ss), with each phase's share."""
    from datetime import timedelta

    from wmbench.bench.projection import PHASES

    def duration(hours: float) -> str:
        return str(timedelta(seconds=round(hours * 3600)))

    shares = " + ".join(f"{p.replace('_', ' ')} {duration(medians[f'projected_hours_{p}'])}" for p in PHASES)
    return (
        f"projected run ({config.training.epochs} epochs of the {config.preset} schedule, evaluation not counted): "
        f"{duration(medians['projected_hours'])} = {shares}"
    )
