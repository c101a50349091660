"""Sweep executors against real engines: a one-node Slurm cluster on localhost (``.ci/slurm-up``, submitted to
through submitit and sbatch) and a Ray head on 127.0.0.1 started here. The same cut-down sweep runs through
local, slurm and ray with the same index rows and metrics; a cell killed mid-run (scancel, a killed Ray worker)
resumes on the next sweep from its checkpoint with an uninterrupted cell's metrics; a preempted Slurm job is
requeued and resumes; a cell still running is left alone by a second sweep; bad input stops before submitting."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from wmbench.cli import cli
from wmbench.errors import WmbenchError
from wmbench.executors.status import status
from wmbench.plugins import registry
from wmbench.rundir import RunDir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_sweep import BROKEN, SCRATCH, TINY, toml_list  # noqa: E402

#: Rows that must not depend on where a cell ran.
SAME = ("id", "status", "action", "game", "backbone", "label", "tokenizer", "seed", "returncode")
LONG = ("training.epochs=3",)  # cells long enough to be killed after their first epoch's checkpoint
WMBENCH = [sys.executable, "-m", "wmbench"]


def bench_file(
    tmp: Path, name: str, backbones: str, games: str = '["Pong", "Breakout"]', more: tuple = (), extra: str = ""
) -> Path:
    path = tmp / f"{name}.toml"
    path.write_text(f'name = "{name}"\ntrack = "agent"\npreset = "smoke"\ngames = {games}\nseeds = [0]\n'
                    f"set = {toml_list([*TINY, *more])}\n{extra}\n{backbones}")  # fmt: skip
    return path


def sweep(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*WMBENCH, "sweep", *args], capture_output=True, text=True, timeout=600, check=False)


def start_sweep(*args: str) -> subprocess.Popen:
    return subprocess.Popen([*WMBENCH, "sweep", *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def rows(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((out / "index.json").read_text())["cells"]}


def wait_for(what: str, check, timeout: float = 240.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def checkpointed(folder: Path) -> bool:
    """The cell in ``folder`` has written its first checkpoint, so it can be resumed (the epoch's metrics line
    comes before its checkpoint, so it is no sign)."""
    return RunDir(folder).last_checkpoint.is_file()


def metrics(folder: Path) -> list[dict]:
    """metrics.jsonl without wall times, then the summary's scores: what a resumed cell must reproduce."""
    lines = [{k: v for k, v in json.loads(line).items() if "time" not in k and "per_s" not in k}
             for line in (folder / "metrics.jsonl").read_text().splitlines()]  # fmt: skip
    summary = json.loads((folder / "summary.json").read_text())
    return [*lines, {k: summary[k] for k in ("env_steps", "eval_return_mean", "human_normalised_score")}]


def assert_same_metrics(resumed: Path, straight: Path) -> None:
    """Equal lines, keys and steps; losses equal to float rounding. Resume is exact within one kind of process
    (tests/test_run.py asserts equality to the bit); across executors a cell runs in another process tree, and one CI
    machine's resumed Slurm cells drifted by 1.5e-5 relative after an epoch (sums rounded differently, then carried
    through training), so the bound here is 1e-3: a resume that loses state (RNG, optimiser, replay) moves far more."""
    got, want = metrics(resumed), metrics(straight)
    assert [sorted(g) for g in got] == [sorted(w) for w in want]
    for g, w in zip(got, want):
        assert g == pytest.approx(w, rel=1e-3, abs=1e-6), (g, w)


def same_rows(a: Path, b: Path) -> None:
    ra, rb = rows(a), rows(b)
    assert [{k: r[k] for k in SAME} for r in ra.values()] == [{k: r[k] for k in SAME} for r in rb.values()]
    for cell, row in ra.items():
        if row["status"] == "finished":
            assert_same_metrics(a / "cells" / cell, b / "cells" / cell)


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("executors")


