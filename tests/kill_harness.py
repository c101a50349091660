"""Crash testing in the SQLite manner: a wmbench command is SIGKILLed at a chosen instant, then continued, and what it
leaves must equal a run never killed.

A command runs in a child forked from the test process (the CLI's own ``main``, as ``python -m wmbench`` runs it,
without paying for a fresh interpreter's imports on every trial). The child reports what it is doing through a pipe:
each instrumented method (collection, a replay write, a checkpoint write, media, an evaluation, summary.json, ...)
writes ``begin``/``end`` lines with the monotonic clock. Instrumenting is recording: the methods run unchanged. A
trial waits for the begin of one occurrence of one phase, waits a random fraction of that phase's duration in the
uninterrupted run, and sends SIGKILL; the phase the child was really in at that instant is read back from the same
lines.
"""

from __future__ import annotations

import functools
import json
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from wmbench.rundir import RunDir

VOLATILE = ("time", "wall_time", "train_seconds")
LINGER = 0.5
"""Seconds a child stays alive after its command returns, so that a kill aimed into its last, millisecond-long phase
(the summary write) still finds it alive when the parent has read that phase's events: the kill then lands in the
phase or just after it, and the phase column says which."""


def _phases() -> dict[str, list[tuple[type, str]]]:
    """The methods whose calls are phases, by phase name (imported late: the child instruments what it runs)."""
    from wmbench.engine.collector import Collector
    from wmbench.engine.replay import ReplayStore
    from wmbench.engine.trainer import Trainer
    from wmbench.executors.local import LocalExecutor
    from wmbench.sweep import Sweep
    from wmbench.tracks.world_model import WorldModelTrack

    return {
        "collection": [(Collector, "collect")],
        "replay write": [(ReplayStore, "put")],
        "training": [
            (Trainer, "train_tokenizer"),
            (Trainer, "train_world_model"),
            (Trainer, "train_actor_critic"),
            (WorldModelTrack, "train"),
        ],
        "metrics line": [(RunDir, "log")],
        "checkpoint write": [(Trainer, "save_checkpoint"), (WorldModelTrack, "_save_progress")],
        "media": [(Trainer, "write_media")],
        "evaluation": [(Trainer, "evaluate"), (WorldModelTrack, "evaluate")],
        "summary write": [(RunDir, "write_summary")],
        "cell submission": [(LocalExecutor, "submit")],
        "index write": [(Sweep, "_write_index")],
    }


def _instrument(fd: int) -> None:
    """In the child: every phase method reports its begin and end on ``fd``."""

    def traced(method, phase):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            os.write(fd, f"{time.monotonic():.6f} begin {phase}\n".encode())
            try:
                return method(*args, **kwargs)
            finally:
                os.write(fd, f"{time.monotonic():.6f} end {phase}\n".encode())

        return wrapper

    for phase, methods in _phases().items():
        for cls, name in methods:
            setattr(cls, name, traced(getattr(cls, name), phase))


