"""Choosing a sweep's executor and its options (``--executor``, ``--executor-option``, the ``[executor]`` table),
and what ``wmbench sweep --status`` reports."""

from __future__ import annotations

import dataclasses
import json
import time
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError, did_you_mean
from wmbench.executors.base import ENDED, Executor

STATES = ("pending", "queued", "running", "finished", "interrupted", "failed")


def make_executor(name: str | None, table: dict[str, Any], items: tuple[str, ...], out: Path, jobs: int,
                  where: str = "executor") -> Executor:  # fmt: skip
    """The executor ``name`` (else the table's ``name``, else local) with its options from the table (when it names
    the same executor) and ``KEY=VALUE`` items; unknown names and options are did-you-mean errors."""
    from wmbench.plugins import registry

    table = dict(table)
    named = table.pop("name", "local")
    if not isinstance(named, str):
        raise WmbenchError(f"{where}: 'name' must be an executor name, got {named!r}")
    chosen = name or named
    cls = registry().executor(chosen)
    options = parse_options(cls.Options, table if chosen == named else {}, items, f"{where} {chosen!r}")
    return cls(options, out, jobs)


def parse_options(options_type: type, table: dict[str, Any], items: tuple[str, ...], where: str) -> Any:
    """An executor's options from its table and ``KEY=VALUE`` items (a value is read as TOML, else a string)."""
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    values = dict(table)
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise WmbenchError(f"--executor-option {item!r} must be KEY=VALUE")
        try:
            values[key.strip().replace("-", "_")] = tomllib.loads(f"v = {text}")["v"]
        except tomllib.TOMLDecodeError:
            values[key.strip().replace("-", "_")] = text
    hints = typing.get_type_hints(options_type)
    out = {}
    for key, value in values.items():
        if key not in fields:
            raise WmbenchError(f"{where}: unknown option {key!r}{did_you_mean(key, fields)}; "
                               f"choose from: {', '.join(fields) or '(none)'}")  # fmt: skip
        out[key] = _coerce(value, hints[key], f"{where}: option {key!r}")
    return options_type(**out)


def _coerce(value: Any, hint: Any, where: str) -> Any:
    """A TOML value as the field's type (int, float, str, tuple of str, or one of them or None)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = [a for a in args if a is not type(None)]
        return _coerce(value, kinds[0], where)
    if typing.get_origin(hint) is tuple:
        value = [value] if isinstance(value, str) else value
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise WmbenchError(f"{where} must be a list of strings, got {value!r}")
        if any("\n" in v or "\r" in v for v in value):
            raise WmbenchError(f"{where}: a line break inside an entry is not allowed, got {value!r}")
        return tuple(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is str and isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, hint) or isinstance(value, bool) != (hint is bool):
        raise WmbenchError(f"{where} must be {hint.__name__}, got {value!r}")
    if isinstance(value, str) and ("\n" in value or "\r" in value):
        raise WmbenchError(f"{where}: a line break is not allowed, got {value!r}")
    if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
        raise WmbenchError(f"{where} must not be negative, got {value!r}")
    return value


def status(out: Path) -> dict[str, Any]:
    """The index of a sweep folder, with the states of its queued and running jobs asked of their engine now (a
    job that ended since the sweep last looked is marked by its outcome)."""
    path = Path(out) / "index.json"
    if not path.is_file():
        raise WmbenchError(f"{out} holds no sweep index (index.json); run wmbench sweep FILE --out {out} first")
    try:
        index = json.loads(path.read_text())
        rows = index["cells"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise WmbenchError(f"{path} is not a sweep index ({exc})") from None
    active = [r for r in rows if r.get("status") in ("queued", "running") and r.get("job_id")]
    note = ""
    if active:
        recorded = index.get("executor") or {"name": active[0].get("executor", "local"), "options": {}}
        try:
            executor = make_executor(recorded["name"], recorded.get("options", {}), (), Path(out).absolute(), 1)
            executor.check()
            states = executor.states([r["job_id"] for r in active])
            executor.close()
        except WmbenchError as exc:
            states, note = {}, f"states as last recorded: {exc}"
        result = "throughput.csv" if index.get("track") == "throughput" else "summary.json"
        for row in active:
            state, word = states.get(row["job_id"], (row["status"], row.get("job_state", "")))
            row["job_state"] = word
            if state == ENDED:
                row["status"] = "finished" if (Path(row["folder"]) / result).is_file() else "failed"
            else:
                row["status"] = state
    now = time.time()
    for row in rows:
        if row.get("status") in ("queued", "running") and row.get("submitted_at"):
            row["duration_s"] = round(now - row["submitted_at"], 1)
    counts = {s: sum(1 for r in rows if r.get("status") == s) for s in STATES}
    return {"folder": str(out), "benchmark": index.get("benchmark"), "counts": counts, "note": note, "cells": rows}


def status_lines(report: dict[str, Any]) -> list[str]:
    """--status as text: the counts, then a line per cell."""
    counts = ", ".join(f"{n} {s}" for s, n in report["counts"].items())
    lines = [f"{report['benchmark']}: {counts}" + (f" ({report['note']})" if report["note"] else "")]
    width = max((len(r["id"]) for r in report["cells"]), default=0)
    for r in report["cells"]:
        took = f"{r['duration_s']:.0f}s" if isinstance(r.get("duration_s"), int | float) else "-"
        job = f"{r.get('executor', '')}:{r['job_id']}" if r.get("job_id") else "-"
        state = f" ({r['job_state']})" if r.get("job_state") else ""
        lines.append(f"{r['id']:<{width}}  {r['status']:<11} {job}{state}  {took}  {r['log']}")
    return lines
