"""Benchmark definitions (``benchmarks/*.toml``) and ``wmbench sweep``: every cell of a benchmark's matrix
(games x backbones x tokenizers x seeds) run as its own ``wmbench`` process, a few at a time.

A benchmark file::

    name = "smoke"
    track = "agent"                  # agent | world-model | throughput
    preset = "smoke"
    games = ["Pong", "Breakout"]
    seeds = [0]
    tokenizers = ["vqvae"]           # optional, default ["vqvae"]
    device = "cpu"                   # optional: --device of every cell
    batch = 16                       # optional, throughput only: --batch of wmbench bench
    set = ["training.epochs=4"]      # optional: --set overrides of every cell

    [[backbones]]
    name = "llm-lora"
    label = "llm-lora-random"        # optional (default: the name); names the cells (reports name a setup by
                                     # its backbone and the options that tell it apart from the others)
    set = ["backbone.model=tiny-llama", "backbone.pretrained=false"]

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
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click

from wmbench import files
from wmbench.errors import WmbenchError, did_you_mean
from wmbench.executors.base import ENDED, Executor, Task

TRACKS = ("agent", "world-model", "throughput")
KEYS = ("name", "description", "track", "preset", "games", "seeds", "tokenizers", "device", "batch", "set", "backbones",
        "executor")
BACKBONE_KEYS = ("name", "label", "set")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
INDEX_FIELDS = (
    "id", "status", "action", "game", "backbone", "label", "tokenizer", "seed", "duration_s", "returncode",
    "folder", "log", "error", "executor", "job_id", "job_state", "job_log", "submitted_at", "command",
)  # fmt: skip


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    label: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A validated benchmark file."""

    path: Path
    name: str
    track: str
    preset: str
    games: tuple[str, ...]
    seeds: tuple[int, ...]
    tokenizers: tuple[str, ...]
    backbones: tuple[BackboneSpec, ...]
    overrides: tuple[str, ...] = ()
    device: str | None = None
    batch: int | None = None
    description: str = ""
    executor: dict[str, Any] = field(default_factory=dict, hash=False)
    """The ``[executor]`` table: ``name`` (local, slurm, ray) and that executor's options."""

    def definition(self) -> dict[str, Any]:
        """What the benchmark runs, as JSON (path, description and executor left out: they change no cell)."""
        data = asdict(self)
        for key in ("path", "description", "executor"):
            data.pop(key)
        return json.loads(json.dumps(data))


@dataclass(frozen=True)
class Cell:
    """One process of a sweep: a game, a backbone setup, a tokenizer and a seed (no seed for throughput)."""

    id: str
    game: str
    backbone: str
    label: str
    tokenizer: str
    seed: int | None
    overrides: tuple[str, ...] = field(default=())


# Reading benchmark files -----------------------------------------------------------------------------


def _list(data: dict[str, Any], key: str, kind: type, where: str, default: list | None = None) -> list:
    """A list of distinct values of one type: non-empty, except for ``set`` (overrides)."""
    value = data.get(key, default)
    if value is None:
        raise WmbenchError(f"{where}: missing {key!r}")
    if not isinstance(value, list) or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value) or not (value or key == "set"):
        raise WmbenchError(f"{where}: {key!r} must be a non-empty list of {kind.__name__}s, got {value!r}")
    if len(set(value)) != len(value):
        raise WmbenchError(f"{where}: {key!r} lists an entry twice: {value!r}")
    return value


def _keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise WmbenchError(f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}")