@dataclass
class Child:
    """A forked ``wmbench`` command, its output file, and the phase lines read from it so far."""

    pid: int
    pipe: int
    started: float
    events: list[tuple[float, str, str]] = field(default_factory=list)
    _rest: bytes = b""

    def read(self, timeout: float) -> bool:
        """Read phase lines for up to ``timeout`` seconds; False once the child closed its end (it ended)."""
        ready, _, _ = select.select([self.pipe], [], [], timeout)
        if not ready:
            return True
        chunk = os.read(self.pipe, 65536)
        if not chunk:
            return False
        lines = (self._rest + chunk).split(b"\n")
        self._rest = lines.pop()
        for line in lines:
            stamp, what, phase = line.decode().split(" ", 2)
            self.events.append((float(stamp), what, phase))
        return True

    def wait(self, timeout: float = 600) -> int:
        """Read to the end and reap the child; returns its exit code (negative: the signal that killed it)."""
        deadline = time.monotonic() + timeout
        while self.read(max(0.0, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                raise TimeoutError(f"wmbench child {self.pid} ran past {timeout}s")
        os.close(self.pipe)
        _, status = os.waitpid(self.pid, 0)
        return os.waitstatus_to_exitcode(status)

    def phase_at(self, instant: float) -> str:
        """The innermost phase open at ``instant``, or 'after <the last phase ended>' between phases."""
        open_: list[str] = []
        last = "start"
        for stamp, what, phase in self.events:
            if stamp > instant:
                break
            if what == "begin":
                open_.append(phase)
            else:
                open_.remove(phase)
                last = phase
        return open_[-1] if open_ else f"after {last}"

    def occurrences(self, phase: str) -> list[tuple[float, float]]:
        """(begin, duration) of each call of a phase, in order."""
        begun, out = [], []
        for stamp, what, name in self.events:
            if name == phase:
                if what == "begin":
                    begun.append(stamp)
                else:
                    start = begun.pop()
                    out.append((start, stamp - start))
        return sorted(out)


@functools.cache
def _warm() -> None:
    """Import in the test process what every run imports on first use (torch.optim pulls in torch._dynamo, seconds
    of imports), so that forked children start at once."""
    torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])


def spawn(args: list[str], output: Path, env: dict[str, str] | None = None, before=None) -> Child:
    """Fork a child that runs ``wmbench ARGS`` with its output appended to ``output``, reporting its phases
    (``before()``, if given, runs in the child first: a fault to inject)."""
    _warm()
    read_end, write_end = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 1
        try:
            os.close(read_end)
            os.setsid()  # its own session, as a process started from a shell; Ctrl-C in pytest does not reach it
            out = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115 (pytest's capture is the parent's)
            sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
            os.environ.update(env or {})
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.SIG_DFL)
            _instrument(write_end)
            if before is not None:
                before()
            from wmbench.cli import cli

            code = cli.main(args=args) or 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:  # noqa: BLE001 (shown in its output file)
            traceback.print_exc()
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            time.sleep(LINGER)
            os._exit(code)
    os.close(write_end)
    return Child(pid, read_end, time.monotonic())


@dataclass
class Trial:
    """One kill: which trial seed chose it, where the harness aimed, when it struck and what the child was doing."""

    seed: int
    aimed: str
    killed_at_s: float
    phase: str
    equal: bool | None = None
    note: str = ""

    def row(self) -> str:
        equal = {True: "yes", False: "NO", None: "-"}[self.equal]
        return f"| {self.seed} | {self.aimed} | {self.killed_at_s:.3f} | {self.phase} | {equal} | {self.note} |"


TABLE_HEAD = "| trial seed | aimed at | killed at (s) | phase at the kill | resumed equal? | |\n| --- | --- | --- | --- | --- | --- |"


def aim(seed: int, phase: str, reference: Child) -> tuple[int, float]:
    """Which occurrence of ``phase`` a trial kills in, and how long after its begin (a random fraction of that
    occurrence's duration in the uninterrupted run); ``phase`` 'any instant' aims at a uniform instant of the first
    80% of the run."""
    rng = np.random.default_rng(seed)
    if phase == "any instant":
        end = reference.events[-1][0] - reference.started
        return -1, float(rng.uniform(0, 0.8 * end))  # 0.8: a loaded machine makes one run faster than another
    calls = reference.occurrences(phase)
    assert calls, f"the uninterrupted run has no {phase}"
    k = int(rng.integers(len(calls)))
    return k, float(rng.uniform(0, 1)) * calls[k][1]


