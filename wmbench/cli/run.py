"""``wmbench run``, ``eval`` and ``describe``: one cell trained, evaluated or described."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wmbench.cli.options import (
    CONTEXT,
    SEED,
    cell_config,
    check_device,
    default_out,
    echo_json,
    init_options,
    open_run,
    quiet_option,
    registry,
    run_options,
)
from wmbench.errors import WmbenchError, os_error_line


def _stop_after_epoch_on_signal(trainer) -> None:
    """Ctrl-C or SIGTERM: finish the epoch, write its checkpoint and stop; a second Ctrl-C stops at once."""
    import signal

    def handler(signum, frame):
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo(
            "wmbench: stopping after this epoch's checkpoint (Ctrl-C again to stop now and lose the epoch)", err=True
        )

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@click.command(context_settings=CONTEXT)
@run_options
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Run folder [default: runs/GAME/BACKBONE/SEED-TIME]."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device [default: the preset's, auto].")
@click.option("--bf16", is_flag=True, help="bf16 autocast for forward passes.")
@click.option(
    "--resume", type=click.Path(path_type=Path), help="Continue the run in this folder from its last checkpoint."
)
@init_options
@click.option(
    "--dry-run", is_flag=True, help="Check every option and config value, build the agent and envs; write nothing."
)
@quiet_option
def run(
    backbone, game, preset, tokenizer, seed, overrides, out, device, bf16, resume, init, init_parts, dry_run, quiet
):
    """Train and evaluate one cell: a backbone on a game.

    Ctrl-C (or SIGTERM) stops after the current epoch with a checkpoint; --resume continues from it, also
    after a crash or kill -9, with the same episodes and metrics as a run never stopped. One process writes a
    run folder at a time (a second one is refused, naming the first's pid). A write that fails (a full disk) stops
    the run with one line, the folder as it was at its last checkpoint: --resume it once the cause is fixed.

    Exit codes: 0 done, 1 a failure while running, 2 bad input (nothing written), 130 stopped (resumable).

    \b
    Examples:
      wmbench run --backbone scratch --game Pong --preset smoke
      wmbench run -b scratch -g Breakout --set world_model.num_layers=4 --out runs/try
      wmbench run --resume runs/try
      wmbench run --preset iris -g Breakout --init iris-breakout.pt --init-parts tokenizer,world_model
    """
    from wmbench import config as cfg
    from wmbench.engine.trainer import Trainer
    from wmbench.progress import Progress
    from wmbench.rundir import RunDir
    from wmbench.score_notes import marked_score

    check_device(device)
    with Progress.for_terminal(quiet, click.echo) as progress:
        if resume:
            run_dir = RunDir(resume)
            config = cfg.from_dict(run_dir.read_config(), registry(), where=str(run_dir.config))
        else:
            config = cell_config(preset, game, seed, tokenizer, backbone, overrides, device, bf16, init, init_parts)
            run_dir = RunDir(out or default_out(config.game, config.backbone.name, seed))
            run_dir.check_new()
        trainer = Trainer(config, run_dir, registry(), progress=progress)  # everything checked before any write
        if not resume:
            trainer.load_init()
        if dry_run:
            click.echo(f"checked: {config.game}, backbone {config.backbone.name}, tokenizer {config.tokenizer.name}, "
                       f"preset {config.preset}, seed {config.seed}, {config.training.epochs} epochs, run folder "
                       f"{run_dir.path}; nothing written")  # fmt: skip
            return
        with run_dir.writer():
            open_run(run_dir, config, progress, trainer.resume if resume else None)
            if config.init and not resume:
                progress.log(f"loaded {', '.join(config.init_parts)} from {config.init}")
            _stop_after_epoch_on_signal(trainer)
            summary = _fit(trainer, run_dir)
    click.echo(
        f"done: {summary['env_steps']} env steps, {marked_score(summary)}, {summary['wall_time_s']:.0f}s; "
        f"summary in {run_dir.summary}"
    )


def _fit(trainer, run_dir):
    """The trainer's run to its end, or exit 130 with how to continue when stopped (1 when a write failed)."""
    try:
        summary = trainer.fit()
    except OSError as exc:  # a full disk, an I/O error, a read-only folder: every file is as of the last checkpoint
        click.echo(
            f"wmbench: error: {os_error_line(exc)}; the run stopped in epoch {trainer.epoch}, its folder as it was at "
            f"its last checkpoint: fix the cause (free space), then wmbench run --resume {run_dir.path}",
            err=True,
        )
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo(
            f"interrupted in epoch {trainer.epoch}; continue from the last checkpoint: wmbench run --resume {run_dir.path}",
            err=True,
        )
        sys.exit(130)
    if summary is None:
        click.echo(
            f"stopped after epoch {trainer.epoch}, checkpoint written; continue: wmbench run --resume {run_dir.path}",
            err=True,
        )
        sys.exit(130)
    return summary


@click.command("eval", context_settings=CONTEXT)
@click.argument("target", required=False, type=click.Path(path_type=Path))
@click.option(
    "--episodes", "-n", type=click.IntRange(min=1), help="Test episodes [default: the config's eval.final_episodes]."
)
@click.option("--envs", type=click.IntRange(min=1), help="Envs run in lockstep [default: the config's eval.num_envs].")
@click.option(
    "--out", "-o", type=click.Path(path_type=Path), help="Folder for the result [default: TARGET/evals, or evals/]."
)
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", "-s", default=0, show_default=True, type=SEED, help="Seed of the test envs and the policy.")
@init_options
@click.option("--game", "-g", help="With --init: the game.")
@click.option("--preset", "-p", default="iris", show_default=True, help="With --init: the preset the weights fit.")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="With --init: override a config field.")
def eval_(target, episodes, envs, out, device, seed, init, init_parts, game, preset, overrides):
    """Evaluate a run folder, a checkpoint file, or (--init) a reference IRIS checkpoint with the paper's test
    protocol; writes per-episode returns, their mean and the human-normalised score as JSON.

    \b
    Examples:
      wmbench eval runs/Pong/scratch/0-20261124-101500 --episodes 16
      wmbench eval runs/try/checkpoints/last.pt --out evals/try
      wmbench eval --init iris-breakout.pt --game Breakout --preset iris --episodes 100
    """
    from wmbench import evaluation

    if (target is None) == (init is None):
        raise WmbenchError("give a run folder or checkpoint file, or --init with a reference checkpoint (one of them)")
    if init:
        if not game:
            raise WmbenchError("--init needs --game: a reference checkpoint does not say which game it learned")
        config = cell_config(preset, game, seed, "vqvae", "scratch", overrides, init=init, init_parts=init_parts)
        loaded = evaluation.from_reference(init, config, registry())
        out = out or Path("evals") / init.stem
    elif target.is_dir():
        loaded = evaluation.from_run(target, registry())
        out = out or target / "evals"
    else:
        loaded = evaluation.from_checkpoint(target, registry())
        out = out or Path("evals") / target.stem
    e = loaded.config.eval
    path, record = evaluation.run_eval(
        loaded, registry(), out, episodes or e.final_episodes, envs or e.num_envs, device, seed, click.echo
    )
    click.echo(
        f"{record['game']}: {record['episodes']} episodes, return {record['return_mean']:.2f} ± {record['return_std']:.2f} "
        f"(human-normalised {record['human_normalised_score']:.3f}); written to {path}"
    )