def load_benchmark(path: Path) -> Benchmark:
    """Read and fully check a benchmark file: every name, key and value of every cell, before anything runs."""
    from wmbench.config import preset_names
    from wmbench.errors import unknown
    from wmbench.plugins import registry

    path = Path(path)
    data = files.read_toml(path, "benchmark file")
    where = f"benchmark file {path}"
    _keys(data, KEYS, where)
    for key in ("name", "track", "preset"):
        if not isinstance(data.get(key), str):
            raise WmbenchError(f"{where}: {key!r} must be a string, got {data.get(key)!r}")
    if data["track"] not in TRACKS:
        raise WmbenchError(f"{where}: {unknown('track', data['track'], TRACKS)}")
    if data["preset"] not in preset_names():
        raise WmbenchError(f"{where}: {unknown('preset', data['preset'], preset_names())}")
    if "batch" in data and (data["track"] != "throughput" or not isinstance(data["batch"], int) or data["batch"] < 1):
        raise WmbenchError(f"{where}: 'batch' is a positive integer of the throughput track only, got {data['batch']!r}")
    if data.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise WmbenchError(f"{where}: 'device' must be auto, cpu or cuda, got {data['device']!r}")
    raw = data.get("backbones")
    if not isinstance(raw, list) or not raw or not all(isinstance(b, dict) for b in raw):
        raise WmbenchError(f"{where}: 'backbones' must be a non-empty array of tables ([[backbones]] with a name)")
    specs = []
    reg = registry()
    for i, entry in enumerate(raw):
        at = f"{where}, backbones[{i}]"
        _keys(entry, BACKBONE_KEYS, at)
        if not isinstance(entry.get("name"), str):
            raise WmbenchError(f"{at}: 'name' must be a backbone id, got {entry.get('name')!r}")
        try:
            reg.get("backbone", entry["name"])
        except WmbenchError as exc:
            raise WmbenchError(f"{at}: {exc}") from None
        label = entry.get("label", entry["name"])
        if not isinstance(label, str) or not LABEL.match(label):
            raise WmbenchError(f"{at}: 'label' must be letters, digits, '.', '_' or '-', got {label!r}")
        specs.append(BackboneSpec(entry["name"], label, tuple(_list(entry, "set", str, at, default=[]))))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise WmbenchError(f"{where}: two backbones have the same label; give each a distinct 'label' ({', '.join(labels)})")
    bench = Benchmark(
        path=path,
        name=data["name"],
        track=data["track"],
        preset=data["preset"],
        games=tuple(_list(data, "games", str, where)),
        seeds=tuple(_list(data, "seeds", int, where, default=[0])),
        tokenizers=tuple(_list(data, "tokenizers", str, where, default=["vqvae"])),
        backbones=tuple(specs),
        overrides=tuple(_list(data, "set", str, where, default=[])),
        device=data.get("device"),
        batch=data.get("batch"),
        description=str(data.get("description", "")),
        executor=data.get("executor", {}),
    )
    if not isinstance(bench.executor, dict):
        raise WmbenchError(f"{where}: 'executor' must be a table ([executor] with a name and its options)")
    for tokenizer in bench.tokenizers:
        try:
            reg.get("tokenizer", tokenizer)
        except WmbenchError as exc:
            raise WmbenchError(f"{where}: {exc}") from None
    _check_cells(bench)
    return bench


def _check_cells(bench: Benchmark) -> None:
    """Resolve every cell's config as its process will (game names, config keys, option values)."""
    from wmbench import config as cfg
    from wmbench.plugins import registry

    where = f"benchmark file {bench.path}"
    for game in bench.games:
        try:
            registry().game(game)
        except WmbenchError as exc:
            raise WmbenchError(f"{where}: {exc}") from None
    extra = {"device": bench.device} if bench.device else {}
    for i, spec in enumerate(bench.backbones):
        for tokenizer in bench.tokenizers:
            try:
                config = cfg.resolve(bench.preset, bench.games[0], bench.seeds[0], tokenizer, spec.name,
                                     [*bench.overrides, *spec.overrides], registry(), extra)  # fmt: skip
                if bench.track == "world-model":
                    from wmbench.tracks.world_model import check_settings

                    check_settings(config)
            except WmbenchError as exc:
                raise WmbenchError(f"{where}, backbones[{i}] ({spec.label}): {exc}") from None


def cells(bench: Benchmark) -> list[Cell]:
    """Every cell, with a readable id that stays the same from one sweep to the next."""
    seeds: tuple[int | None, ...] = (None,) if bench.track == "throughput" else bench.seeds
    out = []
    for game in bench.games:
        for spec in bench.backbones:
            for tokenizer in bench.tokenizers:
                for seed in seeds:
                    parts = [game, spec.label, tokenizer] + ([] if seed is None else [f"s{seed}"])
                    out.append(Cell("-".join(parts), game, spec.name, spec.label, tokenizer, seed, (*bench.overrides, *spec.overrides)))
    return out


# Running ---------------------------------------------------------------------------------------------


def _result_file(bench: Benchmark, folder: Path) -> Path:
    """The file whose presence means a cell finished (``wmbench bench`` writes its CSV beside it, renamed once
    the process succeeds)."""
    return folder / ("throughput.csv" if bench.track == "throughput" else "summary.json")