def kill(child: Child, phase: str, occurrence: int, delay: float, timeout: float = 600) -> float:
    """SIGKILL the child ``delay`` seconds after the begin of the ``occurrence``-th call of ``phase`` (occurrence
    -1: ``delay`` seconds after it started); returns the instant (monotonic clock)."""

    def target() -> float | None:
        if occurrence < 0:
            return child.started + delay
        begins = [stamp for stamp, what, name in child.events if what == "begin" and name == phase]
        return begins[occurrence] + delay if len(begins) > occurrence else None

    return kill_at(child, target, f"call {occurrence + 1} of {phase}", timeout)


def kill_at(child: Child, target, what: str, timeout: float = 600) -> float:
    """SIGKILL the child at the instant ``target()`` names once it names one (None: not yet known; polled as the
    child reports); returns the instant (monotonic clock). ``what`` the instant is, for the error if it never comes."""
    deadline = time.monotonic() + timeout
    while True:
        at, now = target(), time.monotonic()
        if at is not None and now >= at:
            break
        if not child.read(0.05 if at is None else max(0.0, min(0.05, at - now))):
            raise AssertionError(f"the child ended before the kill ({what})")
        if now > deadline:
            raise TimeoutError(f"no kill instant reached ({what})")
    instant = time.monotonic()
    os.kill(child.pid, signal.SIGKILL)
    assert child.wait() == -signal.SIGKILL
    return instant


# What a finished run folder must hold, and equality with the uninterrupted run. ------------------------------------


def stable(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in VOLATILE and not k.endswith("_per_s")} for r in records]


def check_whole(folder: Path) -> None:
    """No temporary file of an atomic write, and every file whole: JSON parses, metrics lines all parse, torch files
    load with weights_only, images and videos decode."""
    import imageio.v3 as iio

    leftovers = [str(p) for p in folder.rglob("*.tmp")]
    assert not leftovers, f"temporary files left: {leftovers}"
    RunDir(folder).read_metrics(strict=True)
    for path in folder.rglob("*.json"):
        json.loads(path.read_text())
    for path in folder.rglob("*.pt"):
        torch.load(path, weights_only=True)
    for path in folder.rglob("*"):
        if path.suffix in (".png", ".gif", ".mp4"):
            assert len(iio.imread(path, index=None)) > 0, path


def same_run(folder: Path, reference: Path) -> list[str]:
    """How a finished run differs from the uninterrupted one: metrics lines, episodes, evaluation returns."""
    run, ref = RunDir(folder), RunDir(reference)
    differences = []
    if stable(run.read_metrics(strict=True)) != stable(ref.read_metrics(strict=True)):
        differences.append("metrics")
    episodes = sorted(run.replay.glob("*.pt")) if run.replay.is_dir() else []
    expected = sorted(ref.replay.glob("*.pt")) if ref.replay.is_dir() else []
    if [p.name for p in episodes] != [p.name for p in expected]:
        differences.append("episode files")
    else:
        for a, b in zip(episodes, expected):
            x, y = torch.load(a, weights_only=True), torch.load(b, weights_only=True)
            if x.keys() != y.keys() or not all(torch.equal(x[k], y[k]) for k in x):
                differences.append(f"episode {a.name}")
    summary, wanted = (json.loads(r.summary.read_text()) for r in (run, ref))
    for key in ("eval_returns", "per_budget", "env_steps", "epochs"):
        got, want = summary.get(key), wanted.get(key)
        if key == "per_budget" and got and want:  # the world-model track's rows carry timings
            got, want = stable(got), stable(want)
        if got != want:
            differences.append(f"summary {key}")
    return differences


def fail_fsync(file_prefix: str, call: int, error: int) -> None:
    """In the child: the ``call``-th flush to disk of a temporary file named ``file_prefix``... fails with ``error``
    (an I/O error as a failing disk gives it, at the write call of :func:`wmbench.files.write_bytes`)."""
    real, seen = os.fsync, [0]

    def fsync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).name.startswith(file_prefix):
            seen[0] += 1
            if seen[0] == call:
                raise OSError(error, os.strerror(error))
        real(fd)

    os.fsync = fsync