@click.command(context_settings=CONTEXT)
@run_options
@init_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(backbone, game, preset, tokenizer, seed, overrides, init, init_parts, as_json):
    """Build the agent of a config and print its parameter counts per component.

    \b
    Example:
      wmbench describe --preset iris --game Breakout --json
    """
    from wmbench import config as cfg
    from wmbench.engine.agent import build_agent
    from wmbench.score_notes import paper_departures, score_caveats

    config = cell_config(preset, game, seed, tokenizer, backbone, overrides, init=init, init_parts=init_parts)
    agent = build_agent(config, registry(), registry().game(config.game).num_actions())
    if config.init:
        from wmbench.checkpoints import load_reference

        load_reference(agent, Path(config.init), config.init_parts)
    data = {
        "preset": config.preset,
        "game": config.game,
        "num_actions": agent.actor_critic.actor_linear.out_features,
        "tokens_per_frame": agent.tokenizer.tokens_per_frame,
        "parameters": agent.parameter_counts(),
        "backbone": {"name": config.backbone.name, **agent.world_model.transformer.describe()},
        "tokenizer": {"name": config.tokenizer.name, **agent.tokenizer.describe()},
        "paper_departures": paper_departures(config, agent.tokenizer.describe()),
        "score_caveats": score_caveats(config),
        "config": cfg.to_dict(config),
    }
    if as_json:
        echo_json(data)
        return
    click.echo(
        f"{config.game} ({data['num_actions']} actions), preset {config.preset}, "
        f"{data['tokens_per_frame']} tokens per frame"
    )
    if config.init:
        click.echo(f"  loaded {', '.join(config.init_parts)} from {config.init}")
    for name, counts in data["parameters"].items():
        click.echo(f"  {name:<13} {counts['total']:>12,} parameters, {counts['trainable']:>12,} trainable")
    for part in ("backbone", "tokenizer"):
        click.echo(f"  {part}: " + ", ".join(f"{k}={v}" for k, v in data[part].items()))
    for note in data["paper_departures"] + [f"not a score: {c}" for c in data["score_caveats"]]:
        click.echo(f"  {note}")