@pytest.fixture(scope="module")
def local_sweep(work) -> Path:
    """The reference: two tiny cells and two failing ones run locally, two at a time (the others wait, pending);
    and a longer cell run uninterrupted."""
    out = work / "local"
    proc = start_sweep(str(bench_file(work, "three", SCRATCH + BROKEN)), "--out", str(out), "--jobs", "2")
    seen = set()
    while proc.poll() is None:
        with contextlib.suppress(OSError, ValueError, KeyError, WmbenchError):  # no index yet, or one being replaced
            seen.add(tuple(sorted({r["status"] for r in status(out)["cells"]})))
        time.sleep(0.2)
    assert proc.returncode == 1, proc.stdout.read()
    assert any("running" in s and "pending" in s for s in seen), seen
    long = sweep(str(bench_file(work, "long", SCRATCH, games='["Pong"]', more=LONG)), "--out", str(work / "long-local"))
    assert long.returncode == 0, long.stdout + long.stderr
    return out


# Bad input: one line, exit 2, nothing submitted or written ------------------------------------------------


def test_builtin_executors_register_through_the_hook():
    executors = registry().executors
    assert {name: plugin for name, (_, _, plugin) in executors.items()} == {
        "local": "executors",
        "slurm": "executors",
        "ray": "executors",
    }


@pytest.mark.parametrize(
    "args, message",
    [
        (["--executor", "slurmm"], "unknown executor 'slurmm' (did you mean 'slurm'?)"),
        (["--executor", "slurm", "-E", "partitoin=gpu"], "unknown option 'partitoin' (did you mean 'partition'?)"),
        (["--executor", "slurm", "-E", "gpus_per_cell=two"], "option 'gpus_per_cell' must be int, got 'two'"),
        (["--executor", "slurm", "-E", "sbatch=['--qos=high', 'rm -rf /']"], "'rm -rf /' is not an sbatch option"),
        (["--executor", "ray", "-E", "address=127.0.0.1:9"], "cannot reach the Ray cluster at 127.0.0.1:9"),
        (["--executor", "ray", "-E", "address=nowhere"], "'address' must be HOST:PORT or auto"),
    ],
)
def test_bad_executor_input_is_one_line_exit_2(tmp_path, args, message):
    path = bench_file(tmp_path, "b", SCRATCH, games='["Pong"]')
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out"), *args])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("wmbench: error:") and len(result.output.strip().splitlines()) == 1
    assert message in result.output
    assert not (tmp_path / "out").exists()


def test_no_slurm_reachable(tmp_path, monkeypatch):
    path = bench_file(tmp_path, "b", SCRATCH, games='["Pong"]', extra='[executor]\nname = "slurm"\n')
    monkeypatch.setenv("PATH", str(tmp_path))  # no sinfo, sbatch nor srun
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "Slurm's sinfo is not on PATH" in result.output, result.output
    if shutil.which("sinfo", path=os.defpath + ":/usr/bin"):  # installed, but its controller is not listening
        monkeypatch.undo()
        conf = tmp_path / "slurm.conf"
        conf.write_text("ClusterName=none\nSlurmctldHost=localhost(127.0.0.1)\nSlurmctldPort=9\nAuthType=auth/none\n"
                        "NodeName=localhost CPUs=1\nPartitionName=debug Nodes=localhost\n")  # fmt: skip
        monkeypatch.setenv("SLURM_CONF", str(conf))
        result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out")])
        assert result.exit_code == 2 and "cannot reach Slurm: sinfo failed" in result.output, result.output
    assert not (tmp_path / "out").exists()


def test_dry_run_shows_the_ray_actor_spec(tmp_path):
    path = bench_file(tmp_path, "b", SCRATCH, games='["Pong"]')
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out"), "--executor", "ray",
                                      "-E", "gpus_per_cell=1", "-E", "address=10.0.0.1:6379", "--dry-run"])  # fmt: skip
    assert result.exit_code == 0, result.output
    spec = json.loads(result.output[result.output.index("\n[") :])
    assert spec[0]["options"]["num_gpus"] == 1.0 and spec[0]["runs"][1:4] == ["-m", "wmbench", "run"]
    assert "10.0.0.1:6379" in result.output and not (tmp_path / "out").exists()


