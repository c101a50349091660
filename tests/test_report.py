"""Reports: aggregate metrics, bootstrap intervals, published baselines, and `wmbench compare` on fake runs."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")
pytest.importorskip("seaborn")
pd = pytest.importorskip("pandas")

from wmbench.errors import WmbenchError  # noqa: E402
from wmbench.markdown import table as markdown  # noqa: E402
from wmbench.report import baselines, stats  # noqa: E402
from wmbench.report.compare import compare  # noqa: E402
from wmbench.report.runs import load_run  # noqa: E402
from wmbench.rundir import find_run_dirs  # noqa: E402

# Rows are runs, columns games.
MATRIX = np.array(
    [
        [0.0, 1.0, 2.0, 3.0],
        [4.0, 5.0, 6.0, 7.0],
    ]
)


# Aggregates ------------------------------------------------------------------------------------------


def test_aggregates_by_hand():
    # IQM of the 8 values 0..7: drop the lowest 2 and highest 2, mean of 2..5.
    assert stats.iqm(MATRIX) == pytest.approx(3.5)
    # Per-game means 2, 3, 4, 5: median 3.5, mean 3.5.
    assert stats.median(MATRIX) == pytest.approx(3.5)
    assert stats.mean(MATRIX) == pytest.approx(3.5)
    # Clipped at 1: 0, 1, 1, 1, 1, 1, 1, 1 -> mean 7/8, gap 1/8.
    assert stats.optimality_gap(MATRIX) == pytest.approx(0.125)


def test_aggregates_by_hand_skewed():
    m = np.array([[0.1, 0.2, 10.0], [0.3, 0.4, 0.5]])
    # IQM: trim 25% of 6 values (int(1.5) = 1 each side) -> mean of 0.2, 0.3, 0.4, 0.5.
    assert stats.iqm(m) == pytest.approx(0.35)
    # Per-game means 0.2, 0.3, 5.25.
    assert stats.median(m) == pytest.approx(0.3)
    assert stats.mean(m) == pytest.approx((0.2 + 0.3 + 5.25) / 3)
    # min(., 1): 0.1 0.2 1 0.3 0.4 0.5 -> mean 2.5 / 6.
    assert stats.optimality_gap(m) == pytest.approx(1 - 2.5 / 6)


def test_score_matrix_cuts_to_smallest_run_count():
    m = stats.score_matrix({"A": [1, 2, 3], "B": [4, 5]}, ["B", "A"])
    assert m.tolist() == [[4, 1], [5, 2]]
    with pytest.raises(ValueError):
        stats.score_matrix({"A": [1]}, ["A", "B"])


def test_interval_contains_point_and_narrows_with_more_runs():
    rng = np.random.default_rng(0)
    few = rng.normal(1.0, 0.5, size=(3, 10))
    many = rng.normal(1.0, 0.5, size=(30, 10))
    out = stats.aggregate_intervals({"few": few, "many": many}, reps=500)
    for name in stats.AGGREGATES:
        for key in ("few", "many"):
            iv = out[key][name]
            assert iv.low <= iv.point <= iv.high, (key, name, iv)
        assert out["many"][name].high - out["many"][name].low < out["few"][name].high - out["few"][name].low
    # Seeded: the same call gives the same interval, and numpy's global generator is left as it was.
    state = np.random.get_state()[1].copy()
    again = stats.aggregate_intervals({"few": few}, reps=500)
    assert again["few"] == out["few"]
    assert (np.random.get_state()[1] == state).all()


def test_vectorised_metrics_match_rliable():
    from rliable import library, metrics

    rng = np.random.default_rng(1)
    x = rng.integers(0, 4, size=(5, 6)).astype(float)  # small integers: many ties
    y = rng.integers(0, 4, size=(3, 6)).astype(float)
    y[:, 0] = x[:3, 0]
    assert stats.improvement(x, y) == pytest.approx(metrics.probability_of_improvement(x, y))
    assert stats.improvement(x, x) == pytest.approx(metrics.probability_of_improvement(x, x)) == pytest.approx(0.5)
    taus = np.linspace(0, 4, 17)
    assert stats.run_score_distribution(x, taus) == pytest.approx(library.score_distributions(x, taus))


def test_probability_of_improvement_and_profiles():
    x = np.full((3, 4), 2.0) + np.arange(3)[:, None] * 0.01
    y = np.full((3, 4), 1.0) + np.arange(3)[:, None] * 0.01
    better = stats.probability_of_improvement(x, y, reps=200)
    assert better.point == pytest.approx(1.0)
    assert stats.probability_of_improvement(y, x, reps=200).point == pytest.approx(0.0)
    assert stats.probability_of_improvement(x, x, reps=200).point == pytest.approx(0.5)
    taus = np.array([0.0, 1.5, 3.0])
    profiles = stats.performance_profiles({"x": x, "y": y}, taus, reps=200)
    assert profiles["x"][0].tolist() == [1.0, 1.0, 0.0]
    assert profiles["y"][0].tolist() == [1.0, 0.0, 0.0]


# Published baselines ---------------------------------------------------------------------------------


def test_published_iris_aggregates_reproduce_the_reference():
    """The reference README: IRIS IQM 0.501 [0.441, 0.567], mean 1.046, median 0.289 over 26 games."""
    norm = baselines.normalised("IRIS")
    games = list(baselines.human_scores())
    assert len(games) == 26
    m = stats.score_matrix(norm, games)
    assert m.shape == (5, 26)
    out = stats.aggregate_intervals({"IRIS": m}, reps=2000)["IRIS"]
    assert out["IQM"].point == pytest.approx(0.501, abs=0.005)
    assert out["Mean"].point == pytest.approx(1.046, abs=0.0005)
    assert out["Median"].point == pytest.approx(0.289, abs=0.0005)
    assert out["IQM"].low == pytest.approx(0.441, abs=0.01)
    assert out["IQM"].high == pytest.approx(0.567, abs=0.01)
    assert stats.iqm(stats.score_matrix(baselines.normalised("DIAMOND"), games)) == pytest.approx(0.641, abs=0.005)


def test_baselines_are_shipped_and_match_results_folder():
    names = baselines.available()
    for name in ("IRIS", "DIAMOND", "DeltaIRIS", "STORM", "TWM", "SimPLe"):
        assert name in names
    assert "HUMAN" not in names
    assert baselines.check("iris") == "IRIS"
    with pytest.raises(WmbenchError, match="did you mean 'DIAMOND'"):
        baselines.check("DIAMANT")
    results = Path(__file__).resolve().parents[1] / "results" / "baselines"
    if results.is_dir():  # a source checkout: the readers' copy is the same as the package's
        for name in [*names, "HUMAN", "RANDOM"]:
            assert json.loads((results / f"{name}.json").read_text()) == json.loads(json.dumps(_raw(name)))


def _raw(name: str):
    from importlib import resources

    return json.loads((resources.files("wmbench") / "data" / "baselines" / f"{name}.json").read_text())


# compare on fake run folders -------------------------------------------------------------------------

GAMES = {"Pong": (-20.0, 1.0), "Breakout": (2.0, 3.0)}  # base return, gain per backbone level


def write_run(folder: Path, game: str, backbone: str, seed: int, level: int, drop: tuple[str, ...] = ()) -> Path:
    """A finished run folder as the trainer writes it, with made-up but sane numbers."""
    folder.mkdir(parents=True)
    base, gain = GAMES[game]
    final = base + gain * (level + 1) + seed * 0.5
    lines = []
    for epoch in range(1, 5):
        line = {
            "time": 0.0,
            "epoch": epoch,
            "env_steps": 100 * epoch,
            "wall_time": 2.0 * epoch,
            "collect/return": base + epoch * 0.1,
        }
        if epoch > 1:
            line["loss/world_model/total"] = 5.0 / epoch + level * 0.2 + seed * 0.01
            line["throughput/imagined_frames_per_s"] = 100.0 * (level + 1)
        if epoch % 2 == 0:
            line["eval/return"] = base + gain * (level + 1) * epoch / 4 + seed * 0.1
        lines.append(json.dumps(line))
    (folder / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    (folder / "config.json").write_text("{}")
    summary = {
        "schema_version": 1, "game": game, "backbone": backbone, "tokenizer": "vqvae", "preset": "smoke",
        "seed": seed, "epochs": 4, "env_steps": 400, "eval_returns": [final - 0.5, final + 0.5],
        "eval_return_mean": final, "human_normalised_score": None, "wall_time_s": 10.0 + level,
        "parameters": {"tokenizer": {"total": 1000, "trainable": 1000}, "world_model": {"total": 2000 * (level + 1), "trainable": 2000},
                       "actor_critic": {"total": 500, "trainable": 500}},
        "peak_memory": {"cpu_rss_mb": 512.0 + level}, "device": "cpu", "bf16": False, "packages": {},
    }  # fmt: skip
    for key in drop:
        summary.pop(key)
    (folder / "summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture
def runs(tmp_path) -> Path:
    root = tmp_path / "runs"
    for level, backbone in enumerate(("scratch", "gpt2")):
        for game in GAMES:
            for seed in (0, 1):
                write_run(root / game / backbone / str(seed), game, backbone, seed, level)
    unfinished = root / "Pong" / "gpt2" / "9"
    unfinished.mkdir(parents=True)
    (unfinished / "config.json").write_text("{}")
    return root


def _csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_compare_writes_report(runs, tmp_path):
    folders, unfinished = find_run_dirs([runs])
    assert len(folders) == 8 and [p.name for p in unfinished] == ["9"]
    out = tmp_path / "report"
    report = compare(folders, out, ["IRIS", "DIAMOND"], reps=200)
    assert report == out / "report.md"
    text = report.read_text()
    for name in ("aggregates.png", "performance_profiles.png", "sample_efficiency.png", "world_model_loss.png",
                 "improvement.png", "runs.csv", "per_game.csv", "aggregates.csv", "throughput.csv", "improvement.csv"):  # fmt: skip
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
        assert f"({name})" in text, name
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "IRIS (published)" in text and "2 game(s)" in text
    assert not list(out.glob(".*.tmp"))

    rows = _csv(out / "runs.csv")
    assert len(rows) == 8
    pong = next(r for r in rows if r["game"] == "Pong" and r["method"] == "scratch" and r["seed"] == "0")
    assert float(pong["eval_return_mean"]) == -19.0
    assert float(pong["human_normalised_score"]) == pytest.approx((-19.0 + 20.7) / (14.6 + 20.7))
    assert float(pong["imagined_frames_per_s"]) == 100.0

    per_game = {r["game"]: r for r in _csv(out / "per_game.csv")}
    assert float(per_game["Breakout"]["gpt2 mean"]) == pytest.approx(2.0 + 6.0 + 0.25)
    assert float(per_game["Breakout"]["gpt2 std"]) == pytest.approx(np.std([8.0, 8.5], ddof=1))
    assert float(per_game["Pong"]["IRIS (published) mean"]) == pytest.approx(np.mean(baselines.load("IRIS")["Pong"]))

    agg = {r["method"]: r for r in _csv(out / "aggregates.csv")}
    assert set(agg) == {"scratch", "gpt2", "IRIS (published)", "DIAMOND (published)"}
    assert agg["IRIS (published)"]["source"] == "published" and agg["gpt2"]["source"] == "run"
    for r in agg.values():
        for key in ("iqm", "median", "mean", "optimality_gap"):
            assert float(r[f"{key}_low"]) <= float(r[key]) <= float(r[f"{key}_high"])
    assert float(agg["gpt2"]["mean"]) > float(agg["scratch"]["mean"])

    (poi,) = _csv(out / "improvement.csv")
    assert (poi["X"], poi["Y"]) == ("gpt2", "scratch")  # methods in alphabetical order
    assert float(poi["P(X > Y)"]) == pytest.approx(1.0)

    (sample,) = [
        r
        for r in _csv(out / "sample_efficiency.csv")
        if r["method"] == "scratch" and r["game"] == "Pong" and r["env_steps"] == "400"
    ]
    assert float(sample["mean"]) == pytest.approx(-18.75)  # the final evaluation and sample["seeds"] == "2"

    throughput = {r["method"]: r for r in _csv(out / "throughput.csv")}
    assert float(throughput["gpt2"]["imagined_frames_per_s"]) == 200.0
    assert throughput["gpt2"]["world_model_params"] == "4000"
    assert float(throughput["scratch"]["peak_cpu_rss_mb"]) == 512.0


def test_compare_small_samples(tmp_path):
    """One seed each: aggregates without intervals, probability of improvement skipped, no crash."""
    write_run(tmp_path / "a", "Pong", "scratch", 0, 0)
    write_run(tmp_path / "b", "Pong", "gpt2", 0, 1)
    write_run(tmp_path / "c", "Breakout", "gpt2", 0, 1, drop=("parameters", "peak_memory", "wall_time_s", "env_steps"))
    report = compare([tmp_path / "a", tmp_path / "b", tmp_path / "c"], tmp_path / "out", [], reps=100)
    text = report.read_text()
    assert "skipped: needs at least 2 runs" in text
    assert "gpt2 also ran Breakout" in text
    agg = {r["method"]: r for r in _csv(tmp_path / "out" / "aggregates.csv")}
    assert agg["gpt2"]["games"] == "1" and agg["gpt2"]["iqm_low"] == ""
    throughput = {r["method"]: r for r in _csv(tmp_path / "out" / "throughput.csv")}
    assert throughput["gpt2"]["runs"] == "2" and throughput["gpt2"]["world_model_params"] == "4000"


@pytest.mark.parametrize("field", ["game", "backbone", "seed", "eval_return_mean", "schema_version"])
def test_missing_field_names_folder_and_field(tmp_path, field):
    folder = write_run(tmp_path / "broken", "Pong", "scratch", 0, 0, drop=(field,))
    with pytest.raises(WmbenchError, match=rf"{folder}.*'{field}'"):
        load_run(folder)


def test_missing_summary_and_bad_values(tmp_path):
    (tmp_path / "bare").mkdir()
    (tmp_path / "bare" / "config.json").write_text("{}")
    with pytest.raises(WmbenchError, match=r"bare: no summary.json"):
        compare([tmp_path / "bare"], tmp_path / "out", [])
    folder = write_run(tmp_path / "nan", "Pong", "scratch", 0, 0)
    summary = json.loads((folder / "summary.json").read_text())
    (folder / "summary.json").write_text(json.dumps({**summary, "eval_return_mean": math.nan}))
    with pytest.raises(WmbenchError, match="not finite"):
        load_run(folder)
    (folder / "summary.json").write_text(json.dumps({**summary, "seed": "0"}))
    with pytest.raises(WmbenchError, match="field 'seed' is '0', not an integer"):
        load_run(folder)
    (folder / "summary.json").write_text(json.dumps({**summary, "game": "Tetris"}))
    with pytest.raises(WmbenchError, match="not an Atari 100k game"):
        load_run(folder)
    (tmp_path / "empty").mkdir()
    with pytest.raises(WmbenchError, match="holds no finished run folders"):
        find_run_dirs([tmp_path / "empty"])


def test_cli_compare_missing_folder_is_one_line(tmp_path):
    from click.testing import CliRunner

    from wmbench.cli import cli

    result = CliRunner().invoke(cli, ["compare", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "nowhere does not exist" in lines[0] and lines[0].startswith("wmbench: error:")
    assert not (tmp_path / "out").exists()


def test_cli_compare_end_to_end(runs, tmp_path):
    from click.testing import CliRunner

    from wmbench.cli import cli

    out = tmp_path / "report"
    result = CliRunner().invoke(cli, ["compare", str(runs), "--out", str(out), "--baseline", "iris", "--reps", "100"])
    assert result.exit_code == 0, result.output
    assert "skipping 1 unfinished" in result.output and "8 run(s) compared" in result.output
    assert "IRIS (published)" in (out / "report.md").read_text()
    result = CliRunner().invoke(cli, ["compare", str(runs), "--out", str(out), "--baseline", "DIAMANT"])
    assert result.exit_code == 2 and "did you mean 'DIAMOND'" in result.output


# The world-model track and throughput CSVs -------------------------------------------------------------


SETUPS = {
    "scratch": ("scratch", {}, 3.0),
    "lora": ("llm-lora", {"model": "smollm2-135m", "pretrained": True}, 2.0),
    "lora-random": ("llm-lora", {"model": "smollm2-135m", "pretrained": False}, 4.0),
}
"""Label -> backbone, options and the loss scale: held-out CE is scale / (budget index + 1) + 0.05 * seed, and the
pretrained side also + 0.01 * seed (paired differences that vary by seed)."""


def write_wm_run(folder: Path, game: str, seed: int, setup: str, drop: tuple[str, ...] = (), sha: str = "abc") -> Path:
    """A finished world-model-track run folder of one of :data:`SETUPS`."""
    folder.mkdir(parents=True)
    backbone, options, scale = SETUPS[setup]
    extra = 0.01 * seed if setup == "lora" else 0.0
    rows = [
        {"env_steps": frames, "lr": 0.001, "steps_run": 60, "best_step": 40,
         "heldout/loss/observations": scale / (i + 1) + 0.05 * seed + extra, "heldout/reference/copy/observations": 1.2,
         "heldout/loss/observations_changed": 2 * scale / (i + 1), "ood/loss/observations": scale / (i + 1) + 0.5,
         "heldout/rewards/balanced_accuracy": 0.5 + 0.1 * i, "heldout/ends/balanced_accuracy": 0.8 + 0.1 * seed,
         "heldout/ends/precision": None, "heldout/rollout_psnr@1": 20.0 + i, "heldout/rollout_psnr@3": 15.0 + i,
         "heldout/copy_psnr@3": 30.0, "heldout/rollout_token_accuracy@3": 0.5 + 0.1 * i, "heldout/imagined_frames_per_s": 10.0 * scale}
        for i, frames in enumerate((100, 200, 400))
    ]  # fmt: skip
    summary = {
        "schema_version": 1, "track": "world-model", "game": game, "backbone": backbone, "tokenizer": "vqvae",
        "preset": "smoke", "seed": seed, "budgets": [100, 200, 400], "per_budget": rows, "final": rows[-1], "lr": 0.001,
        "frozen_tokenizer": {"sha256": f"{sha}{game}{seed}"}, "dataset": {"file": f"/cache/{game}-seed{seed}.pt"},
        "parameters": {"world_model": {"total": 1000 * scale, "trainable": 100 * scale}}, "wall_time_s": 60.0 * scale,
        "epochs": 4, "host": {"threads": 1}, "device": "cpu",
    }  # fmt: skip
    for key in drop:
        summary.pop(key)
    (folder / "summary.json").write_text(json.dumps(summary))
    config = {"game": game, "seed": seed, "backbone": {"name": backbone, "options": options}}
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_compare_world_model_runs(tmp_path):
    folders = [write_wm_run(tmp_path / "wm" / f"{game}-{setup}-{seed}", game, seed, setup) for game in ("Pong", "Breakout")
               for setup in SETUPS for seed in (0, 1, 2)]  # fmt: skip
    report = compare(folders, tmp_path / "out", [], reps=200)
    out = tmp_path / "out"
    text = report.read_text()
    for name in ("data_efficiency.csv", "data_efficiency_aggregate.csv", "paired.csv", "paired.png",
                 "frames_to_target.csv", "cost.csv", "wm_heldout_loss.png", "wm_ood_loss.png", "wm_rollout_psnr.png"):  # fmt: skip
        assert (out / name).is_file() and f"({name})" in text, name
    assert "# World-model track" in text and "# Agent track" not in text and not (out / "aggregates.csv").exists()
    # Outside a sweep, setups are named by their configs: the two LoRA setups differ only in pretrained.
    rows = _csv(out / "data_efficiency.csv")
    lora, control = "llm-lora[pretrained=true]", "llm-lora[pretrained=false]"
    assert {r["method"] for r in rows} == {"scratch", lora, control}
    row = next(r for r in rows if r["method"] == control and r["game"] == "Pong" and r["env_steps"] == "200")
    assert row["seeds"] == "3" and float(row["heldout/loss/observations mean"]) == pytest.approx(2.0 + 0.05)
    paired = {(r["X"], r["Y"], r["frames"], r["figure"]): r for r in _csv(out / "paired.csv")}
    # The pretraining control: X is the pretrained side; the difference (2 - 4) / 2 + 0.01 * seed, means over seeds.
    pair = paired[(lora, control, "200", "heldout/loss/observations")]
    assert pair["comparison"] == "backbone.options.pretrained: true vs false"
    assert float(pair["difference"]) == pytest.approx(-1.0 + 0.01)
    assert float(pair["low"]) >= -1.0 - 1e-9 and float(pair["high"]) <= -1.0 + 0.02 + 1e-9
    assert float(pair["P(X better)"]) == 1.0 and pair["games"] == "2" and pair["seeds"] == "6"
    assert (control, "scratch", "200", "heldout/loss/observations") in paired  # every setup against scratch
    assert float(paired[(lora, control, "400", "heldout/rewards/balanced_accuracy")]["difference"]) == 0.0
    # Frames to target: scratch's CE at 400 frames (1.0 + 0.05 mean over seeds); the pretrained side reaches it
    # between 100 and 200 frames (interpolated in log frames), the control never does.
    runs = {(r["method"], r["game"], r["seed"]): r for r in _csv(out / "frames_to_target_runs.csv")}
    expected = 100 * 2 ** ((2.0 - 1.05) / (2.0 - 1.0))
    assert float(runs[(lora, "Pong", "0")]["frames"]) == pytest.approx(expected)
    assert runs[(control, "Pong", "0")]["frames"] == "inf" and float(runs[(control, "Pong", "0")]["counted"]) == 800
    assert "> 400" in (out / "frames_to_target.md").read_text()
    cost = {r["method"]: r for r in _csv(out / "cost.csv")}
    assert float(cost["scratch"]["trainable"]) == 300 and float(cost[lora]["imagined_frames_per_s"]) == 20.0


def test_world_model_runs_of_other_tokenizers_refused(tmp_path):
    folders = [
        write_wm_run(tmp_path / "a", "Pong", 0, "scratch"),
        write_wm_run(tmp_path / "b", "Pong", 0, "lora", sha="x"),
    ]
    with pytest.raises(WmbenchError, match=r"world-model runs of Pong seed 0 used different frozen tokenizers"):
        compare(folders, tmp_path / "out", [], reps=100)


def test_world_model_sweep_cells_take_the_benchmark_labels(tmp_path):
    from wmbench.report.data_efficiency import labels_of
    from wmbench.report.runs import load_run

    sweep = tmp_path / "sweep"
    cells = [("Pong-smollm2-lora-vqvae-s0", "smollm2-lora", "lora"), ("Pong-scratch-vqvae-s0", "scratch", "scratch")]
    runs = [load_run(write_wm_run(sweep / "cells" / cell, "Pong", 0, setup)) for cell, _, setup in cells]
    (sweep / "index.json").write_text(json.dumps({"cells": [{"id": c, "label": lab} for c, lab, _ in cells]}))
    assert labels_of(runs) == ["smollm2-lora", "scratch"]
    (sweep / "index.json").unlink()
    assert labels_of(runs) == ["llm-lora", "scratch"]


def test_world_model_sweep_reference_is_the_files_first_scratch_setup(tmp_path):
    # Two scratch setups whose folders sort the other way round from the benchmark file: the file's first is the
    # reference of frames to target, and setups are listed in the file's order.
    sweep = tmp_path / "sweep"
    cells = [("Pong-scratch-matched-s0", "scratch-matched", "scratch"), ("Pong-lora-s0", "smollm2-lora", "lora"),
             ("Pong-scratch-iris-s0", "scratch-iris", "scratch")]  # fmt: skip
    folders = [write_wm_run(sweep / "cells" / cell, "Pong", 0, setup) for cell, _, setup in cells]
    (sweep / "index.json").write_text(json.dumps({"cells": [{"id": c, "label": lab} for c, lab, _ in cells]}))
    report = compare(sorted(folders), tmp_path / "out", [], reps=100).read_text()
    assert "the held-out CE of `scratch-matched` at its largest budget" in report
    methods = [r["method"] for r in _csv(tmp_path / "out" / "frames_to_target.csv")]
    assert methods == ["scratch-matched", "smollm2-lora", "scratch-iris"]


def test_compare_mixed_tracks_and_bench_csvs(runs, tmp_path):
    from wmbench.report.runs import find_bench_csvs

    write_wm_run(runs / "wm" / "0", "Pong", 0, "lora")
    cell = tmp_path / "sweep" / "cells" / "Pong-scratch-vqvae"
    cell.mkdir(parents=True)
    from wmbench.bench.results import COLUMNS

    row = {c: "" for c in COLUMNS} | {"time": "2026-01-01T00:00:00Z", "device": "cpu", "threads": "1", "dtype": "fp32",
                                       "game": "Pong", "preset": "smoke", "backbone": "scratch", "tokenizer": "vqvae", "batch": "16",
                                       "measure": "imagine_frames_per_s", "unit": "frames/s", "median": "1234.5", "ratio_to_ale": "0.5"}  # fmt: skip
    (cell / "throughput.csv").write_text(",".join(COLUMNS) + "\n" + ",".join(row[c] for c in COLUMNS) + "\n")
    folders, _ = find_run_dirs([runs])
    csvs = find_bench_csvs([runs, tmp_path / "sweep"])
    assert csvs == [(cell / "throughput.csv").resolve()]
    report = compare(folders, tmp_path / "out", ["IRIS"], reps=100, bench_csvs=csvs)
    text = report.read_text()
    assert "# Agent track" in text and "# World-model track" in text and "## Throughput (wmbench bench)" in text
    (row,) = _csv(tmp_path / "out" / "bench.csv")
    assert float(row["median"]) == 1234.5 and row["source"] == str(cell.resolve() / "throughput.csv")
    assert "| imagined frames/s |" in text and "1,234" in text  # bench's own table: one row per setup
    (cell / "throughput.csv").write_text("backbone,fps\nscratch,1\n")
    with pytest.raises(WmbenchError, match=r"throughput.csv is not a wmbench bench CSV"):
        compare(folders, tmp_path / "out", [], reps=100, bench_csvs=csvs)
    assert len(_csv(tmp_path / "out" / "runs.csv")) == 8  # the world-model run is not an agent run
    # The report's own throughput.csv (beside report.md) is not taken for a bench CSV the next time.
    assert find_bench_csvs([tmp_path / "out"]) == []


@pytest.mark.parametrize("drop", ["per_budget", "frozen_tokenizer", "seed"])
def test_world_model_run_missing_field_names_folder(tmp_path, drop):
    folder = write_wm_run(tmp_path / "wm", "Pong", 0, "lora", drop=(drop,))
    with pytest.raises(WmbenchError, match=rf"run folder {folder}: summary.json has no field '{drop}'"):
        load_run(folder)


def test_world_model_run_bad_budget_row_names_folder(tmp_path):
    folder = write_wm_run(tmp_path / "wm", "Pong", 0, "lora")
    summary = json.loads((folder / "summary.json").read_text())
    summary["per_budget"][1].pop("heldout/loss/observations")
    (folder / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(
        WmbenchError, match=rf"{folder}: summary.json per_budget\[1\] has no number 'heldout/loss/observations'"
    ):
        load_run(folder)


def test_markdown_cells():
    table = markdown(
        pd.DataFrame({"name": ["a|b"], "small": [0.012345], "mid": [999.6], "big": [12345.6], "none": [float("nan")]})
    )
    assert table.splitlines()[-1] == "| a\\|b | 0.0123 | 1,000 | 12,346 | – |"


def test_compare_over_a_suite_that_is_not_atari(tmp_path):
    """Catcher (the toy suite): its reference scores come from its suite, its per-game row is kept, and it is
    aggregated alone, or left out beside published Atari baselines with a note saying why."""
    runs = []
    for seed, final in ((0, 10.0), (1, 0.0)):
        folder = write_run(tmp_path / f"catcher{seed}", "Pong", "scratch", seed, 0)
        summary = json.loads((folder / "summary.json").read_text())
        (folder / "summary.json").write_text(json.dumps({**summary, "game": "Catcher", "eval_return_mean": final}))
        runs.append(folder)
    report = compare(runs, tmp_path / "alone", [], reps=100)
    (row,) = _csv(tmp_path / "alone" / "per_game.csv")
    assert (row["game"], float(row["random"]), float(row["human"]), row["scratch n"]) == ("Catcher", -5.0, 10.0, "2")
    (agg,) = _csv(tmp_path / "alone" / "aggregates.csv")
    assert float(agg["mean"]) == pytest.approx(np.mean([(10.0 + 5) / 15, 5 / 15]))
    assert "Catcher" in report.read_text()
    text = compare(runs, tmp_path / "beside", ["IRIS"], reps=100).read_text()
    assert "Catcher left out of the aggregates beside the published baselines" in text
    assert "Skipped: no game with a normalised score is covered by every backbone" in text
