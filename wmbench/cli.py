"""The ``wmbench`` command line.

Exit codes: 0 success, 1 a failure while running, 2 bad input (one line on stderr, nothing written),
130 interrupted (a resumable checkpoint is kept).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import click

import wmbench
from wmbench.errors import WmbenchError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def _registry():
    from wmbench.plugins import registry

    return registry()


def _config(preset, game, seed, tokenizer, backbone, overrides, device=None, bf16=False, init=None, init_parts=None):
    from wmbench import config as cfg

    extra = {}
    if device:
        extra["device"] = device
    if bf16:
        extra["bf16"] = True
    if init:
        if not init.is_file():
            raise WmbenchError(f"--init {init} does not exist")
        extra["init"], extra["init_parts"] = str(init), [p.strip() for p in init_parts.split(",") if p.strip()]
    return cfg.resolve(preset, _registry().game(game).name, seed, tokenizer, backbone, list(overrides), _registry(), extra)


def _default_out(game: str, backbone: str, seed: int) -> Path:
    return Path("runs") / game / backbone / f"{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


class Cli(click.Group):
    """Turns user mistakes into one line and exit code 2, and loads plugin commands."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            return super().main(args=args, prog_name=prog_name or "wmbench", standalone_mode=False, **kwargs) or 0
        except (WmbenchError, click.UsageError, click.BadParameter) as exc:
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            click.echo(f"wmbench: error: {message}", err=True)
            sys.exit(2)
        except click.exceptions.Exit as exc:
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("wmbench: aborted", err=True)
            sys.exit(130)

    def list_commands(self, ctx):
        self._add_plugin_commands()
        return super().list_commands(ctx)

    def get_command(self, ctx, name):
        command = super().get_command(ctx, name)
        if command is None:
            self._add_plugin_commands()
            command = super().get_command(ctx, name)
        return command

    def resolve_command(self, ctx, args):
        name = args[0] if args else None
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            from wmbench.errors import unknown

            raise unknown("command", name, self.list_commands(ctx))
        return super().resolve_command(ctx, args)

    def _add_plugin_commands(self):
        """Add the plugins' commands; a broken plugin is named in one line on stderr, and only the commands that use
        the plugins fail (wmbench --help and wmbench plugins still work)."""
        if not getattr(self, "_plugins_loaded", False):
            self._plugins_loaded = True
            from wmbench.plugins import load

            load().add_commands(self)
            for problem in load().problems:
                click.echo(f"wmbench: warning: {problem}", err=True)


@click.group(cls=Cli, context_settings=CONTEXT)
@click.version_option(wmbench.__version__, "--version", prog_name="wmbench")
def cli():
    """Benchmark transformer backbones as IRIS world models on Atari 100k.

    \b
    Examples:
      wmbench run --backbone scratch --game Pong            # the smoke preset, a few minutes on a CPU
      wmbench run --backbone scratch --game Breakout --preset iris --device cuda
      wmbench describe --preset iris --game Breakout --json
      wmbench list backbones
    """


