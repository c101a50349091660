"""``wmbench bench``: well-formed rows beside ALE's, the CSV it appends to, suites (throughput benchmark files) and
their table, bad input."""

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from wmbench.bench.results import COLUMNS, append_csv, suite_page
from wmbench.benchmark import cells, load_benchmark
from wmbench.cli import cli
from wmbench.errors import WmbenchError

# The smoke preset cut down so that one bench takes a few seconds.
TINY = ["--set", "world_model.max_blocks=3", "--set", "training.actor_critic.burn_in=1",
        "--set", "training.actor_critic.horizon=2", "--set", "training.collect.steps_per_epoch=20"]  # fmt: skip
MEASURES = {
    "ale_steps_per_s", "imagine_frames_per_s", "imagine_frames_per_s_no_decode", "imagine_ms_per_frame_short_context",
    "imagine_ms_per_frame_full_context", "context_growth", "wm_train_tokens_per_s", "wm_loss",
    "tokenizer_encode_frames_per_s", "tokenizer_decode_frames_per_s", "actor_critic_updates_per_s", "peak_memory_mb",
    "matmul_gflops",
}  # fmt: skip
PROJECTION = {
    "phase_collect_steps_per_s", "phase_tokenizer_steps_per_s", "phase_wm_steps_per_s", "phase_ac_steps_per_s",
    "projected_hours", "projected_hours_collection", "projected_hours_tokenizer", "projected_hours_world_model",
    "projected_hours_actor_critic",
}  # fmt: skip
UPDATES_AT_PRESET_BATCH = {"phase_tokenizer_steps_per_s", "phase_wm_steps_per_s", "phase_ac_steps_per_s"}
"""Updates at the preset's batch sizes: no ratio to ALE."""


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def bench(*args):
    return CliRunner().invoke(cli, ["bench", *args])


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "throughput.csv"
    result = bench("--preset", "smoke", "--game", "Pong", "--device", "cpu", "--batch", "2", "--repeats", "1", *TINY,
                   "--csv", str(path), "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    return path, json.loads(result.stdout)


def test_rows_are_well_formed(measured):
    path, printed = measured
    with open(path) as f:
        reader = csv.DictReader(f)
        assert tuple(reader.fieldnames) == COLUMNS
        rows = list(reader)
    assert [r["measure"] for r in rows] == [r["measure"] for r in printed]
    assert {r["measure"] for r in rows} == MEASURES | PROJECTION
    for row in rows:
        assert (row["game"], row["preset"], row["backbone"], row["tokenizer"], row["batch"]) == (
            "Pong",
            "smoke",
            "scratch",
            "vqvae",
            "2",
        )
        assert row["dtype"] == "fp32" and row["device"] == "cpu" and int(row["threads"]) >= 1
        assert "world_model.max_blocks=3" in row["overrides"]
        median, p25, p75 = float(row["median"]), float(row["p25"]), float(row["p75"])
        assert all(math.isfinite(x) and x > 0 for x in (median, p25, p75)), row
        assert p25 <= median <= p75
        if row["unit"].endswith("/s") and row["unit"] != "GFLOP/s" and row["measure"] not in UPDATES_AT_PRESET_BATCH:
            assert float(row["ratio_to_ale"]) > 0, row
    by_measure = {r["measure"]: r for r in rows}
    assert float(by_measure["ale_steps_per_s"]["ratio_to_ale"]) == 1.0
    assert by_measure["context_growth"]["unit"] == "ratio"


def test_parallel_prediction_benches_beside_the_sequential(tmp_path):
    """The option is a setup's override: its rows sit beside the sequential ones, every measure taken."""
    path = tmp_path / "throughput.csv"
    for parallel in ("false", "true"):
        result = bench("--preset", "smoke", "--game", "Pong", "--batch", "2", "--repeats", "1", *TINY,
                       "--set", f"world_model.parallel={parallel}", "--csv", str(path), "--no-projection")  # fmt: skip
        assert result.exit_code == 0, result.output
    with open(path) as f:
        rows = list(csv.DictReader(f))
    by_option = {o: {r["measure"] for r in rows if r["overrides"].endswith(f"world_model.parallel={o}")}
                 for o in ("false", "true")}  # fmt: skip
    assert by_option == {"false": MEASURES, "true": MEASURES}


def test_fixed_shape_imagination_benches_with_its_projection(tmp_path):
    """Imagination with fixed shapes (here with parallel prediction) is measured wherever the bench imagines, and the
    projected run is printed."""
    path = tmp_path / "throughput.csv"
    result = bench("--preset", "smoke", "--game", "Pong", "--batch", "2", "--repeats", "1", *TINY,
                   "--set", "world_model.parallel=true", "--set", "training.actor_critic.fixed_shape=true",
                   "--csv", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    with open(path) as f:
        rows = {r["measure"]: r for r in csv.DictReader(f)}
    assert set(rows) == MEASURES | PROJECTION
    line = re.search(r"projected run \(10 epochs of the smoke schedule, evaluation not counted\): (\S+) = (.*)",
                     result.output)  # fmt: skip
    assert line, result.output
    assert [share.rsplit(" ", 1)[0] for share in line[2].split(" + ")] == [
        "collection", "tokenizer", "world model", "actor critic"
    ]  # fmt: skip
    hours, minutes, seconds = (float(x) for x in line[1].split(":"))
    assert hours * 3600 + minutes * 60 + seconds == pytest.approx(
        float(rows["projected_hours"]["median"]) * 3600, abs=1
    )


def test_rows_are_appended_and_a_foreign_csv_is_refused(measured, tmp_path):
    path, printed = measured
    copy = tmp_path / "throughput.csv"
    copy.write_text(path.read_text())
    append_csv(copy, printed[:2])
    lines = copy.read_text().splitlines()
    assert lines[0] == ",".join(COLUMNS) and len(lines) == 1 + len(printed) + 2
    foreign = tmp_path / "other.csv"
    foreign.write_text("a,b\n1,2\n")
    with pytest.raises(WmbenchError, match="not a wmbench bench CSV"):
        append_csv(foreign, printed)
    result = bench("--preset", "smoke", "--csv", str(foreign))
    assert result.exit_code == 2 and "not a wmbench bench CSV" in result.output
    assert foreign.read_text() == "a,b\n1,2\n"


def test_suite_writes_rows_and_a_table(tmp_path):
    suite = tmp_path / "suite.toml"
    sets = ", ".join(f'"{s}"' for s in TINY[1::2])
    suite.write_text(
        f'name = "t"\ntrack = "throughput"\npreset = "smoke"\ngames = ["Pong"]\nrepeats = 1\nbatch = 2\n\n'
        f'[[backbones]]\nname = "scratch"\nset = [{sets}]\n'
    )
    out = tmp_path / "results" / "throughput.csv"
    result = bench("--suite", str(suite), "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 1 + len(MEASURES | PROJECTION)
    table = (tmp_path / "results" / "throughput.md").read_text()
    assert "| device | threads | dtype | game | preset | backbone |" in table
    assert "| cpu | " in table and "| Pong | smoke | scratch |" in table and "imagined / ALE" in table
    assert "without rows" not in table
    setups = cells(load_benchmark(suite))
    stopped = suite_page(suite, [*setups, replace(setups[0], preset="iris")], out)  # as if stopped before the second
    assert (
        "Setups of the suite without rows in the CSV (still running, or stopped before them): scratch at iris (world_model"
        in stopped
    )


@pytest.mark.parametrize("args, expected", [
    (["--backbone", "scrach"], "unknown backbone 'scrach' (did you mean 'scratch'?)"),
    (["--game", "Breakot"], "did you mean 'Breakout'?"),
    (["--preset", "smok"], "unknown preset 'smok' (did you mean 'smoke'?)"),
    (["--tokenizer", "vqva"], "did you mean 'vqvae'?"),
    (["--set", "world_model.num_layer=3"], "did you mean 'num_layers'?"),
    (["--set", "world_model.num_layers=many"], "world_model.num_layers must be int"),
    (["--batch", "0"], "0 is not in the range x>=1"),
    (["--repeats", "0"], "0 is not in the range x>=1"),
    (["--suite", "benchmarks/throughput.toml"], "--suite needs --csv"),
    (["--suite", "no/such.toml", "--csv", "x.csv"], "benchmark file no/such.toml does not exist"),
    (["--suite", str(BENCHMARKS / "smoke.toml"), "--csv", "x.csv"], "--suite takes a benchmark file of the throughput"),
])  # fmt: skip
def test_bad_input_is_one_line(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


SUITE = 'name = "t"\ntrack = "throughput"\npreset = "smoke"\ngames = ["Pong"]\n'


@pytest.mark.parametrize("text, expected", [
    ('[[backbones]]\nname = "scratch"\nrepeat = 2\n', "backbones[0]: unknown key 'repeat' (did you mean 'repeats'?)"),
    ("", "'backbones' must be a non-empty array"),
    ('[[backbones]]\nname = "scratch"\nbatch = "8"\n', "'batch' is a positive integer of the throughput track only"),
    ('repeats = 0\n[[backbones]]\nname = "scratch"\n', "'repeats' is a positive integer of the throughput track only"),
    ('[[backbones]]\nname = 3\n', "'name' must be a backbone id, got 3"),
    ('[[backbones]]\nname = "scratch"\npreset = "iriss"\n', "backbones[0]: unknown preset 'iriss'"),
    ('[[backbones]]\nname = "scratch"\ntokenizers = ["vit-qv"]\n', "unknown tokenizer 'vit-qv'"),
    ('[[backbones]]\nname = "scratch"\ntokenizers = []\n', "backbones[0]: 'tokenizers' must be a non-empty list"),
    ("[[backbones]\n", "is not valid TOML"),
    ('set = "a=1"\n[[backbones]]\nname = "scratch"\n', "'set' must be a non-empty list of strs, got 'a=1'"),
    ('[[backbones]]\nname = "scratch"\nset = [1]\n', "backbones[0]: 'set' must be a non-empty list of strs"),
])  # fmt: skip
def test_bad_suites(text, expected, tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(SUITE + text)
    with pytest.raises(WmbenchError, match=re.escape(expected)):
        load_benchmark(path)


def test_suite_overrides_come_before_each_setups_own(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(
        SUITE + 'set = ["training.epochs=1", "world_model.max_blocks=3"]\n[[backbones]]\nname = "scratch"\n'
        '[[backbones]]\nname = "scratch"\nlabel = "three"\nset = ["world_model.max_blocks=2"]\n'
    )
    assert [c.overrides for c in cells(load_benchmark(path))] == [
        ("training.epochs=1", "world_model.max_blocks=3"),
        ("training.epochs=1", "world_model.max_blocks=3", "world_model.max_blocks=2"),
    ]


@pytest.mark.parametrize(
    "name, presets, count",
    [("throughput.toml", {"smoke", "iris", "fast"}, 24), ("throughput-smoke.toml", {"smoke", "fast"}, 10)],
)
def test_the_shipped_suites_resolve(registry, name, presets, count):
    from wmbench import config as cfg

    suite = load_benchmark(BENCHMARKS / name)
    setups = cells(suite)
    assert suite.track == "throughput" and len(setups) == count
    assert {s.backbone for s in setups} == {e for e in registry.entries["backbone"]}
    assert {s.preset for s in setups} == presets
    for s in setups:
        cfg.resolve(s.preset, s.game, 0, s.tokenizer, s.backbone, list(s.overrides), registry, {"device": suite.device})


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["llm-frozen", "llm-lora", "llm-qlora", "llm-full"])
def test_every_llm_backbone_benches(backbone, tmp_path):
    """Every LLM backbone benches, on a tiny random Llama (no download); its timings are printed."""
    path = tmp_path / "throughput.csv"
    result = bench("--backbone", backbone, "--set", "backbone.model=tiny-llama", "--set", "backbone.pretrained=false",
                   "--batch", "2", "--repeats", "1", *TINY, "--csv", str(path), "--no-projection")  # fmt: skip
    assert result.exit_code == 0, result.output
    print(result.stdout)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert {r["measure"] for r in rows} == MEASURES and {r["backbone"] for r in rows} == {backbone}
    assert all(math.isfinite(float(r["median"])) and float(r["median"]) > 0 for r in rows)


def test_projected_run_of_the_paper_schedule():
    """The iris schedule (the config's defaults): 500 collection epochs of 200 env steps, and 200 updates an epoch of
    the tokenizer after epoch 5, the world model after 25 and the actor-critic after 50, over 600 epochs."""
    from wmbench.bench.projection import phase_steps, projected_seconds
    from wmbench.config import TrainingConfig

    training = TrainingConfig()
    assert phase_steps(training) == {
        "collection": 100_000, "tokenizer": 119_000, "world_model": 115_000, "actor_critic": 110_000
    }  # fmt: skip
    per_step = {"collection": 0.004, "tokenizer": 0.05, "world_model": 0.1, "actor_critic": 0.25}
    assert projected_seconds(training, per_step) == pytest.approx(
        {"collection": 400, "tokenizer": 5_950, "world_model": 11_500, "actor_critic": 27_500, "total": 45_350}
    )
    short = replace(training, epochs=30)  # collection throughout, the actor-critic not yet
    assert phase_steps(short) == {"collection": 6_000, "tokenizer": 5_000, "world_model": 1_000, "actor_critic": 0}
