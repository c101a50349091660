"""The ``local`` executor: each cell a process on this machine, ``--jobs`` at a time (the default)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from wmbench import files
from wmbench.executors.base import (
    ENDED,
    RUNNING,
    Executor,
    Task,
    forward_signals,
    run_task,
)


@dataclass(frozen=True)
class LocalOptions:
    threads: int = 0
    """OMP_NUM_THREADS of each cell [default: $OMP_NUM_THREADS, else the cores shared out between the jobs]."""


class LocalExecutor(Executor):
    """Runs each task as ``python -m wmbench.executors.local TASK.json`` in its own session; the job id is its pid."""

    name = "local"
    Options = LocalOptions
    poll_s = 0.2

    def __init__(self, options: LocalOptions, out: Path, jobs: int = 1):
        super().__init__(options, out, jobs)
        self.max_in_flight = jobs
        self.procs: dict[str, subprocess.Popen] = {}

    def threads(self) -> int:
        cores = max(1, (os.cpu_count() or 1) // (self.max_in_flight or 1))
        return self.options.threads or int(os.environ.get("OMP_NUM_THREADS") or cores)

    def submit(self, tasks: list[Task]) -> list[str]:
        ids = []
        for task in tasks:
            spec = self.out / "jobs" / f"{task.cell}.task.json"
            files.write_json(spec, task.to_json())
            proc = subprocess.Popen([sys.executable, "-m", "wmbench.executors.local", str(spec)],
                                    stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
            self.procs[str(proc.pid)] = proc
            ids.append(str(proc.pid))
        return ids

    def states(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        out = {}
        for job in job_ids:
            proc = self.procs.get(job)
            if proc is not None:
                alive = proc.poll() is None
            else:  # started by an earlier sweep: alive when that pid still runs this sweep's task
                try:
                    alive = str(self.out / "jobs") in Path(f"/proc/{job}/cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    alive = False
            out[job] = (RUNNING, "running") if alive else (ENDED, "exited")
        return out

    def cancel(self, job_id: str) -> None:
        try:
            os.kill(int(job_id), signal.SIGTERM)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        """Ctrl-C: ask the running cells to stop after their next checkpoint (they resume on the next sweep)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs.values():
            proc.wait()


def main(spec: str) -> int:
    task = Task.from_json(json.loads(Path(spec).read_text()))
    return run_task(task, started=forward_signals)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