# Slurm -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm():
    """The one-node cluster of .ci/slurm-up (started here when CI has not started it; stopped after if so)."""
    env = {**os.environ, "WMBENCH_SLURM_DIR": os.environ.get("WMBENCH_SLURM_DIR", "/tmp/wmbench-slurm")}
    try:
        up = subprocess.run(
            [str(ROOT / ".ci" / "slurm-up")], capture_output=True, text=True, env=env, timeout=300, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"the Slurm daemons cannot be started here ({exc})")
    if up.returncode != 0:
        pytest.skip(f"the Slurm daemons cannot be started here: {(up.stderr.strip().splitlines() or ['?'])[-1]}")
    old = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = f"{env['WMBENCH_SLURM_DIR']}/slurm.conf"
    yield
    if old is None:
        os.environ.pop("SLURM_CONF")
    else:
        os.environ["SLURM_CONF"] = old
    if up.stdout.strip() == "started":
        subprocess.run([str(ROOT / ".ci" / "slurm-down")], env=env, check=False)


def squeue_job(job: str) -> str:
    return subprocess.run(
        ["squeue", "-h", "-j", job, "-o", "%T %r"], capture_output=True, text=True, check=False
    ).stdout


def squeue() -> list[str]:
    return subprocess.run(["squeue", "-h", "-o", "%i"], capture_output=True, text=True, check=True).stdout.split()


@pytest.mark.slow
def test_slurm_sweep_gives_the_local_rows(work, local_sweep, slurm):
    out = work / "slurm"
    result = sweep(str(work / "three.toml"), "--out", str(out), "--executor", "slurm", "-E", "partition=debug")
    assert result.returncode == 1, result.stdout + result.stderr  # the broken cell failed, the others finished
    same_rows(local_sweep, out)
    got = rows(out)
    assert {r["executor"] for r in got.values()} == {"slurm"} and all(r["job_id"] for r in got.values())
    assert (
        got["Pong-broken-vqvae-s0"]["job_state"] == "FAILED"
        and got["Pong-scratch-vqvae-s0"]["job_state"] == "COMPLETED"
    )
    assert "must be divisible" in got["Pong-broken-vqvae-s0"]["error"]
    assert Path(got["Pong-scratch-vqvae-s0"]["job_log"]).is_file()
    report = json.loads(sweep("--status", str(out), "--json").stdout)
    assert report["counts"] == {"pending": 0, "queued": 0, "running": 0, "finished": 2, "interrupted": 0, "failed": 2}


@pytest.mark.slow
def test_slurm_partition_that_does_not_exist(work, slurm):
    before = squeue()
    result = sweep(
        str(bench_file(work, "three", SCRATCH + BROKEN)),
        "--out",
        str(work / "nopart"),
        "--executor",
        "slurm",
        "-E",
        "partition=gpu",
    )
    assert result.returncode == 2 and result.stderr.strip() == (
        "wmbench: error: Slurm has no such partition: unknown partition 'gpu'; choose from: debug"
    )
    assert squeue() == before and not (work / "nopart").exists()


@pytest.mark.slow
def test_slurm_dry_run_shows_the_sbatch_script(work, slurm):
    options = ["-E", "gpus_per_cell=1", "-E", "gpu_type=h100", "-E", "array_parallelism=8"]
    options += ["-E", "sbatch=['--qos=high']"]
    path = bench_file(work, "three", SCRATCH + BROKEN)
    result = sweep(str(path), "--out", str(work / "dry"), "--executor", "slurm", "--dry-run", *options)
    assert result.returncode == 0, result.stderr
    for line in ("#!/bin/bash", "#SBATCH --array=0-3%4", "#SBATCH --gpus-per-node=h100:1", "#SBATCH --qos=high",
                 "#SBATCH --requeue", "#SBATCH --signal=USR2@120", "-m submitit.core._submit"):  # fmt: skip
        assert line in result.stdout, line
    assert not (work / "dry").exists()


