"""Nothing lost: ``wmbench run``, ``wmbench world-model`` and ``wmbench sweep`` SIGKILLed at random instants (during
collection, a replay write, a checkpoint write, media, an evaluation, summary.json, a sweep's submission or index
write, or anywhere), then continued, end exactly as a run never killed: the same metrics lines, episodes and
evaluation returns, no temporary or torn file, every sweep cell finished exactly once and the index consistent.
And writes that fail (an I/O error, a full disk, a read-only folder) stop a run with one line, its folder as it was
at its last checkpoint, and it resumes to the same end once the cause is gone.

Each trial is chosen by its seed (see :mod:`kill_harness`); the slow suite runs 10 trials of each command, the
default suite one of each. ``WMBENCH_KILL_TABLE=FILE`` appends each test's table of trials to FILE.
"""

from __future__ import annotations

import csv
import errno
import json
import os
import subprocess
import time
from pathlib import Path

import pytest
import torch
from kill_harness import TABLE_HEAD, Trial, aim, check_whole, fail_fsync, kill, kill_at, same_run, spawn

from wmbench.rundir import RunDir

CONFIG = [
    "training.epochs=3", "training.collect.steps_per_epoch=30", "training.media_every=2",
    "training.tokenizer.start_after_epochs=1", "training.tokenizer.steps_per_epoch=2", "training.tokenizer.batch_size=4",
    "training.world_model.start_after_epochs=1", "training.world_model.steps_per_epoch=2", "training.world_model.batch_size=4",
    "training.actor_critic.start_after_epochs=2", "training.actor_critic.steps_per_epoch=1", "training.actor_critic.batch_size=4",
    "eval.every=2", "eval.episodes=1", "eval.final_episodes=2", "eval.num_envs=1", "env.max_frames_test=200",
]  # fmt: skip
"""A run of a few seconds on Catcher that passes through every phase: collection, training of all three parts,
evaluation during training, media, checkpoints every epoch, the final evaluation and summary.json."""
WM_CONFIG = [
    "training.collect.steps_per_epoch=30",
    "training.tokenizer.start_after_epochs=0", "training.tokenizer.steps_per_epoch=2", "training.tokenizer.batch_size=8",
    "training.world_model.start_after_epochs=0", "training.world_model.steps_per_epoch=2", "training.world_model.batch_size=4",
    "world_model_track.dataset_steps=300", "world_model_track.heldout_fraction=0.25", "world_model_track.budgets=[20,40,80]",
    "world_model_track.eval_segments=3", "world_model_track.rollout_starts=3", "world_model_track.rollout_steps=[1]",
    "world_model_track.rollout_burn_in=1",
    "world_model_track.steps=4", "world_model_track.tokenizer_steps=4", "world_model_track.policies=[\"random\",\"sticky\"]",
]  # fmt: skip
RUN_PHASES = ["collection", "replay write", "training", "metrics line", "checkpoint write", "media", "evaluation",
              "summary write", "any instant", "any instant"]  # fmt: skip
WM_PHASES = ["training", "evaluation", "metrics line", "checkpoint write", "summary write"] + ["any instant"] * 5
SWEEP_PHASES = ["cell submission", "index write"] + ["any instant"] * 8
BENCHMARK = """name = "kills"
track = "agent"
preset = "smoke"
games = ["Catcher"]
seeds = [0, 1]
set = {config}

[[backbones]]
name = "scratch"
"""


def _sets(items):
    return [a for item in items for a in ("--set", item)]


RUN = ["run", "--game", "Catcher", "--preset", "smoke", *_sets(CONFIG)]
WORLD_MODEL = ["world-model", "--game", "Catcher", "--preset", "smoke", *_sets(WM_CONFIG)]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """One thread (so every child computes to the bit what the reference did) and a dataset cache of the module's."""
    return {"OMP_NUM_THREADS": "1", "WMBENCH_CACHE": str(tmp_path_factory.mktemp("cache"))}


def _finish(args: list[str], output: Path, env: dict[str, str]) -> None:
    child = spawn(args, output, env)
    assert child.wait() == 0, output.read_text()[-3000:]


def _reference(tmp_path_factory, command: list[str], env: dict[str, str]):
    """A command run to its end without a kill: its folder, and its child's phase reports."""
    folder = tmp_path_factory.mktemp("reference") / "out"
    child = spawn([*command, "--out", str(folder)], folder.parent / "output.txt", env)
    assert child.wait() == 0, (folder.parent / "output.txt").read_text()[-3000:]
    return folder, child


@pytest.fixture(scope="module")
def run_reference(tmp_path_factory, env):
    return _reference(tmp_path_factory, RUN, env)


@pytest.fixture(scope="module")
def wm_reference(tmp_path_factory, env):
    return _reference(tmp_path_factory, WORLD_MODEL, env)


