"""What the commands share: click's context settings, the run options, and building a config from them."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from wmbench.config.build import SEED_LIMIT
from wmbench.errors import WmbenchError

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
SEED = click.IntRange(0, SEED_LIMIT)
"""Seeds: 0 to 2**32 - 1."""


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2))


def registry():
    from wmbench.plugins import registry

    return registry()


def cell_config(
    preset, game, seed, tokenizer, backbone, overrides, device=None, bf16=False, init=None, init_parts=None
):
    """The resolved config of one cell from the command line's options."""
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
    return cfg.resolve(
        preset, registry().game(game).name, seed, tokenizer, backbone, list(overrides), registry(), extra
    )


def open_run(run_dir, config, progress, resume) -> None:
    """Inside the run folder's lock: continue the run (``resume()`` says from where) or, with ``resume`` None,
    create the folder and write its config."""
    from wmbench import config as cfg

    if resume is not None:
        progress.log(resume())
    else:
        run_dir.create(cfg.to_dict(config))
        progress.log(f"run folder: {run_dir.path}")


def default_out(game: str, backbone: str, seed: int) -> Path:
    return Path("runs") / game / backbone / f"{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def check_device(device: str | None) -> None:
    """Refuse ``--device cuda`` where there is none."""
    if device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise WmbenchError("--device cuda was asked for, but no CUDA device is available")


quiet_option = click.option(
    "--quiet", "-q", is_flag=True, help="No progress bars and no progress lines (errors and the last line only)."
)
"""Progress bars show on a terminal only; logs and pipes get one line per epoch or cell, --quiet not even that."""


def run_options(f):
    options = [
        click.option(
            "--backbone", "-b", default="scratch", show_default=True, help="Backbone id (wmbench list backbones)."
        ),
        click.option(
            "--game", "-g", default="Pong", show_default=True, help="Game of an env suite (wmbench list games)."
        ),
        click.option(
            "--preset", "-p", default="smoke", show_default=True, help="Config preset (wmbench list presets)."
        ),
        click.option("--tokenizer", "-t", default="vqvae", show_default=True, help="Tokenizer id."),
        click.option("--seed", "-s", default=0, show_default=True, type=SEED),
        click.option(
            "--set", "overrides", multiple=True, metavar="KEY=VALUE", help="Override a config field (repeatable)."
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def init_options(f):
    options = [
        click.option("--init", type=click.Path(path_type=Path), help="A reference IRIS checkpoint to start from."),
        click.option(
            "--init-parts",
            default="tokenizer,world_model,actor_critic",
            show_default=True,
            help="The parts of --init to load, comma-separated.",
        ),
    ]
    for option in reversed(options):
        f = option(f)
    return f
