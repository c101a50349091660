"""The executor contract: how a sweep hands one cell to an engine (local processes, Slurm, Ray) and follows it.

A cell is a :class:`Task`: the ``wmbench`` arguments that run it, those that resume it from its checkpoint, and
where its output goes. Every executor runs a task the same way, through :func:`run_task` on the machine that
runs the cell: ``python -m wmbench ARGS`` as its own process, its output in the cell's ``log.txt``, its exit code
in ``jobs/<cell>.json``. An executor only submits, reports states, cancels and names its job ids and logs.

A third-party executor registers through ``wmbench_register_executors(register)`` exactly as the built-ins do.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench import files, lock
from wmbench.errors import WmbenchError
from wmbench.rundir import RunDir

QUEUED, RUNNING, ENDED = "queued", "running", "ended"
"""What :meth:`Executor.states` reports of a job: waiting for resources, running, or over (whatever the outcome:
the cell's folder and exit record tell finished from failed)."""


@dataclass(frozen=True)
class Task:
    """One cell to run: ``python -m wmbench ARGS``, where its output goes, and what marks it done."""

    cell: str
    args: tuple[str, ...]
    """The ``wmbench`` arguments (after ``python -m wmbench``)."""
    resume_args: tuple[str, ...]
    """The arguments that continue the cell from its checkpoint (used when a job is requeued)."""
    folder: Path
    """The cell's run folder; its output ends in ``folder/log.txt``."""
    pending_log: Path
    """Where a fresh cell's output goes until it ends (a fresh run must find its folder empty)."""
    record: Path
    """The exit record ``run_task`` writes when the process ends: ``{"returncode", "duration_s"}``."""
    threads: int
    """OMP_NUM_THREADS of the cell."""
    make_folder: bool = False
    """Create the folder before a fresh run (``wmbench bench`` writes its CSV into it)."""
    rename: tuple[Path, Path] | None = None
    """A file renamed on success (``throughput.partial.csv`` to ``throughput.csv``)."""
    result: Path | None = None
    """The file whose presence means the cell finished (its ``summary.json``)."""

    @property
    def resumes(self) -> bool:
        return "--resume" in self.args

    def resumed(self) -> Task:
        """The task that continues this cell from its checkpoint (or starts it again without one)."""
        has_checkpoint = RunDir(self.folder).last_checkpoint.is_file()
        return dataclasses.replace(self, args=self.resume_args) if has_checkpoint and self.resume_args else self

    def argv(self, python: str = sys.executable) -> list[str]:
        return [python, "-m", "wmbench", *self.args]

    def command(self) -> str:
        """The shell line that reproduces the cell by hand (shown, never run through a shell)."""
        return f"OMP_NUM_THREADS={self.threads} {shlex.join(self.argv())}"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        return json.loads(json.dumps(data, default=str))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Task:
        paths = {k: Path(data[k]) for k in ("folder", "pending_log", "record")}
        rename = tuple(Path(p) for p in data["rename"]) if data.get("rename") else None
        return cls(
            data["cell"],
            tuple(data["args"]),
            tuple(data["resume_args"]),
            threads=int(data["threads"]),
            make_folder=bool(data["make_folder"]),
            rename=rename,
            result=Path(data["result"]) if data.get("result") else None,
            **paths,
        )  # type: ignore[arg-type]


_LIBC = ctypes.CDLL(None, use_errno=True)  # loaded before any fork: the child only calls into it


def _die_with_parent() -> None:
    """In the cell's process: killed when the process that started it dies (a killed Ray worker or Slurm step),
    and deaf to submitit's preemption signal (its job step handles that and stops the cell)."""
    _LIBC.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    signal.signal(signal.SIGUSR2, signal.SIG_IGN)


def run_task(task: Task, started: typing.Callable[[subprocess.Popen], None] | None = None) -> int:
    """Run one cell to its end on this machine; returns its exit code and writes its exit record.

    One job of a cell runs at a time: a job of an earlier sweep that is still running it (its sweep killed before it
    recorded the job) is waited for, then the cell is skipped if that job finished it, or resumed from its
    checkpoint. SIGINT and SIGTERM are passed on to the cell (``wmbench run`` then stops after the epoch's
    checkpoint); ``started`` receives the process (so an executor can stop it on preemption)."""
    job_lock = lock.acquire(task.record.with_suffix(".lock"), f"cell {task.cell}", wait=True)
    try:
        if task.result is not None and task.result.is_file():
            files.write_json(task.record, {"returncode": 0, "duration_s": 0.0})
            return 0
        return _run(task.resumed(), started)
    finally:
        os.close(job_lock)


def _run(task: Task, started: typing.Callable[[subprocess.Popen], None] | None) -> int:
    task.record.unlink(missing_ok=True)
    if not task.resumes and task.folder.exists():  # an earlier attempt that died before its first checkpoint
        shutil.rmtree(task.folder)
    if not task.resumes and task.make_folder:
        task.folder.mkdir(parents=True)
    log_path = RunDir(task.folder).log_file if task.folder.is_dir() else task.pending_log
    log_path.parent.mkdir(parents=True, exist_ok=True)
    if log_path != task.pending_log and task.pending_log.is_file():  # the output of an attempt killed mid-run
        with open(log_path, "ab") as log:
            log.write(task.pending_log.read_bytes())
        task.pending_log.unlink()
    env = {**os.environ, "OMP_NUM_THREADS": str(task.threads), "PYTHONUNBUFFERED": "1"}  # the log is live
    start = time.perf_counter()
    with open(log_path, "a") as log:
        log.write(f"$ {task.command()}\n")
        log.flush()
        proc = subprocess.Popen(
            task.argv(),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 (it takes no lock: one C call, one signal disposition)
        )
        if started:
            started(proc)
        returncode = proc.wait()
    if log_path != RunDir(task.folder).log_file:
        task.folder.mkdir(parents=True, exist_ok=True)
        os.replace(log_path, RunDir(task.folder).log_file)
    if task.rename and returncode == 0 and task.rename[0].is_file():
        os.replace(*task.rename)
    files.write_json(task.record, {"returncode": returncode, "duration_s": round(time.perf_counter() - start, 1)})
    return returncode


def forward_signals(proc: subprocess.Popen) -> None:
    """Pass SIGINT and SIGTERM on to the cell's process (it stops after its epoch's checkpoint)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda sig, frame: proc.send_signal(sig))


class Executor:
    """Runs tasks on an engine. Subclasses set ``name`` and ``Options`` (a dataclass of the executor's options, from
    ``--executor-option KEY=VALUE`` and the benchmark file's ``[executor]`` table) and implement the methods."""

    name = "?"
    Options: type = object
    max_in_flight: int | None = None
    """How many tasks to hand over at a time (None: all; the engine queues them)."""
    poll_s = 1.0

    def __init__(self, options: Any, out: Path, jobs: int = 1):
        """``jobs``: the sweep's --jobs (how many cells the local executor runs at a time)."""
        self.options, self.out = options, Path(out)

    def threads(self) -> int:
        """OMP_NUM_THREADS of each cell."""
        raise NotImplementedError

    def check(self) -> None:
        """Raise a WmbenchError when the engine cannot take the tasks (unreachable, a partition that does not
        exist); called before anything is submitted."""

    def attach(self) -> bool:
        """Connect to follow jobs another process submitted (``--status``); False when they cannot be seen from
        here (a Ray instance of the sweep's own)."""
        self.check()
        return True

    def submit(self, tasks: list[Task]) -> list[str]:
        """Hand the tasks over; returns their job ids, in order."""
        raise NotImplementedError

    def states(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        """Each job's (QUEUED | RUNNING | ENDED, the engine's own word for its state)."""
        raise NotImplementedError

    def cancel(self, job_id: str) -> None:
        raise NotImplementedError

    def job_log(self, job_id: str) -> str:
        """The engine's own log of the job ('' when the cell's log.txt is all there is)."""
        return ""

    def describe(self, tasks: list[Task]) -> str:
        """What would be submitted for these tasks (an sbatch script, a Ray task spec), for --dry-run."""
        return ""

    def stop(self) -> None:
        """The sweep was interrupted: stop or leave its jobs (they resume on the next sweep)."""

    def close(self) -> None:
        """Disconnect from the engine."""


class RegisterExecutor:
    """What ``wmbench_register_executors`` receives: ``register(name, executor_class, summary="")``."""

    def __init__(self, table: dict[str, tuple[type[Executor], str, str]], plugin: str):
        self._table, self._plugin = table, plugin

    def __call__(self, name: str, executor: type, summary: str = "") -> None:
        if not (isinstance(executor, type) and issubclass(executor, Executor)) or not dataclasses.is_dataclass(
            executor.Options
        ):
            raise WmbenchError(f"executor {name!r} must be a subclass of wmbench.executors.base.Executor "
                               "with an Options dataclass")  # fmt: skip
        if name in self._table:
            raise WmbenchError(f"registers executor {name!r}, which plugin {self._table[name][2]!r} registered first")
        self._table[name] = (executor, summary, self._plugin)