def _partial_csv(folder: Path) -> Path:
    return folder / "throughput.partial.csv"


def command(bench: Benchmark, cell: Cell, folder: Path, resume: bool) -> list[str]:
    """The ``wmbench`` arguments of a cell (after ``python -m wmbench``)."""
    name = {"agent": "run", "world-model": "world-model", "throughput": "bench"}[bench.track]
    if resume:
        return [name, "--resume", str(folder)]
    args = [name, "--backbone", cell.backbone, "--tokenizer", cell.tokenizer, "--game", cell.game, "--preset", bench.preset]
    if cell.seed is not None:
        args += ["--seed", str(cell.seed)]
    if bench.device:
        args += ["--device", bench.device]
    if bench.batch:
        args += ["--batch", str(bench.batch)]
    for item in cell.overrides:
        args += ["--set", item]
    return args + (["--csv", str(_partial_csv(folder))] if bench.track == "throughput" else ["--out", str(folder)])


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Sweep:
    """The cells of a benchmark in a sweep folder: what each needs, handing them to an executor, and the index."""

    def __init__(self, bench: Benchmark, out: Path, jobs: int, log=print, executor: Executor | None = None):
        from wmbench.executors.local import LocalExecutor, LocalOptions

        self.bench, self.out, self.jobs, self.log = bench, Path(out).absolute(), jobs, log
        self.executor = executor or LocalExecutor(LocalOptions(), self.out, jobs)
        self.cells = cells(bench)
        self.rows: dict[str, dict[str, Any]] = {}

    def folder(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def action(self, cell: Cell) -> str:
        """skip (finished), resume (a checkpoint to continue from) or run (from the start)."""
        folder = self.folder(cell)
        if _result_file(self.bench, folder).is_file():
            return "skip"
        if self.bench.track != "throughput" and (folder / "checkpoints" / "last.pt").is_file():
            return "resume"
        return "run"

    def argv(self, cell: Cell, action: str) -> list[str]:
        return [sys.executable, "-m", "wmbench", *command(self.bench, cell, self.folder(cell), action == "resume")]

    def task(self, cell: Cell, action: str) -> Task:
        """What the executor runs for a cell."""
        folder, throughput = self.folder(cell), self.bench.track == "throughput"
        return Task(
            cell.id, tuple(command(self.bench, cell, folder, action == "resume")),
            () if throughput else tuple(command(self.bench, cell, folder, True)), folder,
            pending_log=self.out / "logs" / f"{cell.id}.log", record=self.out / "jobs" / f"{cell.id}.json",
            threads=self.executor.threads(), make_folder=throughput,
            rename=(_partial_csv(folder), _result_file(self.bench, folder)) if throughput else None,
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
        elif self.out.exists() and (not self.out.is_dir() or any(self.out.iterdir())):
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
        end; returns the index rows."""
        self.check_folder()
        self.executor.check()
        files.write_json(self.out / "benchmark.json", {"file": str(self.bench.path), "definition": self.bench.definition()})
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
            over = ("finished", "failed", "interrupted")
            done = sum(1 for r in self.rows.values() if r["action"] != "skip" and r["status"] in over)
            if row["status"] == "finished":
                self.log(f"[{done}/{total}] {row['id']} finished in {row['duration_s']:.0f}s")
            else:
                self.log(f"[{done}/{total}] {row['id']} {row['status'].upper()} (exit {row['returncode']}): "
                         f"{row['error']}; log: {row['log']}")  # fmt: skip
        if changed:
            self._write_index()

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
        if returncode == 0 and _result_file(self.bench, task.folder).is_file():
            return {**row, "status": "finished", "error": ""}
        log = task.folder / "log.txt" if (task.folder / "log.txt").is_file() else task.pending_log
        text = log.read_text(errors="replace") if log.is_file() else ""
        if returncode is None:
            error = (f"the job ended without an exit code ({self.executor.name} job state {word}: "
                     "killed, cancelled or timed out)")  # fmt: skip
        elif returncode:
            error = _last_line(text)
        else:
            error = f"exited 0 without writing {_result_file(self.bench, task.folder).name}"
        return {**row, "status": "interrupted" if returncode == 130 else "failed", "error": error, "log": str(log)}

    def _row(self, cell: Cell, action: str, status: str) -> dict[str, Any]:
        folder = self.folder(cell)
        return {
            "id": cell.id, "status": status, "action": action, "game": cell.game, "backbone": cell.backbone,
            "label": cell.label, "tokenizer": cell.tokenizer, "seed": cell.seed, "duration_s": None, "returncode": None,
            "folder": str(folder), "log": str(folder / "log.txt"), "error": "", "executor": self.executor.name,
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


# The command ---------------------------------------------------------------------------------------


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.argument("benchmark", required=False, type=click.Path(path_type=Path))
@click.option("--out", "-o", type=click.Path(path_type=Path), help="Sweep folder (created; rerun to resume).")
@click.option("--jobs", "-j", default=1, show_default=True, type=click.IntRange(min=1),
              help="Cells run at the same time (local).")
@click.option("--executor", "-x",
              help="Where cells run: local, slurm, ray [default: the file's [executor] name, else local].")
@click.option("--executor-option", "-E", "executor_options", multiple=True, metavar="KEY=VALUE",
              help="An executor option (repeatable), over the file's [executor] table: partition=gpu, gpus_per_cell=1.")
@click.option("--dry-run", is_flag=True,
              help="List the cells and their commands, and what would be submitted; run and write nothing.")
@click.option("--status", "status_dir", type=click.Path(path_type=Path),
              help="Report the cells of this sweep folder and exit.")
@click.option("--json", "as_json", is_flag=True, help="With --status: print JSON.")
def sweep(benchmark: Path | None, out: Path | None, jobs: int, executor: str | None, executor_options: tuple[str, ...],
          dry_run: bool, status_dir: Path | None, as_json: bool) -> None:  # fmt: skip
    """Run every cell of a benchmark file, each as its own wmbench process: JOBS at a time here, or as Slurm jobs
    or Ray actors (--executor).

    The file is checked whole before anything runs. A finished cell is skipped, an interrupted one resumed from
    its checkpoint and a cell whose job is still queued or running left alone, so rerunning the same command
    continues a sweep; a failed cell does not stop the others (its output is kept in its folder's log.txt, and
    the next sweep runs it again from the start). OUT/index.json and OUT/index.csv list every cell with its
    status, duration, folder, executor, job id and state, and command.

    \b
    Examples:
      wmbench sweep benchmarks/smoke.toml --out sweeps/smoke --jobs 2
      wmbench sweep benchmarks/atari100k.toml --out sweeps/a100k --executor slurm -E partition=gpu -E gpus_per_cell=1
      wmbench sweep benchmarks/smoke.toml --out sweeps/smoke --executor ray -E address=head:6379 --dry-run
      wmbench sweep --status sweeps/a100k --json
      wmbench compare sweeps/smoke --out sweeps/smoke/report

    Exit codes: 0 every cell finished, 1 some cell failed, 2 bad input, 130 interrupted (rerun to resume).
    """
    from wmbench.executors.options import make_executor
    from wmbench.executors.status import status, status_lines

    if status_dir is not None:
        report = status(status_dir)
        click.echo(json.dumps(report, indent=2) if as_json else "\n".join(status_lines(report)))
        return
    if benchmark is None or out is None:
        raise WmbenchError("wmbench sweep needs a benchmark file and --out (or --status DIR)")
    bench = load_benchmark(benchmark)
    where = f"benchmark file {benchmark}: executor"
    engine = make_executor(executor, bench.executor, executor_options, Path(out).absolute(), jobs, where)
    runner = Sweep(bench, out, jobs, log=click.echo, executor=engine)
    if dry_run:
        runner.check_folder()
        plan = runner.plan()
        for cell, action in plan:
            click.echo(f"{cell.id}  [{action}]  {shlex.join(runner.argv(cell, action))}")
        described = engine.describe([runner.task(c, a) for c, a in plan if a != "skip"])
        if described:
            click.echo(described.rstrip())
        return
    rows = runner.run()
    failed = [r for r in rows if r["status"] != "finished"]
    total = sum(r["duration_s"] or 0 for r in rows)
    click.echo(f"{len(rows) - len(failed)} of {len(rows)} cells finished ({total:.0f}s of cell time); "
               f"index: {runner.out / 'index.csv'}")  # fmt: skip
    if failed:
        click.echo(f"wmbench: {len(failed)} cell(s) did not finish: {', '.join(r['id'] for r in failed)}", err=True)
        sys.exit(1)
