"""A run is a folder: config.json, metrics.jsonl, summary.json, checkpoints/, replay/, media/, and .lock (held by
the one process writing it, :mod:`wmbench.lock`).

This module is the one owner of that contract: the file names, the summary's schema per track, what makes a run
finished (its summary.json) or resumable (its config.json and a checkpoint), and finding runs below a folder.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from wmbench import files, lock
from wmbench.errors import WmbenchError

SCHEMA_VERSION = 1
TRACK_AGENT = "agent"
TRACK_WORLD_MODEL = "world-model"
OBS_LOSS = "heldout/loss/observations"
"""The world-model track's figure of merit, in every ``per_budget`` row of its summary."""

_Kind = type | tuple[type, ...]
#: summary.json fields a run of each track must have, with the type each must be.
REQUIRED: dict[str, dict[str, _Kind]] = {
    TRACK_AGENT: {"schema_version": int, "game": str, "backbone": str, "seed": int, "eval_return_mean": (int, float)},
    TRACK_WORLD_MODEL: {
        "schema_version": int, "game": str, "backbone": str, "seed": int, "per_budget": list,
        "target_loss": (int, float),
    },
}  # fmt: skip
MARKERS = ("summary.json", "config.json", "metrics.jsonl")
"""A folder holding any of these is a run folder."""
LOCK = ".lock"
"""The lock file of the process writing a run folder (or a sweep folder)."""


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.replay = self.path / "replay"
        self.media = self.path / "media"
        self.lock = self.path / LOCK
        self.log_file = self.path / "log.txt"
        """The output of a cell that a sweep ran here."""
        self.recordings = self.media / "recordings"
        """Segments recorded by ``wmbench play``."""

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def finished(self) -> bool:
        """The run wrote its summary: it ran to the end."""
        return self.summary.is_file()

    @property
    def resumable(self) -> bool:
        """``wmbench run --resume`` can continue it: it has its config and a checkpoint, and has not finished."""
        return self.config.is_file() and self.last_checkpoint.is_file() and not self.finished

    def check_new(self) -> None:
        """Refuse a folder that already holds a run or other files (a lock file alone, left by a process killed before
        it wrote anything, does not count)."""
        if self.path.exists() and (not self.path.is_dir() or any(p.name != LOCK for p in self.path.iterdir())):
            hint = " (continue it with --resume)" if self.config.exists() else ""
            raise WmbenchError(f"output folder {self.path} is not empty{hint}; choose another --out")

    @contextlib.contextmanager
    def writer(self) -> Iterator[None]:
        """Be the one process writing this run folder for the block (the folder is created if missing); another
        process holding it is a WmbenchError naming its pid, and so is a folder that cannot be created."""
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise WmbenchError(f"cannot create run folder {self.path} ({exc.strerror or exc})") from exc
        with lock.hold(self.lock, f"run folder {self.path}"):
            yield

    def create(self, config: dict[str, Any]) -> None:
        """Make a new run folder (see :meth:`check_new`) and write its config first: a process killed before that
        leaves a folder that counts as empty, one killed after it a run that ``--resume`` starts over."""
        self.check_new()
        files.write_json(self.config, config)
        for folder in (self.checkpoints, self.replay, self.media):
            folder.mkdir(parents=True, exist_ok=True)

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise WmbenchError(f"{self.path} is not a run folder (no config.json)")
        try:
            config = json.loads(self.config.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WmbenchError(f"{self.config} is not valid JSON ({exc})") from exc
        if not isinstance(config, dict):
            raise WmbenchError(f"{self.config} is not a JSON object, not a run's config")
        return config

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics line and flush it to disk (a torn last line is dropped on resume)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self, strict: bool = False) -> list[dict[str, Any]]:
        """Every complete metrics line up to the first torn one (what a kill mid-append leaves, dropped on resume);
        ``strict``: a torn or foreign line is a WmbenchError naming the file and line (a finished run has none)."""
        if not self.metrics.exists():
            return []
        records = []
        for number, line in enumerate(self.metrics.read_bytes().splitlines(), 1):
            try:
                record = json.loads(line)
                if not isinstance(record, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
                if strict:
                    raise WmbenchError(f"{self.metrics} line {number} is torn or not a metrics record ({exc})") from exc
                break
            records.append(record)
        return records

    def roll_back(self, epoch: int) -> None:
        """Keep what the checkpoint of ``epoch`` covers: its metrics lines (rewritten atomically, a torn last line
        dropped), and no temporary file of an atomic write a kill interrupted (the real files are intact)."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= epoch]
        files.write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in kept).encode())
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink()

    def write_summary(self, summary: dict[str, Any]) -> None:
        files.write_json(self.summary, {"schema_version": SCHEMA_VERSION, **summary})

    def read_summary(self) -> dict[str, Any]:
        """summary.json, checked against its track's schema; a missing file or field is a WmbenchError naming the folder."""
        where = f"run folder {self.path}"
        if not self.summary.is_file():
            raise WmbenchError(f"{where}: no summary.json (the run has not finished, or this is not a run folder)")
        try:
            summary = json.loads(self.summary.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WmbenchError(f"{where}: summary.json is not valid JSON ({exc})") from exc
        if not isinstance(summary, dict):
            raise WmbenchError(f"{where}: summary.json is not a JSON object")
        track = summary.get("track", TRACK_AGENT)
        if not isinstance(track, str) or track not in REQUIRED:
            raise WmbenchError(f"{where}: summary.json field 'track' is {track!r}, not one of {sorted(REQUIRED)}")
        for field, kind in REQUIRED[track].items():
            if field not in summary or summary[field] is None:
                raise WmbenchError(f"{where}: summary.json has no field {field!r}")
            value = summary[field]
            if not isinstance(value, kind) or isinstance(value, bool):
                raise WmbenchError(f"{where}: summary.json field {field!r} is {value!r}, not {_kind_name(kind)}")
        if summary["schema_version"] != SCHEMA_VERSION:
            older = summary["schema_version"] < SCHEMA_VERSION
            raise WmbenchError(
                f"{where}: summary.json has schema_version {summary['schema_version']}; this wmbench reads "
                f"{SCHEMA_VERSION} ({'an older schema: rerun it, or read it with the wmbench that wrote it' if older else 'upgrade wmbench'})"
            )
        if track == TRACK_WORLD_MODEL:
            _check_budgets(where, summary["per_budget"])
        elif not math.isfinite(summary["eval_return_mean"]):
            raise WmbenchError(
                f"{where}: summary.json field 'eval_return_mean' is not finite (no evaluation episode ended?)"
            )
        return summary


def find_run_dirs(paths: Sequence[Path], also: Sequence[Path] = ()) -> tuple[list[Path], list[Path]]:
    """Expand each path into run folders: a run folder itself, or every folder holding a summary.json below it.

    Returns ``(runs, unfinished)``: folders below a parent that have config.json but no summary.json are
    left out and listed as unfinished. A path given directly that looks like a run folder is kept even
    without summary.json, so that reading it names what is missing. A path with no finished run below it is an
    error, unless it holds one of ``also`` (other results the caller reads, such as bench CSVs).
    """
    runs: list[Path] = []
    unfinished: list[Path] = []
    for path in map(Path, paths):
        if not path.exists():
            raise WmbenchError(f"{path} does not exist")
        if not path.is_dir():
            raise WmbenchError(f"{path} is not a folder (give run folders or folders that contain them)")
        if any((path / name).exists() for name in MARKERS):
            runs.append(path)
            continue
        found = sorted(p.parent for p in path.rglob("summary.json"))
        unfinished += sorted(p.parent for p in path.rglob("config.json") if not (p.parent / "summary.json").exists())
        if not found and not any(path in a.parents for a in map(Path, also)):
            waiting = sum(1 for u in unfinished if path in u.parents)
            hint = f"; {waiting} unfinished (config.json without summary.json)" if waiting else ""
            raise WmbenchError(f"{path} holds no finished run folders (no summary.json found below it{hint})")
        runs += found
    unique = list(dict.fromkeys(p.resolve() for p in runs))
    return unique, sorted(set(unfinished))


def _check_budgets(where: str, rows: list[Any]) -> None:
    """Every per-budget row of a world-model run has its frames seen and a finite held-out next-token loss."""
    if not rows:
        raise WmbenchError(f"{where}: summary.json field 'per_budget' is empty")
    for i, row in enumerate(rows):
        for key in ("env_steps", OBS_LOSS):
            value = row.get(key) if isinstance(row, dict) else None
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
                raise WmbenchError(f"{where}: summary.json per_budget[{i}] has no number {key!r}")


def _kind_name(kind: _Kind) -> str:
    return "a number" if isinstance(kind, tuple) else {int: "an integer", str: "a string"}.get(kind, kind.__name__)
