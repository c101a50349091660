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


def _config(preset, game, seed, tokenizer, backbone, overrides, device=None, bf16=False):
    from wmbench import config as cfg
    from wmbench.envs.atari import check_game

    extra = {}
    if device:
        extra["device"] = device
    if bf16:
        extra["bf16"] = True
    return cfg.resolve(preset, check_game(game), seed, tokenizer, backbone, list(overrides), _registry(), extra)


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
        if not getattr(self, "_plugins_loaded", False):
            self._plugins_loaded = True
            _registry().manager.hook.wmbench_add_commands(cli=self)


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
        click.option("--game", "-g", default="Pong", show_default=True, help="Atari 100k game (wmbench list games)."),
        click.option("--preset", "-p", default="smoke", show_default=True, help="Config preset (wmbench list presets)."),
        click.option("--tokenizer", "-t", default="vqvae", show_default=True, help="Tokenizer id."),
        click.option("--seed", "-s", default=0, show_default=True, type=int),
        click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable)."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


@cli.command(context_settings=CONTEXT)
@_run_options
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Run folder [default: runs/GAME/BACKBONE/SEED-TIME].")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Device [default: the preset's, auto].")
@click.option("--bf16", is_flag=True, help="bf16 autocast for forward passes.")
@click.option("--resume", type=click.Path(path_type=Path), help="Continue the run in this folder from its last checkpoint.")
def run(backbone, game, preset, tokenizer, seed, overrides, out, device, bf16, resume):
    """Train and evaluate one cell: a backbone on a game.

    \b
    Examples:
      wmbench run --backbone scratch --game Pong --preset smoke
      wmbench run -b scratch -g Breakout --set world_model.num_layers=4 --out runs/try
      wmbench run --resume runs/try
    """
    from wmbench import config as cfg
    from wmbench.rundir import RunDir

    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise WmbenchError("--device cuda was asked for, but no CUDA device is available")
    if resume:
        from wmbench.engine.trainer import Trainer

        run_dir = RunDir(resume)
        config = cfg.from_dict(run_dir.read_config(), _registry())
        trainer = Trainer(config, run_dir, _registry(), log=click.echo)
        if run_dir.last_checkpoint.exists():
            click.echo(trainer.resume())
        else:
            raise WmbenchError(f"{resume} has no checkpoint yet; start it again instead of resuming")
    else:
        config = _config(preset, game, seed, tokenizer, backbone, overrides, device, bf16)
        run_dir = RunDir(out or _default_out(config.game, config.backbone.name, seed))
        run_dir.create(cfg.to_dict(config))
        from wmbench.engine.trainer import Trainer

        trainer = Trainer(config, run_dir, _registry(), log=click.echo)
        click.echo(f"run folder: {run_dir.path}")
    try:
        summary = trainer.fit()
    except KeyboardInterrupt:
        click.echo(f"interrupted after epoch {trainer.epoch}; continue with: wmbench run --resume {run_dir.path}", err=True)
        sys.exit(130)
    click.echo(
        f"done: {summary['env_steps']} env steps, eval return {summary['eval_return_mean']:.2f} "
        f"(human-normalised {summary['human_normalised_score']:.3f}), {summary['wall_time_s']:.0f}s; "
        f"summary in {run_dir.summary}"
    )


@cli.command(context_settings=CONTEXT)
@_run_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def describe(backbone, game, preset, tokenizer, seed, overrides, as_json):
    """Build the agent of a config and print its parameter counts per component.

    \b
    Example:
      wmbench describe --preset iris --game Breakout --json
    """
    from wmbench import config as cfg
    from wmbench.engine.agent import build_agent
    from wmbench.envs.atari import num_actions

    config = _config(preset, game, seed, tokenizer, backbone, overrides)
    agent = build_agent(config, _registry(), num_actions(config.game))
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
    from wmbench.envs.atari import GAMES

    if what == "games":
        rows = [{"name": g} for g in GAMES]
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
        extra = "  ".join(str(r[k]) for k in ("plugin", "description") if r.get(k))
        click.echo(f"{r['name']:<{width}}  {extra}".rstrip())


@cli.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json):
    """List the loaded plugins: name, distribution, version and the hooks each implements."""
    from importlib import metadata

    manager = _registry().manager
    rows = []
    for name, plugin in manager.list_name_plugin():
        dist = manager.distributions.get(name)
        hooks = sorted(h.name for h in manager.get_hookcallers(plugin) or [])
        rows.append({"name": name, "distribution": dist, "version": metadata.version(dist) if dist else None, "hooks": hooks})
    if as_json:
        _echo_json(rows)
        return
    for r in rows:
        click.echo(f"{r['name']:<10} {r['distribution']} {r['version']}  hooks: {', '.join(r['hooks'])}")


def main() -> None:
    cli.main()
from wmbench.report.cli import compare  # noqa: E402
cli.add_command(compare)
