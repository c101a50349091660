"""One writer per folder: a second ``wmbench run --resume`` or sweep into a folder in use is refused in one line naming
the first's pid (exit 2, nothing written), a lock left by a killed process is taken over, and a sweep cell's second job
waits for the first and then does not run the cell again."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from kill_harness import spawn
from test_nothing_lost import RUN

from wmbench import lock
from wmbench.benchmark import load_benchmark
from wmbench.cli import cli
from wmbench.errors import WmbenchError
from wmbench.executors.local import LocalExecutor, LocalOptions
from wmbench.sweep import Sweep

HOLD = "import sys, time; from pathlib import Path; from wmbench import lock; lock.acquire(Path(sys.argv[1]), 'x'); print('held', flush=True); time.sleep(600)"
"""Another process holding a lock until killed."""


def _holder(path):
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "held\n"
    return process


def test_a_held_lock_names_its_holder_and_a_killed_holders_lock_is_taken_over(tmp_path):
    path = tmp_path / "folder" / ".lock"
    holder = _holder(path)
    with pytest.raises(WmbenchError, match=rf"^the folder is in use by process {holder.pid} \(lock {path}\)"):
        lock.acquire(path, "the folder")
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert path.read_text() == f"{holder.pid}\n"  # stale: the pid of a dead process, and nobody holds it
    with lock.hold(path, "the folder"):
        assert path.read_text() == f"{os.getpid()}\n"


def test_a_second_run_in_a_folder_in_use_is_refused_and_a_killed_runs_lock_is_free(tmp_path):
    env = {"OMP_NUM_THREADS": "1", "WMBENCH_CACHE": str(tmp_path / "cache")}
    folder, output = tmp_path / "run", tmp_path / "output.txt"
    first = spawn([*RUN, "--out", str(folder)], output, env)
    while not any(what == "begin" and phase == "collection" for _, what, phase in first.events):
        assert first.read(1.0), output.read_text()
    result = CliRunner().invoke(cli, ["run", "--resume", str(folder)])
    assert result.exit_code == 2, result.output
    assert result.output == (f"wmbench: error: run folder {folder} is in use by process {first.pid} "
                             f"(lock {folder / '.lock'}); wait for it to end, or stop it\n")  # fmt: skip
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    with lock.hold(folder / ".lock", "run folder"):  # the dead run's lock is free: a resume takes it over
        assert (folder / ".lock").read_text() == f"{os.getpid()}\n"


BENCH = 'name = "w"\ntrack = "agent"\npreset = "smoke"\ngames = ["Catcher"]\nset = {config}\n[[backbones]]\nname = "scratch"\n'


def test_a_second_sweep_into_a_folder_in_use_is_refused(tmp_path):
    path = tmp_path / "b.toml"
    path.write_text(BENCH.format(config=json.dumps(["training.epochs=1"])))
    out = tmp_path / "sweep"
    holder = _holder(out / ".lock")
    try:
        result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(out)])
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert result.exit_code == 2
    assert result.output.startswith(f"wmbench: error: sweep folder {out} is in use by process {holder.pid}")
    assert sorted(p.name for p in out.iterdir()) == [".lock"]


@pytest.mark.slow
def test_a_cells_second_job_waits_for_the_first_and_does_not_run_it_again(tmp_path):
    """A sweep killed between starting a cell's job and recording it leaves that job running; the next sweep's job
    of the same cell waits for it, finds the cell finished, and ends at once."""
    from test_nothing_lost import CONFIG

    path = tmp_path / "b.toml"
    path.write_text(BENCH.format(config=json.dumps(CONFIG)))
    out = tmp_path / "sweep"
    runner = Sweep(load_benchmark(path), out, 1, executor=LocalExecutor(LocalOptions(threads=1), out, 1))
    (cell,) = runner.cells
    task = runner.task(cell, "run")
    spec = out / "jobs" / f"{cell.id}.task.json"
    spec.parent.mkdir(parents=True)
    spec.write_text(json.dumps(task.to_json()))
    job = [sys.executable, "-m", "wmbench.executors.local", str(spec)]
    first = subprocess.Popen(job)
    while not (out / "jobs" / f"{cell.id}.lock").is_file() or lock_free(out / "jobs" / f"{cell.id}.lock"):
        time.sleep(0.05)
    second = subprocess.run(job, timeout=900)  # started while the first runs: waits for it
    assert first.wait(900) == 0 and second.returncode == 0
    log = (runner.folder(cell) / "log.txt").read_text()
    assert log.count("\ndone: ") == 1 and log.count("$ ") == 1, log  # one process ran the cell, once
    assert json.loads(task.record.read_text()) == {"returncode": 0, "duration_s": 0.0}


def lock_free(path) -> bool:
    try:
        with lock.hold(path, "probe"):
            return True
    except WmbenchError:
        return False
