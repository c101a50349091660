"""The ``slurm`` executor: each cell a Slurm job submitted through submitit (one job array per sweep), requeued on
preemption or timeout and resumed from the cell's own checkpoint (``wmbench run --resume``)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from wmbench.errors import WmbenchError
from wmbench.executors.base import ENDED, QUEUED, RUNNING, Executor, Task, run_task

ACTIVE = {"PENDING": QUEUED, "REQUEUED": QUEUED, "REQUEUE_HOLD": QUEUED, "REQUEUE_FED": QUEUED, "CONFIGURING": QUEUED,
          "RUNNING": RUNNING, "COMPLETING": RUNNING, "SUSPENDED": RUNNING, "RESIZING": RUNNING, "STOPPED": RUNNING,
          "SIGNALING": RUNNING, "STAGE_OUT": RUNNING}  # fmt: skip
"""squeue's states of a job not over yet (any other state, or a job squeue no longer lists, is over)."""
FLAG = re.compile(r"^--([a-z][a-z0-9-]*)(?:=(\S.*))?$")


@dataclass(frozen=True)
class SlurmOptions:
    partition: str = ""
    """Partition (sbatch --partition) [default: the cluster's default partition]."""
    account: str = ""
    gpus_per_cell: int = 0
    gpu_type: str = ""
    """A GPU type of the cluster's gres (a100, h100): asks for --gpus-per-node=TYPE:N."""
    cpus_per_cell: int = 1
    mem_per_cell: str = ""
    """Memory per cell, as sbatch --mem takes it (64G) [default: the partition's]."""
    time_limit_min: int = 60
    """Each job's time limit; a cell that reaches it is requeued and resumes from its checkpoint."""
    array_parallelism: int = 256
    """Cells of the sweep that run at the same time."""
    max_requeues: int = 3
    """Timeouts after which a cell is not requeued again (preemptions do not count)."""
    signal_delay_s: int = 120
    """Seconds before the time limit at which a cell is told to checkpoint and is requeued."""
    sbatch: tuple[str, ...] = ()
    """Extra sbatch options, one per entry: "--qos=high", "--constraint=a100"."""
    setup: tuple[str, ...] = ()
    """Shell lines the job runs before the cell, written by you: "module load cuda", "source venv/bin/activate"."""
    python: str = ""
    """The Python the jobs run [default: this sweep's]: the environment the jobs activate."""


class SlurmCell:
    """What a Slurm job runs (pickled by submitit): one task; on preemption or timeout (submitit's checkpoint
    hook) it stops the cell, which writes its checkpoint after the current epoch, and requeues its resumption."""

    def __init__(self, grace_s: float):
        self.grace_s = grace_s
        self.proc: subprocess.Popen | None = None

    def __call__(self, task: Task) -> int:
        import submitit

        returncode = run_task(task, started=self._started)
        if returncode != 0:  # a job that fails shows FAILED in Slurm; the exit record already holds the code
            raise submitit.core.utils.FailedJobError(f"wmbench exited {returncode}; see {task.folder / 'log.txt'}")
        return returncode

    def _started(self, proc: subprocess.Popen) -> None:
        self.proc = proc

    def checkpoint(self, task: Task):
        """Called by submitit's signal handler while ``run_task`` waits on the cell, so the cell is waited for with
        os.waitpid (Popen's own wait lock is held by the interrupted wait)."""
        import submitit

        if self.proc is not None and self.proc.returncode is None:
            pid = self.proc.pid
            os.kill(pid, signal.SIGTERM)  # wmbench stops after the current epoch's checkpoint
            deadline = time.monotonic() + self.grace_s
            while os.waitpid(pid, os.WNOHANG)[0] == 0:
                if time.monotonic() > deadline:
                    os.kill(pid, signal.SIGKILL)  # the last checkpoint (one epoch back) is the one to resume from
                    os.waitpid(pid, 0)
                    break
                time.sleep(0.5)
        self.proc = None
        return submitit.helpers.DelayedSubmission(SlurmCell(self.grace_s), task.resumed())


def _run(argv: list[str], what: str, timeout: float = 30) -> str:
    """A Slurm command's output, or a WmbenchError naming what could not be done."""
    if shutil.which(argv[0]) is None:
        raise WmbenchError(f"cannot {what}: Slurm's {argv[0]} is not on PATH (is this a Slurm login node?)")
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        raise WmbenchError(f"cannot {what}: {argv[0]} did not answer in {timeout:.0f}s (is slurmctld up?)") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]
        raise WmbenchError(f"cannot {what}: {argv[0]} failed: {last}")
    return done.stdout