def _run_trial(seed, phase, command, resume, reference, tmp_path, env) -> Trial:
    """Kill ``command`` where the seed aims, continue it (``resume`` once it has a config, else the command again),
    and compare the folder with the reference's."""
    folder, ref_child = reference
    occurrence, delay = aim(seed, phase, ref_child)
    out, output = tmp_path / f"trial-{seed}", tmp_path / f"trial-{seed}.txt"
    child = spawn([*command, "--out", str(out)], output, env)
    instant = kill(child, phase, occurrence, delay)
    trial = Trial(seed, phase if occurrence < 0 else f"{phase} #{occurrence + 1}", instant - child.started,
                  child.phase_at(instant))  # fmt: skip
    again = [command[0], "--resume", str(out)] if (out / "config.json").exists() else [*command, "--out", str(out)]
    trial.note = "" if again[1] == "--resume" else "killed before config.json: the command run again"
    _finish(again, output, env)
    check_whole(out)
    differences = same_run(out, folder)
    trial.equal = not differences
    trial.note = "; ".join(filter(None, [trial.note, *differences]))
    return trial


def _report(title: str, trials: list[Trial]) -> None:
    table = "\n".join([f"### {title}", "", TABLE_HEAD, *(t.row() for t in trials), ""])
    print(table)
    if os.environ.get("WMBENCH_KILL_TABLE"):
        with open(os.environ["WMBENCH_KILL_TABLE"], "a") as f:
            f.write(table + "\n")
    assert all(t.equal for t in trials), table


def test_run_killed_in_a_checkpoint_write_resumes_equal(tmp_path, run_reference, env):
    _report(
        "wmbench run (default suite)", [_run_trial(100, "checkpoint write", RUN, "run", run_reference, tmp_path, env)]
    )


@pytest.mark.slow
def test_run_killed_at_ten_random_instants_resumes_equal(tmp_path, run_reference, env):
    trials = [
        _run_trial(seed, phase, RUN, "run", run_reference, tmp_path, env) for seed, phase in enumerate(RUN_PHASES)
    ]
    _report("wmbench run", trials)


def test_world_model_track_killed_in_an_evaluation_resumes_equal(tmp_path, wm_reference, env):
    trial = _run_trial(100, "evaluation", WORLD_MODEL, "world-model", wm_reference, tmp_path, env)
    _report("wmbench world-model (default suite)", [trial])


@pytest.mark.slow
def test_world_model_track_killed_at_ten_random_instants_resumes_equal(tmp_path, wm_reference, env):
    trials = [_run_trial(seed, phase, WORLD_MODEL, "world-model", wm_reference, tmp_path, env)
              for seed, phase in enumerate(WM_PHASES)]  # fmt: skip
    _report("wmbench world-model", trials)


# The sweep process itself killed, then the same sweep run again. ---------------------------------------------------


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "kills.toml"
    path.write_text(BENCHMARK.format(config=json.dumps(CONFIG)))
    return path


@pytest.fixture(scope="module")
def sweep_reference(tmp_path_factory, sweep_file, env):
    return _reference(tmp_path_factory, ["sweep", str(sweep_file), "--jobs", "2"], env)


CELLS = ("Catcher-scratch-vqvae-s0", "Catcher-scratch-vqvae-s1")


def _cells_now(out: Path, cells=CELLS) -> str:
    """What each cell of a sweep has done, just after the sweep process was killed (its cells go on)."""
    states = []
    for cell in cells:
        folder = out / "cells" / cell
        lines = len(RunDir(folder).read_metrics())
        state = "done" if (folder / "summary.json").exists() else f"{lines} epoch(s) done" if lines else "starting"
        states.append(state if folder.exists() or (out / "logs" / f"{cell}.log").exists() else "not started")
    return ", ".join(states)


