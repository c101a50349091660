"""A run is a folder: config.json, metrics.jsonl, summary.json, checkpoints/, replay/, media/."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench.errors import WmbenchError

SCHEMA_VERSION = 1


class RunDir:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = self.path / "config.json"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.replay = self.path / "replay"
        self.media = self.path / "media"

    @property
    def last_checkpoint(self) -> Path:
        return self.checkpoints / "last.pt"

    def check_new(self) -> None:
        """Refuse a folder that already holds a run or other files."""
        if self.path.exists() and (not self.path.is_dir() or any(self.path.iterdir())):
            hint = " (continue it with --resume)" if self.config.exists() else ""
            raise WmbenchError(f"output folder {self.path} is not empty{hint}; choose another --out")

    def create(self, config: dict[str, Any]) -> None:
        """Make a new run folder (see :meth:`check_new`) and write its config."""
        self.check_new()
        for folder in (self.checkpoints, self.replay, self.media):
            folder.mkdir(parents=True, exist_ok=True)
        files.write_json(self.config, config)

    def read_config(self) -> dict[str, Any]:
        if not self.config.is_file():
            raise WmbenchError(f"{self.path} is not a run folder (no config.json)")
        try:
            return json.loads(self.config.read_text())
        except json.JSONDecodeError as exc:
            raise WmbenchError(f"{self.config} is not valid JSON ({exc})") from exc

    def log(self, record: dict[str, Any]) -> None:
        """Append one metrics line and flush it to disk (a torn last line is dropped on resume)."""
        with open(self.metrics, "a") as f:
            f.write(json.dumps({"time": time.time(), **record}) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def read_metrics(self) -> list[dict[str, Any]]:
        """Every complete metrics line."""
        if not self.metrics.exists():
            return []
        records = []
        for line in self.metrics.read_text().splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                break
        return records

    def truncate_metrics(self, last_epoch: int) -> None:
        """Keep the lines of epochs up to ``last_epoch`` (those a checkpoint covers), atomically."""
        kept = [r for r in self.read_metrics() if r.get("epoch", 0) <= last_epoch]
        files.write_bytes(self.metrics, "".join(json.dumps(r) + "\n" for r in kept).encode())

    def remove_partial_writes(self) -> None:
        """Delete the temporary files of atomic writes that a kill interrupted (the real files are intact)."""
        for tmp in self.path.rglob(".*.tmp"):
            tmp.unlink()

    def write_summary(self, summary: dict[str, Any]) -> None:
        files.write_json(self.summary, {"schema_version": SCHEMA_VERSION, **summary})
