"""``wmbench list`` and ``wmbench plugins``: what is installed."""

from __future__ import annotations

import click

from wmbench.cli.options import CONTEXT, echo_json, registry


@click.command("list", context_settings=CONTEXT)
@click.argument("what", type=click.Choice(["games", "backbones", "tokenizers", "presets"]))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def list_(what, as_json):
    """List games, backbones, tokenizers or presets."""
    from wmbench.config import load_preset, preset_names

    if what == "games":
        rows = [{"name": g.name, "suite": g.suite.name, "plugin": g.suite.plugin} for g in registry().games.values()]
    elif what == "presets":
        rows = [
            {"name": p, "description": load_preset(p).get("meta", {}).get("description", "")} for p in preset_names()
        ]
    else:
        table = registry().entries[what[:-1]]
        rows = [{"name": e.name, "plugin": e.plugin, "description": e.summary} for e in table.values()]
    if as_json:
        echo_json(rows)
        return
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        extra = "  ".join(str(r[k]) for k in ("suite", "plugin", "description") if r.get(k))
        click.echo(f"{r['name']:<{width}}  {extra}".rstrip())


@click.command(context_settings=CONTEXT)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins(as_json):
    """List the installed plugins: name, distribution, version, status (loaded, disabled or failed, with the
    problem) and the hooks each implements, with a warning for a plugin that implements none. Works when a plugin
    is broken; with wmbench --debug, a plugin that failed to import shows its traceback."""
    from dataclasses import asdict

    from wmbench.errors import debugging
    from wmbench.plugins import load

    rows = [{**asdict(p), "hooks": list(p.hooks)} for p in sorted(load().plugins.values(), key=lambda p: p.name)]
    for row in rows:
        if row["traceback"] and debugging():
            click.echo(f"plugin {row['name']!r}: {row['traceback'].rstrip()}", err=True)
    if as_json:
        echo_json(rows)
        return
    width = max((len(r["name"]) for r in rows), default=0)
    for r in rows:
        state = f"hooks: {', '.join(r['hooks']) or 'none'}" if r["status"] == "loaded" else r["problem"] or r["status"]
        if r["warning"]:
            state = f"{state}  warning: {r['warning']}"
        click.echo(f"{r['name']:<{width}}  {r['distribution']} {r['version'] or '-'}  {state}")
