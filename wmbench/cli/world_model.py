"""``wmbench world-model``: the world-model track of one cell."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wmbench.cli.options import CONTEXT, SEED, cell_config, default_out, open_run, quiet_option, registry
from wmbench.errors import os_error_line


@click.command("world-model", context_settings=CONTEXT)
@click.option("--backbone", "-b", default="scratch", show_default=True, help="Backbone id (wmbench list backbones).")
@click.option("--game", "-g", default="Pong", show_default=True, help="Atari 100k game (wmbench list games).")
@click.option("--preset", "-p", default="smoke", show_default=True, help="Config preset (wmbench list presets).")
@click.option("--tokenizer", "-t", default="vqvae", show_default=True, help="Tokenizer id.")
@click.option(
    "--seed", "-s", default=0, show_default=True, type=SEED, help="Seed of training and of the dataset's collection."
)
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable).")
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Run folder [default: runs/GAME/BACKBONE/SEED-TIME]."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device [default: the preset's, auto].")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this folder from its last budget.")
@quiet_option
def world_model(backbone, game, preset, tokenizer, seed, overrides, out, device, resume, quiet):
    """Data efficiency of a world model alone: held-out figures of a fresh world model per budget of frames.

    A fixed dataset per game and seed (random, sticky-random and scripted play, collected once and cached under
    $WMBENCH_CACHE/datasets) is split by whole episodes into train, validation and held-out parts, plus an
    out-of-distribution part (world_model_track.ood_steps); a tokenizer trained once on the train part is frozen
    and shared by every backbone (its sha256 is in summary.json). Each budget of world_model_track.budgets is a
    fresh world model trained on that many train frames for at most world_model_track.steps optimiser steps, the
    best validated state kept; with several world_model_track.lrs the learning rate is chosen on validation at the
    largest budget. metrics.jsonl gets one line per run, summary.json the figures per budget.

    \b
    Examples:
      wmbench world-model --backbone scratch --game Pong
      wmbench world-model -b llm-full -g Breakout --set backbone.model=smollm2-135m --set world_model_track.input_scale=backbone
      wmbench world-model --resume runs/Pong/scratch/0-20260101-120000

    Exit codes: 0 done, 1 a failure while running, 2 bad input, 130 interrupted (resume with --resume).
    """
    from wmbench import config as cfg
    from wmbench.progress import Progress
    from wmbench.rundir import OBS_LOSS, RunDir
    from wmbench.tracks.world_model import WorldModelTrack

    with Progress.for_terminal(quiet, click.echo) as progress:
        if resume:
            run_dir = RunDir(resume)
            config = cfg.from_dict(run_dir.read_config(), registry(), where=str(run_dir.config))
        else:
            config = cell_config(preset, game, seed, tokenizer, backbone, overrides, device)
            run_dir = RunDir(out or default_out(config.game, config.backbone.name, seed))
            run_dir.check_new()
        track = WorldModelTrack(config, run_dir, registry(), progress=progress)  # checks settings and data first
        with run_dir.writer():
            open_run(run_dir, config, progress, track.resume if resume else None)
            try:
                summary = track.fit()
            except OSError as exc:
                click.echo(f"wmbench: error: {os_error_line(exc)}; the run's folder is as it was at its last budget: "
                           f"fix the cause (free space), then wmbench world-model --resume {run_dir.path}", err=True)  # fmt: skip
                sys.exit(1)
            except KeyboardInterrupt:
                click.echo(f"interrupted; continue with: wmbench world-model --resume {run_dir.path}", err=True)
                sys.exit(130)
    final = summary["final"]
    click.echo(
        f"done: held-out next-token loss {final[OBS_LOSS]:.4f} after {summary['env_steps']} frames "
        f"(copy-previous-frame reference {final['heldout/reference/copy/observations']:.4f}), learning rate "
        f"{summary['lr']:g}; {summary['wall_time_s']:.0f}s; summary in {run_dir.summary}"
    )
