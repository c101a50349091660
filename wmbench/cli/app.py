"""The ``wmbench`` command line: the group, its error handling, and every command (one module per group).

Exit codes: 0 success, 1 a failure while running, 2 bad input (one line on stderr, nothing written),
130 interrupted (a resumable checkpoint is kept).
"""

from __future__ import annotations

import sys

import click

import wmbench
from wmbench.cli.bench import bench
from wmbench.cli.compare import compare
from wmbench.cli.listing import list_, plugins
from wmbench.cli.options import CONTEXT
from wmbench.cli.play import play
from wmbench.cli.run import describe, eval_, run
from wmbench.cli.sweep import sweep
from wmbench.cli.world_model import world_model
from wmbench.errors import WmbenchError


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


for command in (run, eval_, describe, list_, plugins, compare, world_model, sweep, bench, play):
    cli.add_command(command)


def main() -> None:
    cli.main()
