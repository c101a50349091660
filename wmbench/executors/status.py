"""What ``wmbench sweep --status DIR`` reports: every cell of a sweep folder, with the states of its queued and
running jobs asked of their engine."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from wmbench.benchmark import TRACKS
from wmbench.errors import WmbenchError
from wmbench.executors.base import ENDED
from wmbench.executors.options import make_executor
from wmbench.rundir import TRACK_AGENT

STATES = ("pending", "queued", "running", "finished", "interrupted", "failed")


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
            if executor.attach():
                states = executor.states([r["job_id"] for r in active])
                executor.close()
            else:
                states, note = {}, "states as the sweep last recorded them: its Ray instance is its own"
        except WmbenchError as exc:
            states, note = {}, f"states as last recorded: {exc}"
        result = TRACKS[index.get("track", TRACK_AGENT)].result
        for row in active:
            state, word = states.get(row["job_id"], (row["status"], row.get("job_state", "")))
            row["job_state"] = word
            if state == ENDED:
                row["status"] = "finished" if result(Path(row["folder"])).is_file() else "failed"
            else:
                row["status"] = state
    now = time.time()
    for row in rows:
        if row.get("status") in ("queued", "running") and row.get("submitted_at"):
            row["duration_s"] = round(now - row["submitted_at"], 1)
        pending_log = Path(out) / "logs" / f"{row['id']}.log"  # a fresh cell's output until it ends
        if not Path(row["log"]).is_file() and pending_log.is_file():
            row["log"] = str(pending_log)
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