def _check_sweep(out: Path, reference_of) -> list[str]:
    """Every cell finished exactly once (one 'done' line in its log), equal to its reference (``reference_of(id)``),
    and the index (JSON and CSV alike) saying so."""
    problems = []
    index = json.loads((out / "index.json").read_text())
    with open(out / "index.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if [(r["id"], r["status"]) for r in rows] != [(r["id"], r["status"]) for r in index["cells"]]:
        problems.append("index.csv differs from index.json")
    for row in index["cells"]:
        folder = out / "cells" / row["id"]
        if row["status"] != "finished" or Path(row["folder"]) != folder:
            problems.append(f"{row['id']} {row['status']}")
        done = (folder / "log.txt").read_text().count("\ndone: ")
        if done != 1:
            problems.append(f"{row['id']} finished {done} times")
        check_whole(folder)
        problems += [f"{row['id']} {d}" for d in same_run(folder, reference_of(row["id"]))]
    return problems


def test_sweep_killed_while_its_cell_runs_then_rerun_finishes_it_once(tmp_path, run_reference, env):
    """The default suite's sweep trial: a sweep of one cell (the run above), its process killed as soon as the cell
    has logged its first epoch (the cell goes on), then run again: the cell ends once, equal to the run."""
    path = tmp_path / "one.toml"
    path.write_text(BENCHMARK.format(config=json.dumps(CONFIG)).replace("seeds = [0, 1]", "seeds = [0]"))
    out, output = tmp_path / "sweep", tmp_path / "output.txt"
    command = ["sweep", str(path), "--out", str(out)]
    cell = RunDir(out / "cells" / CELLS[0])
    child = spawn(command, output, env)
    instant = kill_at(child, lambda: time.monotonic() if cell.read_metrics() else None, "the cell's first epoch")
    trial = Trial(0, "the cell's first epoch logged", instant - child.started,
                  f"{child.phase_at(instant)}; cells: {_cells_now(out, CELLS[:1])}")  # fmt: skip
    _finish(command, output, env)
    problems = _check_sweep(out, lambda _: run_reference[0])
    trial.equal, trial.note = not problems, "; ".join(problems)
    _report("wmbench sweep (default suite)", [trial])


@pytest.mark.slow
def test_sweep_killed_at_ten_random_instants_then_rerun_finishes_every_cell_once(
    tmp_path, sweep_file, sweep_reference, env
):
    reference, ref_child = sweep_reference
    command = ["sweep", str(sweep_file), "--jobs", "2"]
    trials = []
    for seed, phase in enumerate(SWEEP_PHASES):
        occurrence, delay = aim(seed, phase, ref_child)
        out, output = tmp_path / f"sweep-{seed}", tmp_path / f"sweep-{seed}.txt"
        child = spawn([*command, "--out", str(out)], output, env)
        instant = kill(child, phase, occurrence, delay)
        trial = Trial(seed, phase if occurrence < 0 else f"{phase} #{occurrence + 1}", instant - child.started,
                      f"{child.phase_at(instant)}; cells: {_cells_now(out)}")  # fmt: skip
        _finish([*command, "--out", str(out)], output, env)
        problems = _check_sweep(out, lambda cell: reference / "cells" / cell)
        trial.equal, trial.note = not problems, "; ".join(problems)
        trials.append(trial)
    _report("wmbench sweep (the sweep process killed, then rerun; 2 cells, 2 at a time)", trials)


# Writes that fail. ------------------------------------------------------------------------------------------------


def _stopped_with_one_line(child, output: Path, cause: str, folder: Path) -> str:
    assert child.wait() == 1
    errors = [line for line in output.read_text().splitlines() if line.startswith("wmbench: error:")]
    assert len(errors) == 1 and cause in errors[0] and f"wmbench run --resume {folder}" in errors[0], errors
    assert "Traceback" not in output.read_text()
    assert not list(folder.rglob("*.tmp"))
    return errors[0]


def test_an_io_error_in_a_checkpoint_write_stops_the_run_and_it_resumes_equal(tmp_path, run_reference, env):
    """The second checkpoint's flush to disk fails (EIO): one line naming last.pt, the first checkpoint intact."""
    folder, output = tmp_path / "run", tmp_path / "output.txt"
    child = spawn([*RUN, "--out", str(folder)], output, env, before=lambda: fail_fsync(".last.pt.", 2, errno.EIO))
    line = _stopped_with_one_line(child, output, f"{folder / 'checkpoints' / 'last.pt'}: Input/output error", folder)
    assert "stopped in epoch 2" in line
    assert torch.load(folder / "checkpoints" / "last.pt", weights_only=True)["epoch"] == 1
    _finish(["run", "--resume", str(folder)], output, env)
    check_whole(folder)
    assert same_run(folder, run_reference[0]) == []


@pytest.fixture
def small_disk(tmp_path):
    """A real, size-limited filesystem (tmpfs, 6 MiB: the run's checkpoint, 3.6 MB, cannot be written beside the
    last one); needs the right to mount (root), else the test is skipped."""
    folder = tmp_path / "disk"
    folder.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a size-limited tmpfs here ({done.stderr.strip() or 'mount failed'})")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


def _remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True)


@pytest.mark.slow
def test_a_full_disk_and_a_read_only_folder_stop_the_run_and_it_resumes_equal(small_disk, run_reference, env, tmp_path):
    folder, output = small_disk / "run", tmp_path / "output.txt"
    child = spawn([*RUN, "--out", str(folder)], output, env)
    _stopped_with_one_line(child, output, "No space left on device", folder)
    before = json.loads(json.dumps(RunDir(folder).read_metrics()))
    checkpoint = torch.load(folder / "checkpoints" / "last.pt", weights_only=True)
    assert 1 <= checkpoint["epoch"] < 3 and check_whole(folder) is None

    _remount(small_disk, "ro")  # a read-only folder: the resume stops at its first write, nothing changed
    resumed = spawn(["run", "--resume", str(folder)], output, env)
    assert resumed.wait() == 1
    assert output.read_text().splitlines()[-1].endswith("Read-only file system")
    assert RunDir(folder).read_metrics() == before

    _remount(small_disk, "rw,size=32m")  # space is back
    _finish(["run", "--resume", str(folder)], output, env)
    check_whole(folder)
    assert same_run(folder, run_reference[0]) == []