@pytest.mark.slow
def test_slurm_scancel_then_resume_and_queued_state(work, local_sweep, slurm):
    """Two long cells, one at a time: the second waits queued; the first is scancelled after its first checkpoint;
    the next sweep resubmits only it, and it resumes with the metrics of a cell never stopped."""
    path = bench_file(work, "long2", SCRATCH + SCRATCH.replace('"scratch"\n', '"scratch"\nlabel = "other"\n'),
                      games='["Pong"]', more=LONG)  # fmt: skip
    out = work / "slurm-cancel"
    proc = start_sweep(str(path), "--out", str(out), "--executor", "slurm", "-E", "array_parallelism=1")
    cell = out / "cells" / "Pong-scratch-vqvae-s0"
    wait_for("the first checkpoint", lambda: checkpointed(cell))
    report = status(out)
    states = {r["id"]: r["status"] for r in report["cells"]}
    assert states == {"Pong-scratch-vqvae-s0": "running", "Pong-other-vqvae-s0": "queued"}, states
    job = rows(out)["Pong-scratch-vqvae-s0"]["job_id"]
    subprocess.run(["scancel", job], check=True)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, output
    first = rows(out)["Pong-scratch-vqvae-s0"]
    assert first["status"] in ("interrupted", "failed") and first["job_state"] == "CANCELLED", first
    assert rows(out)["Pong-other-vqvae-s0"]["status"] == "finished"
    text = sweep("--status", str(out)).stdout
    assert f"Pong-scratch-vqvae-s0  {first['status']}" in text and f"slurm:{job}" in text
    result = sweep(str(path), "--out", str(out), "--executor", "slurm")
    assert result.returncode == 0 and "0 to run, 1 to resume, 1 finished already" in result.stdout, result.stdout
    again = rows(out)["Pong-scratch-vqvae-s0"]
    assert again["action"] == "resume" and again["job_id"] != job and again["status"] == "finished"
    assert (
        "--resume" in cell.joinpath("log.txt").read_text().splitlines()[-1]
        or "run --resume" in cell.joinpath("log.txt").read_text()
    )
    assert_same_metrics(cell, work / "long-local" / "cells" / "Pong-scratch-vqvae-s0")


@pytest.mark.slow
def test_slurm_preempted_job_is_requeued_and_a_running_cell_left_alone(work, local_sweep, slurm):
    """A sweep dies while its job runs: the next sweep leaves the job alone and follows it. The job is then
    preempted (submitit's own test signals: SIGTERM, then USR2): submitit's checkpoint hook stops the cell at its
    checkpoint and requeues it, and the same job resumes it to the end with the metrics of a cell never stopped."""
    out = work / "slurm-requeue"
    path = work / "long.toml"
    first = start_sweep(str(path), "--out", str(out), "--executor", "slurm")
    cell = out / "cells" / "Pong-scratch-vqvae-s0"
    wait_for(
        "the job to run",
        lambda: rows(out)["Pong-scratch-vqvae-s0"]["status"] == "running" if (out / "index.json").is_file() else False,
    )
    first.kill()
    first.wait()
    second = start_sweep(str(path), "--out", str(out), "--executor", "slurm")
    wait_for("the first checkpoint", lambda: checkpointed(cell))
    job = rows(out)["Pong-scratch-vqvae-s0"]["job_id"]
    subprocess.run(["scancel", job, "--signal", "SIGTERM"], check=True)
    subprocess.run(["scancel", job, "--signal", "USR2"], check=True)
    # Slurm holds a requeued job for about two minutes (BeginTime; its old credential is revoked on the node
    # meanwhile, so starting it earlier fails the launch): the test waits that out.
    wait_for("the requeued job", lambda: "BeginTime" in squeue_job(job), timeout=120, every=0.5)
    output = second.communicate(timeout=300)[0]
    assert second.returncode == 0, output
    assert "1 queued or running already" in output and "0 to run" in output
    row = rows(out)["Pong-scratch-vqvae-s0"]
    assert row["job_id"] == job and row["status"] == "finished" and row["job_state"] == "COMPLETED"
    log = cell.joinpath("log.txt").read_text()
    assert log.count("$ OMP_NUM_THREADS") == 2 and "run --resume" in log
    assert "requeu" in Path(row["job_log"]).read_text().lower()
    assert_same_metrics(cell, work / "long-local" / "cells" / "Pong-scratch-vqvae-s0")


