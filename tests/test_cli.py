"""The command line: parity of parameter counts, listings, and one-line errors for bad names."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def wmbench(*args, cwd=None, env=None):
    return subprocess.run(
        [sys.executable, "-m", "wmbench", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        timeout=600,
    )


def test_describe_iris_matches_reference_counts():
    result = wmbench("describe", "--preset", "iris", "--game", "Breakout", "--json")
    assert result.returncode == 0, result.stderr
    counts = json.loads(result.stdout)["parameters"]
    assert counts["tokenizer"] == {"total": 4_027_523, "trainable": 4_027_523}
    assert counts["world_model"] == {"total": 8_447_493, "trainable": 8_447_493}
    assert counts["actor_critic"] == {"total": 3_217_957, "trainable": 3_217_957}


def test_lists():
    games = json.loads(wmbench("list", "games", "--json").stdout)
    assert len(games) == 27 and {"name": "MsPacman", "suite": "atari", "plugin": "atari"} in games
    assert {"name": "Catcher", "suite": "toy", "plugin": "toy"} in games
    backbones = {r["name"]: r for r in json.loads(wmbench("list", "backbones", "--json").stdout)}
    assert backbones["scratch"]["plugin"] == "scratch"
    presets = {r["name"] for r in json.loads(wmbench("list", "presets", "--json").stdout)}
    assert {"iris", "smoke", "fork"} <= presets
    plugins = {r["name"]: r for r in json.loads(wmbench("plugins", "--json").stdout)}
    assert plugins["scratch"]["distribution"] == "wmbench"
    assert "wmbench_register_backbones" in plugins["scratch"]["hooks"]


@pytest.mark.parametrize(
    "args, expected",
    [
        (["run", "--game", "Breakot"], "unknown game 'Breakot' (did you mean 'Breakout'?)"),
        (["run", "--game", "pong"], "did you mean 'Pong'?"),
        (["run", "--backbone", "scrach"], "unknown backbone 'scrach' (did you mean 'scratch'?)"),
        (["run", "--tokenizer", "vqva"], "unknown tokenizer 'vqva' (did you mean 'vqvae'?)"),
        (["run", "--preset", "smok"], "unknown preset 'smok' (did you mean 'smoke'?)"),
        (["run", "--set", "world_model.num_layer=3"], "did you mean 'num_layers'?"),
        (["run", "--set", "training.epochs=many"], "training.epochs must be int"),
        (["run", "--gam", "Pong"], "No such option '--gam'. Did you mean '--game'?"),
        (["run", "--seed", "x"], "'x' is not a valid integer"),
        (["rnu"], "unknown command 'rnu' (did you mean 'run'?)"),
        (["list", "gmaes"], "'gmaes' is not one of"),
        (["describe", "--game", "Pongg"], "did you mean 'Pong'?"),
        (["run", "--set", "training.epochs=0"], "training.epochs must be above zero, got 0"),
        (["run", "--set", "training.world_model.batch_size=-4"], "training.world_model.batch_size must be above zero"),
        (["run", "--set", "training.tokenizer.lr=0"], "training.tokenizer.lr must be above zero"),
        (["run", "--init", "missing.pt"], "--init missing.pt does not exist"),
        (["eval", "no/such/run"], "checkpoint no/such/run does not exist"),
        (["eval", "--episodes", "-1", "x"], "-1 is not in the range x>=1"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path, args, expected):
    result = wmbench(*args, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("wmbench: error:"), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr
    assert list(tmp_path.iterdir()) == [], "bad input must write nothing"


def test_run_refuses_a_folder_holding_another_run(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "config.json").write_text("{}")
    result = wmbench("run", "--out", str(out))
    assert result.returncode == 2 and "not empty" in result.stderr
    assert (out / "config.json").read_text() == "{}"
