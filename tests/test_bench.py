"""``wmbench bench``: well-formed rows beside ALE's, the CSV it appends to, suites and their table, bad input."""

import csv
import json
import math
import re
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from wmbench.bench.results import COLUMNS, append_csv, suite_page
from wmbench.bench.suite import load_suite
from wmbench.cli import cli
from wmbench.errors import WmbenchError

# The smoke preset cut down so that one bench takes a few seconds.
TINY = ["--set", "world_model.max_blocks=3", "--set", "training.actor_critic.burn_in=1",
        "--set", "training.actor_critic.horizon=2"]  # fmt: skip
MEASURES = {
    "ale_steps_per_s", "imagine_frames_per_s", "imagine_frames_per_s_no_decode", "imagine_ms_per_frame_short_context",
    "imagine_ms_per_frame_full_context", "context_growth", "wm_train_tokens_per_s", "wm_loss",
    "tokenizer_encode_frames_per_s", "tokenizer_decode_frames_per_s", "actor_critic_updates_per_s", "peak_memory_mb",
    "matmul_gflops",
}  # fmt: skip


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
    assert {r["measure"] for r in rows} == MEASURES
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
        if row["unit"].endswith("/s") and row["unit"] != "GFLOP/s":
            assert float(row["ratio_to_ale"]) > 0, row
    by_measure = {r["measure"]: r for r in rows}
    assert float(by_measure["ale_steps_per_s"]["ratio_to_ale"]) == 1.0
    assert by_measure["context_growth"]["unit"] == "ratio"


def test_parallel_prediction_benches_beside_the_sequential(tmp_path):
    """The option is a setup's override: its rows sit beside the sequential ones, every measure taken."""
    path = tmp_path / "throughput.csv"
    for parallel in ("false", "true"):
        result = bench("--preset", "smoke", "--game", "Pong", "--batch", "2", "--repeats", "1", *TINY,
                       "--set", f"world_model.parallel={parallel}", "--csv", str(path))  # fmt: skip
        assert result.exit_code == 0, result.output
    with open(path) as f:
        rows = list(csv.DictReader(f))
    by_option = {o: {r["measure"] for r in rows if r["overrides"].endswith(f"world_model.parallel={o}")}
                 for o in ("false", "true")}  # fmt: skip
    assert by_option == {"false": MEASURES, "true": MEASURES}


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
        f'name = "t"\ngame = "Pong"\nrepeats = 1\nbatch = 2\n\n[[setups]]\nbackbone = "scratch"\npreset = "smoke"\nset = [{sets}]\n'
    )
    out = tmp_path / "results" / "throughput.csv"
    result = bench("--suite", str(suite), "--csv", str(out))
    assert result.exit_code == 0, result.output
    assert len(out.read_text().splitlines()) == 1 + len(MEASURES)
    table = (tmp_path / "results" / "throughput.md").read_text()
    assert "| device | threads | dtype | game | preset | backbone |" in table
    assert "| cpu | " in table and "| Pong | smoke | scratch |" in table and "imagined / ALE" in table
    assert "without rows" not in table
    _, _, setups = load_suite(suite)
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
    (["--suite", "no/such.toml", "--csv", "x.csv"], "suite file no/such.toml does not exist"),
])  # fmt: skip
def test_bad_input_is_one_line(args, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = bench(*args)
    assert result.exit_code == 2, result.output
    assert expected in result.output and result.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, expected", [
    ('[[setups]]\nbackbone = "scratch"\nrepeat = 2\n', "unknown key 'repeat' (did you mean 'repeats'?)"),
    ('game = "Pong"\n', "'setups' must be a non-empty array"),
    ('[[setups]]\nbackbone = "scratch"\nbatch = "8"\n', "'batch' must be an integer above zero"),
    ('[[setups]]\nbackbone = 3\n', "'backbone' must be a string"),
    ("[[setups]\n", "is not valid TOML"),
    ('set = "a=1"\n[[setups]]\nbackbone = "scratch"\n', "'set' must be a list of KEY=VALUE strings, got 'a=1'"),
    ('[[setups]]\nbackbone = "scratch"\nset = [1]\n', "setups[0]: 'set' must be a list of KEY=VALUE strings"),
])  # fmt: skip
def test_bad_suites(text, expected, tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(text)
    with pytest.raises(WmbenchError, match=re.escape(expected)):
        load_suite(path)


def test_suite_overrides_come_before_each_setups_own(tmp_path):
    path = tmp_path / "suite.toml"
    path.write_text(
        'set = ["a=1", "b=2"]\n[[setups]]\nbackbone = "scratch"\n[[setups]]\nbackbone = "scratch"\nset = ["b=3"]\n'
    )
    _, _, setups = load_suite(path)
    assert [s.overrides for s in setups] == [("a=1", "b=2"), ("a=1", "b=2", "b=3")]


@pytest.mark.parametrize(
    "name, presets", [("throughput.toml", {"smoke", "iris", "fast"}), ("throughput-smoke.toml", {"smoke", "fast"})]
)
def test_the_shipped_suites_resolve(registry, name, presets):
    from wmbench import config as cfg

    game, device, setups = load_suite(Path(__file__).parents[1] / "benchmarks" / name)
    names = {s.backbone for s in setups}
    assert names == {e for e in registry.entries["backbone"]}
    assert {s.preset for s in setups} == presets
    for s in setups:
        cfg.resolve(s.preset, game, 0, s.tokenizer, s.backbone, list(s.overrides), registry, {"device": device})


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["llm-frozen", "llm-lora", "llm-qlora", "llm-full"])
def test_every_llm_backbone_benches(backbone, tmp_path):
    """Every LLM backbone benches, on a tiny random Llama (no download); its timings are printed."""
    path = tmp_path / "throughput.csv"
    result = bench("--backbone", backbone, "--set", "backbone.model=tiny-llama", "--set", "backbone.pretrained=false",
                   "--batch", "2", "--repeats", "1", *TINY, "--csv", str(path))  # fmt: skip
    assert result.exit_code == 0, result.output
    print(result.stdout)
    with open(path) as f:
        rows = list(csv.DictReader(f))
    assert {r["measure"] for r in rows} == MEASURES and {r["backbone"] for r in rows} == {backbone}
    assert all(math.isfinite(float(r["median"])) and float(r["median"]) > 0 for r in rows)