# Ray -------------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_head(tmp_path_factory):
    """A Ray head on 127.0.0.1 only, stopped after."""
    ray = Path(sys.executable).with_name("ray")
    # Loopback only, no usage statistics, and token authentication with a token of its own (ray start enables
    # it, and finds no token on a fresh machine; clients must be told both).
    env = {
        **os.environ,
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    port = free_port()
    temp = tmp_path_factory.mktemp("ray")
    try:
        args = ["start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
                "--include-dashboard=false", "--disable-usage-stats", f"--temp-dir={temp}"]  # fmt: skip
        up = subprocess.run([str(ray), *args], capture_output=True, text=True, env=env, timeout=180, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"a Ray head cannot be started here ({exc})")
    if up.returncode != 0:
        pytest.skip(f"a Ray head cannot be started here: {(up.stderr.strip().splitlines() or ['?'])[-1]}")
    old = {
        k: os.environ.get(k)
        for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")
    }
    os.environ.update({k: env[k] for k in old})
    yield f"127.0.0.1:{port}"
    subprocess.run([str(ray), "stop", "--force"], capture_output=True, env=env, check=False)
    for key, value in old.items():
        if value is None:
            os.environ.pop(key)
        else:
            os.environ[key] = value


@pytest.mark.slow
def test_ray_sweep_gives_the_local_rows(work, local_sweep, ray_head):
    out = work / "ray"
    result = sweep(str(work / "three.toml"), "--out", str(out), "--executor", "ray", "-E", f"address={ray_head}")
    assert result.returncode == 1, result.stdout + result.stderr
    same_rows(local_sweep, out)
    got = rows(out)
    assert all(r["executor"] == "ray" and r["job_id"].endswith(r["id"]) for r in got.values())


@pytest.mark.slow
def test_ray_worker_killed_then_resume(work, local_sweep, ray_head):
    """The Ray worker that runs a cell is killed after the cell's first checkpoint (its wmbench process dies with
    it); the next sweep resubmits the cell, which resumes with the metrics of a cell never stopped."""
    out = work / "ray-kill"
    path = work / "long.toml"
    proc = start_sweep(str(path), "--out", str(out), "--executor", "ray", "-E", f"address={ray_head}")
    cell = out / "cells" / "Pong-scratch-vqvae-s0"
    wait_for("the first checkpoint", lambda: checkpointed(cell))
    pid = wait_for("the cell's process", lambda: next(iter(cell_processes(cell)), None))
    worker = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])  # its parent: the Ray worker
    assert "ray" in Path(f"/proc/{worker}/cmdline").read_bytes().decode(errors="replace").lower()
    os.kill(worker, signal.SIGKILL)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 1, output
    row = rows(out)["Pong-scratch-vqvae-s0"]
    assert row["status"] == "failed" and "ended without an exit code" in row["error"], row
    assert wait_for("the cell's process to die with its worker", lambda: not cell_processes(cell), timeout=30)
    result = sweep(str(path), "--out", str(out), "--executor", "ray", "-E", f"address={ray_head}")
    assert result.returncode == 0 and "1 to resume" in result.stdout, result.stdout + result.stderr
    assert rows(out)["Pong-scratch-vqvae-s0"]["action"] == "resume"
    assert_same_metrics(cell, work / "long-local" / "cells" / "Pong-scratch-vqvae-s0")


def cell_processes(folder: Path) -> list[int]:
    """The pids of wmbench processes running the cell in ``folder``."""
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"wmbench" in argv and str(folder).encode() in argv:
                found.append(int(proc.name))
    return found
