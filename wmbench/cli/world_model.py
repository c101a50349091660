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
    """Data efficiency of a world model alone: held-out losses and imagined-rollout error against frames seen.

    A fixed dataset of random-policy transitions (collected once per game and seed, cached under
    $WMBENCH_CACHE/datasets) is split into train and held-out episodes; the tokenizer and world model train on
    growing prefixes of the train part, and at each budget of world_model_track.budgets the held-out figures
    go into metrics.jsonl; summary.json adds the loss at each budget and the frames needed to reach
    world_model_track.target_loss.

    \b
    Examples:
      wmbench world-model --backbone scratch --game Pong
      wmbench world-model -b llm-lora -g Breakout --set backbone.model=smollm2-135m --set world_model_track.budgets=[800,1600]
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
    target = summary["frames_to_target"]
    click.echo(
        f"done: held-out next-token loss {summary['final'][OBS_LOSS]:.4f} after {summary['env_steps']} "
        f"frames; target {summary['target_loss']} reached {'after ' + str(target) + ' frames' if target else 'at no budget'}; "
        f"{summary['wall_time_s']:.0f}s; summary in {run_dir.summary}"
    )