def _run_options(f):
    options = [
        click.option("--backbone", "-b", default="scratch", show_default=True, help="Backbone id (wmbench list backbones)."),
        click.option("--game", "-g", default="Pong", show_default=True, help="Game of an env suite (wmbench list games)."),
        click.option("--preset", "-p", default="smoke", show_default=True, help="Config preset (wmbench list presets)."),
        click.option("--tokenizer", "-t", default="vqvae", show_default=True, help="Tokenizer id."),
        click.option("--seed", "-s", default=0, show_default=True, type=int),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _init_options(f):
    options = [
        click.option("--init", type=click.Path(path_type=Path), help="A reference IRIS checkpoint to start from."),
        click.option("--init-parts", default="tokenizer,world_model,actor_critic", show_default=True,
                     help="The parts of --init to load, comma-separated."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _stop_after_epoch_on_signal(trainer) -> None:
    """Ctrl-C or SIGTERM: finish the epoch, write its checkpoint and stop; a second Ctrl-C stops at once."""
    import signal

    def handler(signum, frame):
        trainer.stop_requested = True
        signal.signal(signal.SIGINT, signal.default_int_handler)
        click.echo("wmbench: stopping after this epoch's checkpoint (Ctrl-C again to stop now and lose the epoch)", err=True)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@cli.command(context_settings=CONTEXT)
@_run_options
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Run folder [default: runs/GAME/BACKBONE/SEED-TIME].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device [default: the preset's, auto].")
@click.option("--bf16", is_flag=True, help="bf16 autocast for forward passes.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this folder from its last checkpoint.")
@_init_options
def run(backbone, game, preset, tokenizer, seed, overrides, out, device, bf16, resume, init, init_parts):
    """Train and evaluate one cell: a backbone on a game.

    Ctrl-C (or SIGTERM) stops after the current epoch with a checkpoint; --resume continues from it, also
    after a crash or kill -9, with the same episodes and metrics as a run never stopped.

    \b
    Examples:
      wmbench run --backbone scratch --game Pong --preset smoke
      wmbench run -b scratch -g Breakout --set world_model.num_layers=4 --out runs/try
      wmbench run --resume runs/try
      wmbench run --preset iris -g Breakout --init iris-breakout.pt --init-parts tokenizer,world_model
    """
    from wmbench import config as cfg
    from wmbench.engine.trainer import Trainer
    from wmbench.rundir import RunDir

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise WmbenchError("--device cuda was asked for, but no CUDA device is available")
    if resume:
        run_dir = RunDir(resume)
        config = cfg.from_dict(run_dir.read_config(), _registry())
        trainer = Trainer(config, run_dir, _registry(), log=click.echo)
        click.echo(trainer.resume())
    else:
        config = _config(preset, game, seed, tokenizer, backbone, overrides, device, bf16, init, init_parts)
        run_dir = RunDir(out or _default_out(config.game, config.backbone.name, seed))
        run_dir.check_new()
        trainer = Trainer(config, run_dir, _registry(), log=click.echo)
        trainer.load_init()
        run_dir.create(cfg.to_dict(config))
        click.echo(f"run folder: {run_dir.path}")
        if config.init:
            click.echo(f"loaded {', '.join(config.init_parts)} from {config.init}")
    _stop_after_epoch_on_signal(trainer)
    try:
        summary = trainer.fit()
    except KeyboardInterrupt:
        click.echo(f"interrupted in epoch {trainer.epoch}; continue from the last checkpoint: wmbench run --resume {run_dir.path}", err=True)
        sys.exit(130)
    if summary is None:
        click.echo(f"stopped after epoch {trainer.epoch}, checkpoint written; continue: wmbench run --resume {run_dir.path}", err=True)
        sys.exit(130)
    click.echo(
        f"done: {summary['env_steps']} env steps, eval return {summary['eval_return_mean']:.2f} "
        f"(human-normalised {summary['human_normalised_score']:.3f}), {summary['wall_time_s']:.0f}s; "
        f"summary in {run_dir.summary}"
    )


@cli.command("eval", context_settings=CONTEXT)
@click.argument("target", required=False, type=click.Path(path_type=Path))
@click.option("--episodes", "-n", type=click.IntRange(min=1), help="Test episodes [default: the config's eval.final_episodes].")
@click.option("--envs", type=click.IntRange(min=1), help="Envs run in lockstep [default: the config's eval.num_envs].")
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Folder for the result [default: TARGET/evals, or evals/].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--seed", "-s", default=0, show_default=True, type=int, help="Seed of the test envs and the policy.")
@_init_options
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
        config = _config(preset, game, seed, "vqvae", "scratch", overrides, init=init, init_parts=init_parts)
        loaded = evaluation.from_reference(init, config, _registry())
        out = out or Path("evals") / init.stem
    elif target.is_dir():
        loaded = evaluation.from_run(target, _registry())
        out = out or target / "evals"
    else:
        loaded = evaluation.from_checkpoint(target, _registry())
        out = out or Path("evals") / target.stem
    e = loaded.config.eval
    path, record = evaluation.run_eval(loaded, out, episodes or e.final_episodes, envs or e.num_envs, device, seed)
    click.echo(
        f"{record['game']}: {record['episodes']} episodes, return {record['return_mean']:.2f} ± {record['return_std']:.2f} "
        f"(human-normalised {record['human_normalised_score']:.3f}); written to {path}"
    )


@cli.command(context_settings=CONTEXT)
@_run_options
@_init_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(backbone, game, preset, tokenizer, seed, overrides, init, init_parts, as_json):
    """Build the agent of a config and print its parameter counts per component.

    \b
    Example:
      wmbench describe --preset iris --game Breakout --json
    """
    from wmbench import config as cfg
    from wmbench.engine.agent import build_agent

    config = _config(preset, game, seed, tokenizer, backbone, overrides, init=init, init_parts=init_parts)
    agent = build_agent(config, _registry(), _registry().game(config.game).num_actions())
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
        "config": cfg.to_dict(config),
    }
    if as_json:
        _echo_json(data)
        return
    click.echo(f"{config.game} ({data['num_actions']} actions), preset {config.preset}, "
               f"{data['tokens_per_frame']} tokens per frame")
    if config.init:
        click.echo(f"  loaded {', '.join(config.init_parts)} from {config.init}")
    for name, counts in data["parameters"].items():
        click.echo(f"  {name:<13} {counts['total']:>12,} parameters, {counts['trainable']:>12,} trainable")
    for part in ("backbone", "tokenizer"):
        click.echo(f"  {part}: " + ", ".join(f"{k}={v}" for k, v in data[part].items()))


@cli.command("list", context_settings=CONTEXT)
@click.argument("what", type=click.Choice(["games", "backbones", "tokenizers", "presets"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(what, as_json):
    """List games, backbones, tokenizers or presets."""
    from wmbench.config import load_preset, preset_names

    if what == "games":
        rows = [{"name": g.name, "suite": g.suite.name, "plugin": g.suite.plugin} for g in _registry().games.values()]
    elif what == "presets":
        rows = [{"name": p, "description": load_preset(p).get("meta", {}).get("description", "")} for p in preset_names()]
    else:
        table = _registry().entries[what[:-1]]
        rows = [{"name": e.name, "plugin": e.plugin, "description": e.summary} for e in table.values()]
    if as_json:
        _echo_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = "  ".join(str(r[k]) for k in ("suite", "plugin", "description") if r.get(k))
        click.echo(f"{r['name']:<{width}}  {extra}".rstrip())


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json):
    """List the installed plugins: name, distribution, version, status (loaded, disabled or failed, with the
    problem) and the hooks each implements. Works when a plugin is broken."""
    from dataclasses import asdict

    from wmbench.plugins import load

    rows = [{**asdict(p), "hooks": list(p.hooks)} for p in sorted(load().plugins.values(), key=lambda p: p.name)]
    if as_json:
        _echo_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        state = f"hooks: {', '.join(r['hooks'])}" if r["status"] == "loaded" else r["problem"] or r["status"]
        click.echo(f"{r['name']:<{width}}  {r['distribution']} {r['version'] or '-'}  {state}")


def main() -> None:
    cli.main()
from wmbench.report.cli import compare  # noqa: E402
cli.add_command(compare)
from wmbench.tracks.cli import world_model  # noqa: E402
cli.add_command(world_model)
from wmbench.sweep import sweep  # noqa: E402
cli.add_command(sweep)
from wmbench.bench import bench  # noqa: E402
cli.add_command(bench)
from wmbench.play.command import play  # noqa: E402
cli.add_command(play)