class SlurmExecutor(Executor):
    name = "slurm"
    Options = SlurmOptions
    poll_s = 2.0

    def __init__(self, options: SlurmOptions, out: Path, jobs: int = 1):
        super().__init__(options, out, jobs)
        self.folder = self.out / "slurm"

    def threads(self) -> int:
        return self.options.cpus_per_cell

    def _parameters(self) -> dict:
        o = self.options
        extra: dict = {"requeue": True}  # preempted jobs go back to the queue (and resume from their checkpoint)
        for line in o.sbatch:
            match = FLAG.match(line.removeprefix("#SBATCH").strip())
            if not match:
                raise WmbenchError(
                    f"executor option 'sbatch': {line!r} is not an sbatch option (--name or --name=value)"
                )
            extra[match[1]] = match[2] if match[2] is not None else True
        params = {"timeout_min": o.time_limit_min, "cpus_per_task": o.cpus_per_cell, "tasks_per_node": 1, "nodes": 1,
                  "slurm_array_parallelism": o.array_parallelism, "slurm_signal_delay_s": o.signal_delay_s,
                  "name": f"wmbench-{self.out.name}", "slurm_setup": list(o.setup) or None,
                  "slurm_additional_parameters": extra, "slurm_stderr_to_stdout": True}  # fmt: skip
        if o.gpus_per_cell:
            params["slurm_gpus_per_node"] = f"{o.gpu_type}:{o.gpus_per_cell}" if o.gpu_type else o.gpus_per_cell
        for key, value in (
            ("slurm_partition", o.partition),
            ("slurm_account", o.account),
            ("slurm_mem", o.mem_per_cell),
        ):
            if value:
                params[key] = value
        return params

    def _executor(self):
        import submitit

        python = (
            shlex.quote(self.options.python) if self.options.python else None
        )  # submitit puts it in the script as is
        try:
            executor = submitit.AutoExecutor(folder=self.folder / "%j", cluster="slurm", slurm_python=python,
                                             slurm_max_num_timeout=self.options.max_requeues)  # fmt: skip
        except RuntimeError as exc:  # submitit found no srun
            raise WmbenchError(f"cannot use Slurm here: {exc}") from None
        executor.update_parameters(**self._parameters())
        return executor

    def check(self) -> None:
        self._parameters()
        partitions = [p.rstrip("*") for p in _run(["sinfo", "-h", "-o", "%P"], "reach Slurm").split()]
        if self.options.partition and self.options.partition not in partitions:
            from wmbench.errors import unknown

            raise WmbenchError(
                f"Slurm has no such partition: {unknown('partition', self.options.partition, partitions)}"
            )

    def submit(self, tasks: list[Task]) -> list[str]:
        executor = self._executor()
        cell = SlurmCell(grace_s=max(5, self.options.signal_delay_s - 30))
        try:
            with executor.batch():
                jobs = [executor.submit(cell, task) for task in tasks]
        except Exception as exc:  # submitit's FailedSubmissionError and the like: sbatch said no
            text = str(exc).strip().splitlines()
            raise WmbenchError(f"sbatch refused the jobs: {text[-1] if text else type(exc).__name__}") from exc
        return [job.job_id for job in jobs]

    def states(self, job_ids: list[str]) -> dict[str, tuple[str, str]]:
        if not job_ids:
            return {}
        text = _run(
            ["squeue", "-h", "-t", "all", "-r", "-j", ",".join(job_ids), "-o", "%i %T"], "ask Slurm for job states"
        )
        seen = dict(line.split(None, 1) for line in text.splitlines() if line.strip())
        out = {}
        for job in job_ids:
            state = seen.get(job, "GONE").strip()
            out[job] = (ACTIVE.get(state, ENDED), state)
        return out

    def cancel(self, job_id: str) -> None:
        _run(["scancel", job_id], f"cancel job {job_id}")

    def job_log(self, job_id: str) -> str:
        return str(self.folder / job_id / f"{job_id}_0_log.out")

    def describe(self, tasks: list[Task]) -> str:
        executor = self._executor()
        inner = executor._executor  # submitit's SlurmExecutor: the sbatch script it would write
        if len(tasks) > 1:
            inner.parameters["map_count"] = len(tasks)
        script = inner._make_submission_file_text(inner._submitit_command_str, "dry-run")
        cells = "\n".join(f"#   task {i}: {t.command()}" for i, t in enumerate(tasks))
        note = "# Each array task runs one cell (submitit's pickled call of wmbench.executors.base.run_task):"
        return f"{script}\n{note}\n{cells}\n"
