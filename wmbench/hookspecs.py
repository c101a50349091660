"""The hooks a wmbench plugin implements. Every hook is named ``wmbench_*``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    import click

    from wmbench.plugins import Register

hookspec = pluggy.HookspecMarker("wmbench")
hookimpl = pluggy.HookimplMarker("wmbench")


@hookspec
def wmbench_register_backbones(register: Register) -> None:
    """Register world-model backbones, once, when the plugins load.

    Call ``register(name, build, options=OptionsDataclass, summary="...")``. ``build(options, shape)`` gets the
    plugin's frozen options dataclass and a :class:`wmbench.engine.backbone.BackboneShape`, and returns a
    :class:`wmbench.engine.backbone.Backbone`. Import heavy libraries inside ``build``, not at module level.
    """


@hookspec
def wmbench_register_tokenizers(register: Register) -> None:
    """Register frame tokenizers, once, when the plugins load.

    Call ``register(name, build, options=OptionsDataclass, summary="...")``. ``build(options, frame_size)``
    returns a :class:`wmbench.engine.tokenizer.Tokenizer` for square RGB frames of that size.
    """


@hookspec
def wmbench_add_commands(cli: click.Group) -> None:
    """Add subcommands to the ``wmbench`` command line (``cli.add_command(command)``).

    Called when the CLI starts. Keep imports inside the command's function so that ``wmbench --help``
    stays fast.
    """
