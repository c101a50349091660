"""``wmbench sweep``'s runner: every cell of a benchmark (:mod:`wmbench.benchmark`) run as its own ``wmbench``
process, handed to an executor (:mod:`wmbench.executors`: processes here, Slurm jobs or Ray tasks).

The sweep folder holds ``benchmark.json`` (the definition it was made for), ``cells/<cell-id>/`` (a run folder
per cell, with the cell's output in ``log.txt``), and ``index.json`` / ``index.csv`` (every cell with its status,
duration, folder and the command that reproduces it), rewritten atomically as cells finish. The next sweep
skips finished cells, resumes interrupted ones from their checkpoint, and runs failed ones afresh (removing
their folder; to rerun a failed cell's command by hand, move its folder away first).
"""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from wmbench import files, lock
from wmbench.benchmark import TRACKS, Benchmark, Cell, cells, command, partial_csv
from wmbench.errors import WmbenchError
from wmbench.executors.base import ENDED, Executor, Task
from wmbench.progress import Progress
from wmbench.rundir import LOCK, RunDir

INDEX_FIELDS = (
    "id", "status", "action", "game", "backbone", "label", "tokenizer", "seed", "duration_s", "returncode",
    "folder", "log", "error", "executor", "job_id", "job_state", "job_log", "submitted_at", "command",
)  # fmt: skip
OVER = ("finished", "failed", "interrupted")
"""The statuses of a cell whose job is over."""


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Sweep:
    """The cells of a benchmark in a sweep folder: what each needs, handing them to an executor, and the index."""

    def __init__(self, bench: Benchmark, out: Path, jobs: int, log=print, executor: Executor | None = None,
                 progress: Progress | None = None):  # fmt: skip
        from wmbench.executors.local import LocalExecutor, LocalOptions

        self.progress = progress or Progress(log=log)
        self._bar: Callable[[int, str], None] = lambda done, note: None  # the progress bar's update while cells run
        self.bench, self.out, self.jobs, self.log = bench, Path(out).absolute(), jobs, self.progress.log
        self.track = TRACKS[bench.track]
        self.executor = executor or LocalExecutor(LocalOptions(), self.out, jobs)
        self.cells = cells(bench)
        self.rows: dict[str, dict[str, Any]] = {}

    def folder(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def result(self, folder: Path) -> Path:
        """The file whose presence means the cell in ``folder`` finished (a bench CSV is renamed to it on success)."""
        return self.track.result(folder)

    def action(self, cell: Cell) -> str:
        """skip (finished), resume (a checkpoint to continue from) or run (from the start)."""
        folder = self.folder(cell)
        if self.result(folder).is_file():
            return "skip"
        if self.track.resumable and RunDir(folder).last_checkpoint.is_file():
            return "resume"
        return "run"

    def argv(self, cell: Cell, action: str) -> list[str]:
        return [sys.executable, "-m", "wmbench", *command(self.bench, cell, self.folder(cell), action == "resume")]

    def task(self, cell: Cell, action: str) -> Task:
        """What the executor runs for a cell."""
        folder, resumable = self.folder(cell), self.track.resumable
        return Task(
            cell.id, tuple(command(self.bench, cell, folder, action == "resume")),
            tuple(command(self.bench, cell, folder, True)) if resumable else (), folder,
            pending_log=self.out / "logs" / f"{cell.id}.log", record=self.out / "jobs" / f"{cell.id}.json",
            threads=self.executor.threads(), make_folder=not resumable,
            rename=None if resumable else (partial_csv(folder), self.result(folder)), result=self.result(folder),
        )  # fmt: skip

    def check_folder(self) -> None:
        """Refuse a sweep folder made for another benchmark definition (or holding something else)."""
        record = self.out / "benchmark.json"
        if record.is_file():
            try:
                made_for = json.loads(record.read_text())
            except json.JSONDecodeError as exc:
                raise WmbenchError(f"{record} is not valid JSON ({exc}); choose another --out") from exc
            if not isinstance(made_for, dict) or made_for.get("definition") != self.bench.definition():
                made_for = made_for if isinstance(made_for, dict) else {}
                raise WmbenchError(
                    f"{self.out} was made for another benchmark definition ({made_for.get('file')}, name "
                    f"{(made_for.get('definition') or {}).get('name')!r}); choose another --out"
                )
        elif self.out.exists() and (not self.out.is_dir() or any(p.name != LOCK for p in self.out.iterdir())):
            raise WmbenchError(f"{self.out} is not empty and holds no sweep (no benchmark.json); choose another --out")

    def plan(self) -> list[tuple[Cell, str]]:
        return [(cell, self.action(cell)) for cell in self.cells]

    def _live(self, previous: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The rows of cells whose job, submitted by an earlier sweep of this executor, is still queued or running."""
        rows = {i: r for i, r in previous.items() if r.get("status") in ("queued", "running") and r.get("job_id")
                and r.get("executor") == self.executor.name}  # fmt: skip
        states = self.executor.states([r["job_id"] for r in rows.values()])
        return {i: {**r, "status": states[r["job_id"]][0], "job_state": states[r["job_id"]][1]}
                for i, r in rows.items() if states[r["job_id"]][0] != ENDED}  # fmt: skip

    def run(self) -> list[dict[str, Any]]:
        """Hand every cell not finished (nor queued or running already) to the executor and follow them to their
        end; returns the index rows. One sweep writes a sweep folder at a time (a second is refused, naming the pid
        of the first)."""
        self.check_folder()
        self.executor.check()
        with lock.hold(self.out / LOCK, f"sweep folder {self.out}"):
            return self._run()

    def _run(self) -> list[dict[str, Any]]:
        files.write_json(
            self.out / "benchmark.json", {"file": str(self.bench.path), "definition": self.bench.definition()}
        )
        previous = self._previous_rows()
        live = self._live(previous)
        plan = self.plan()
        for cell, action in plan:
            row = self._row(cell, action, "finished" if action == "skip" else "pending")
            if action == "skip":  # what the earlier sweep recorded of the job that finished it
                before = previous.get(cell.id, {})
                kept = ("duration_s", "executor", "job_id", "job_state", "job_log", "submitted_at")
                row.update({k: before[k] for k in kept if k in before})
            self.rows[cell.id] = live.get(cell.id, row) if action != "skip" else row
        self._write_index()
        todo = [(c, a) for c, a in plan if a != "skip" and c.id not in live]
        counts = {a: sum(1 for c, b in plan if b == a and c.id not in live) for a in ("run", "resume", "skip")}
        limit = self.executor.max_in_flight
        at_a_time = f"{limit} at a time" if limit else "queued by the engine"
        self.log(f"{self.bench.name}: {len(plan)} cells ({counts['run']} to run, {counts['resume']} to resume, "
                 f"{counts['skip']} finished already{f', {len(live)} queued or running already' if live else ''}) "
                 f"on {self.executor.name}, {at_a_time}; index: {self.out / 'index.json'}")  # fmt: skip
        by_id = {c.id: c for c in self.cells}
        flight = {r["job_id"]: (by_id[i], self.task(by_id[i], r["action"])) for i, r in live.items()}
        with self.progress.counter("cells", len(todo) + len(live)) as self._bar:
            try:
                self._follow(todo, flight)
            except KeyboardInterrupt:
                self.executor.stop()
                self._poll(flight, total=len(todo) + len(live))
                self._write_index()
                raise
            finally:
                self.executor.close()
        if (self.out / "logs").is_dir() and not any((self.out / "logs").iterdir()):
            (self.out / "logs").rmdir()
        return [self.rows[c.id] for c in self.cells]

    def _follow(self, todo: list[tuple[Cell, str]], flight: dict[str, tuple[Cell, Task]]) -> None:
        """Submit as the executor has room, poll the jobs until every one is over."""
        pending, total = list(todo), len(todo) + len(flight)
        while pending or flight:
            room = len(pending) if self.executor.max_in_flight is None else self.executor.max_in_flight - len(flight)
            batch, pending = pending[: max(room, 0)], pending[max(room, 0) :]
            if batch:
                tasks = [self.task(cell, action) for cell, action in batch]
                for task in tasks:
                    task.record.unlink(missing_ok=True)
                ids = self.executor.submit(tasks)
                for (cell, _), task, job in zip(batch, tasks, ids, strict=True):
                    flight[job] = (cell, task)
                    self.rows[cell.id].update(status="queued", job_id=job, job_log=self.executor.job_log(job),
                                              submitted_at=round(time.time(), 1), command=task.command())  # fmt: skip
                self._write_index()
                self._show()
            if flight:
                time.sleep(self.executor.poll_s)
                self._poll(flight, total)

    def _poll(self, flight: dict[str, tuple[Cell, Task]], total: int) -> None:
        changed = False
        for job, (state, word) in self.executor.states(list(flight)).items():
            cell, task = flight[job]
            row = self.rows[cell.id]
            if state != ENDED:
                changed |= (row["status"], row["job_state"]) != (state, word)
                row.update(status=state, job_state=word)
                continue
            del flight[job]
            self.rows[cell.id] = row = self._ended(row, task, word)
            changed = True
            done = sum(1 for r in self.rows.values() if r["action"] != "skip" and r["status"] in OVER)
            if row["status"] == "finished":
                self.log(f"[{done}/{total}] {row['id']} finished in {row['duration_s']:.0f}s")
            else:
                self.log(f"[{done}/{total}] {row['id']} {row['status'].upper()} (exit {row['returncode']}): "
                         f"{row['error']}; log: {row['log']}")  # fmt: skip
        if changed:
            self._write_index()
            self._show()

    def _show(self) -> None:
        """The progress bar: cells over, and how many run, wait in a queue or failed."""
        rows = [r for r in self.rows.values() if r["action"] != "skip"]
        count = {s: sum(r["status"] == s for r in rows) for s in ("running", "queued", "failed")}
        done = sum(r["status"] in OVER for r in rows)
        self._bar(done, ", ".join(f"{n} {s}" for s, n in count.items() if n or s == "running"))

    def _ended(self, row: dict[str, Any], task: Task, word: str) -> dict[str, Any]:
        """A job is over: finished, interrupted (it stopped at a checkpoint) or failed, from its exit record."""
        try:
            record = json.loads(task.record.read_text())
        except (OSError, json.JSONDecodeError):
            record = None
        returncode = record["returncode"] if record else None
        elapsed = round(time.time() - row["submitted_at"], 1) if row.get("submitted_at") else None
        duration = record["duration_s"] if record else elapsed
        row = {**row, "returncode": returncode, "job_state": word, "duration_s": duration}
        if returncode == 0 and self.result(task.folder).is_file():
            return {**row, "status": "finished", "error": ""}
        log = RunDir(task.folder).log_file if RunDir(task.folder).log_file.is_file() else task.pending_log
        text = log.read_text(errors="replace") if log.is_file() else ""
        if returncode is None:
            error = (f"the job ended without an exit code ({self.executor.name} job state {word}: "
                     "killed, cancelled or timed out)")  # fmt: skip
        elif returncode:
            error = _last_line(text)
        else:
            error = f"exited 0 without writing {self.result(task.folder).name}"
        return {**row, "status": "interrupted" if returncode == 130 else "failed", "error": error, "log": str(log)}

    def _row(self, cell: Cell, action: str, status: str) -> dict[str, Any]:
        folder = self.folder(cell)
        return {
            "id": cell.id, "status": status, "action": action, "game": cell.game, "backbone": cell.backbone,
            "label": cell.label, "tokenizer": cell.tokenizer, "seed": cell.seed, "duration_s": None, "returncode": None,
            "folder": str(folder), "log": str(RunDir(folder).log_file), "error": "", "executor": self.executor.name,
            "job_id": "", "job_state": "", "job_log": "", "submitted_at": None,
            "command": self.task(cell, "run").command(),
        }  # fmt: skip

    def _previous_rows(self) -> dict[str, dict[str, Any]]:
        path = self.out / "index.json"
        if not path.is_file():
            return {}
        try:
            return {r["id"]: r for r in json.loads(path.read_text()).get("cells", [])}
        except (json.JSONDecodeError, AttributeError, KeyError, TypeError):
            return {}

    def _write_index(self) -> None:
        rows = [self.rows[c.id] for c in self.cells if c.id in self.rows]
        executor = {"name": self.executor.name, "options": asdict(self.executor.options)}
        index = {"benchmark": self.bench.name, "file": str(self.bench.path), "track": self.bench.track,
                 "executor": executor, "cells": rows}  # fmt: skip
        files.write_json(self.out / "index.json", index)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=INDEX_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
        files.write_bytes(self.out / "index.csv", buffer.getvalue().encode())
