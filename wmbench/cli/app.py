"""The ``wmbench`` command line: the group, its error handling, and every command (one module per group).

Exit codes: 0 success, 1 a failure while running (a write that failed, a full disk: one line too), 2 bad input (one
line on stderr, nothing written), 130 interrupted (a resumable checkpoint is kept). ``--debug`` (or
``WMBENCH_DEBUG=1``) adds the traceback to those lines.
"""

from __future__ import annotations

import os
import sys
import traceback

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
from wmbench.errors import DEBUG_ENV, WmbenchError, debugging, os_error_line


class Cli(click.Group):
    """Turns user mistakes into one line and exit code 2, and loads plugin commands."""

    def main(self, args=None, prog_name=None, **kwargs):
        try:
            return super().main(args=args, prog_name=prog_name or "wmbench", standalone_mode=False, **kwargs) or 0
        except (WmbenchError, click.UsageError, click.BadParameter) as exc:
            message = exc.format_message() if isinstance(exc, click.ClickException) else str(exc)
            _error(message)
            sys.exit(2)
        except OSError as exc:  # a write that failed (full disk, I/O error, read-only folder), or a file unreadable
            _error(os_error_line(exc))
            sys.exit(1)
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
            for info in load().plugins.values():
                for line in filter(None, (info.problem, info.warning)):
                    click.echo(f"wmbench: warning: {line}", err=True)
                if info.traceback and debugging():
                    click.echo(info.traceback.rstrip(), err=True)


def _error(message: str) -> None:
    """The one line of an error, after its traceback when debugging."""
    if debugging():
        traceback.print_exc()
    click.echo(f"wmbench: error: {message}", err=True)


def _debug(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if value:
        os.environ[DEBUG_ENV] = "1"  # the commands' own processes (sweep cells) inherit it


@click.group(cls=Cli, context_settings=CONTEXT)
@click.version_option(wmbench.__version__, "--version", prog_name="wmbench")
@click.option(
    "--debug",
    is_flag=True,
    is_eager=True,
    expose_value=False,
    callback=_debug,
    help=f"Show the traceback of an error or of a plugin that failed to load (or set {DEBUG_ENV}=1).",
)
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
