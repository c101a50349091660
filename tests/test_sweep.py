"""Benchmark files and `wmbench sweep`: validation before anything runs, cell ids and commands, skipping finished
cells, resuming interrupted ones, isolating failures, the index, and refusing another benchmark's folder."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from wmbench.benchmark import cells, load_benchmark
from wmbench.cli import cli
from wmbench.errors import WmbenchError
from wmbench.progress import Progress
from wmbench.sweep import Sweep

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
TINY = [
    "training.epochs=2", "training.collect.steps_per_epoch=40", "training.tokenizer.steps_per_epoch=2",
    "training.tokenizer.batch_size=8", "training.world_model.start_after_epochs=1", "training.world_model.steps_per_epoch=2",
    "training.world_model.batch_size=4", "training.actor_critic.start_after_epochs=1", "training.actor_critic.steps_per_epoch=1",
    "training.actor_critic.batch_size=4", "training.media_every=0", "eval.final_episodes=1", "eval.num_envs=1",
    "env.max_frames_test=200",
]  # fmt: skip
#: Passes validation (config keys and types are fine) but fails when the backbone is built: 64 wide, 3 heads.
FAILING = ["world_model.num_heads=3"]


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def toml_list(items: list[str]) -> str:
    return "[" + ", ".join(json.dumps(i) for i in items) + "]"


def benchmark(
    tmp_path: Path, backbones: str, track: str = "agent", games: str = '["Pong"]', extra: str = "", more: tuple = ()
) -> Path:
    """A benchmark file of tiny cells; ``more`` overrides go after the tiny ones."""
    text = f'name = "t"\ntrack = "{track}"\npreset = "smoke"\ngames = {games}\nseeds = [0]\nset = {toml_list([*TINY, *more])}\n{extra}\n{backbones}'
    return write(tmp_path / "bench.toml", text)


SCRATCH = '[[backbones]]\nname = "scratch"\n'
BROKEN = f'[[backbones]]\nname = "scratch"\nlabel = "broken"\nset = {toml_list(FAILING)}\n'


def test_shipped_benchmarks_are_valid():
    smoke = load_benchmark(BENCHMARKS / "smoke.toml")
    assert smoke.track == "agent" and smoke.games == ("Pong", "Breakout") and smoke.seeds == (0,)
    assert [b.name for b in smoke.backbones] == [
        "scratch",
        "llm-frozen",
        "llm-lora",
        "llm-qlora",
        "llm-full",
        "vit",
        "clip",
    ]
    assert len(cells(smoke)) == 14
    atari = load_benchmark(BENCHMARKS / "atari100k.toml")
    assert (atari.preset, len(atari.games), atari.seeds) == ("iris", 26, (0, 1, 2, 3, 4))
    assert len({c.id for c in cells(atari)}) == 130
    wm = load_benchmark(BENCHMARKS / "llm-data-efficiency.toml")
    assert wm.track == "world-model" and len(wm.games) >= 3 and len(wm.seeds) >= 3
    labels = [b.label for b in wm.backbones]
    assert {"scratch-matched", "smollm2-full", "smollm2-full-random"} <= set(labels)
    controls = load_benchmark(BENCHMARKS / "llm-data-efficiency-controls.toml")
    assert {b.label for b in controls.backbones} >= {"smollm2-lora", "smollm2-lora-random"}
    pilot = load_benchmark(BENCHMARKS / "llm-data-efficiency-pilot.toml")
    # the controls and the pilot share the main file's settings: their cells pair with its cells (the same datasets
    # and frozen tokenizers); the pilot's learning-rate grids were widened in the main file after it ran
    assert controls.overrides == wm.overrides == pilot.overrides and set(controls.games) <= set(wm.games)
    by_id = {c.id: c for c in cells(wm)}

    def but_lrs(cell):
        return [o for o in cell.overrides if not o.startswith("world_model_track.lrs=")]

    assert all(but_lrs(by_id[c.id]) == but_lrs(c) for c in cells(pilot))  # the main file's cell of the same id
    parallel = load_benchmark(BENCHMARKS / "wm-parallel.toml")  # each setup beside itself with the option
    assert parallel.track == "world-model" and len(cells(parallel)) == 8
    pairs = zip(parallel.backbones[::2], parallel.backbones[1::2], strict=True)
    assert all(b.overrides == (*a.overrides, "world_model.parallel=true") for a, b in pairs)


def test_cell_ids_and_commands(tmp_path):
    two = SCRATCH + '[[backbones]]\nname = "llm-lora"\nlabel = "lora-random"\nset = ["backbone.pretrained=false"]\n'
    bench = load_benchmark(benchmark(tmp_path, two, games='["Pong", "Breakout"]'))
    ids = [c.id for c in cells(bench)]
    assert ids == [
        "Pong-scratch-vqvae-s0",
        "Pong-lora-random-vqvae-s0",
        "Breakout-scratch-vqvae-s0",
        "Breakout-lora-random-vqvae-s0",
    ]
    sweep = Sweep(bench, tmp_path / "out", jobs=2)
    cell = cells(bench)[1]
    argv = sweep.argv(cell, "run")
    assert argv[1:4] == ["-m", "wmbench", "run"]
    assert argv[argv.index("--backbone") + 1] == "llm-lora" and argv[-2:] == [
        "--out",
        str(tmp_path / "out" / "cells" / cell.id),
    ]
    assert "backbone.pretrained=false" in argv and "training.epochs=2" in argv
    assert sweep.argv(cell, "resume")[3:] == ["run", "--resume", str(tmp_path / "out" / "cells" / cell.id)]

    wm = load_benchmark(benchmark(tmp_path, SCRATCH, track="world-model", more=("world_model_track.budgets=[40]",)))
    assert Sweep(wm, tmp_path / "wm", 1).argv(cells(wm)[0], "run")[3] == "world-model"
    throughput = load_benchmark(benchmark(tmp_path, SCRATCH, track="throughput", extra="batch = 4"))
    (cell,) = cells(throughput)
    assert cell.id == "Pong-scratch-vqvae" and cell.seed is None
    argv = Sweep(throughput, tmp_path / "tp", 1).argv(cell, "run")
    assert argv[3] == "bench" and "--seed" not in argv and argv[argv.index("--batch") + 1] == "4"
    assert argv[-2:] == [
        "--csv",
        str(tmp_path / "tp" / "cells" / cell.id / "throughput.partial.csv"),
    ]  # renamed on success


def test_a_backbone_entry_takes_its_own_preset_tokenizers_batch_and_repeats(tmp_path):
    own = '[[backbones]]\nname = "scratch"\nlabel = "fast"\npreset = "fast"\ntokenizers = ["vit-vq", "clip-vq"]\n'
    throughput = load_benchmark(benchmark(tmp_path, SCRATCH + own + "batch = 64\nrepeats = 2\n", track="throughput",
                                          extra="batch = 4"))  # fmt: skip
    found = [(c.id, c.preset, c.tokenizer, c.batch, c.repeats) for c in cells(throughput)]
    assert found == [
        ("Pong-scratch-vqvae", "smoke", "vqvae", 4, None),
        ("Pong-fast-vit-vq", "fast", "vit-vq", 64, 2),
        ("Pong-fast-clip-vq", "fast", "clip-vq", 64, 2),
    ]
    argv = Sweep(throughput, tmp_path / "tp", 1).argv(cells(throughput)[1], "run")
    options = {argv[i]: argv[i + 1] for i in range(3, len(argv) - 1) if argv[i].startswith("--")}
    assert (options["--preset"], options["--tokenizer"], options["--batch"], options["--repeats"]) == (
        "fast",
        "vit-vq",
        "64",
        "2",
    )
    assert "--repeats" not in Sweep(throughput, tmp_path / "tp", 1).argv(cells(throughput)[0], "run")
    # An agent file's entry may take its own preset too; its definition leaves out what no entry sets.
    agent = load_benchmark(
        benchmark(tmp_path, SCRATCH + '[[backbones]]\nname = "scratch"\nlabel = "b"\npreset = "fast"\n')
    )
    assert [c.preset for c in cells(agent)] == ["smoke", "fast"]
    assert agent.definition()["backbones"][0] == {"name": "scratch", "label": "scratch", "overrides": []}
    assert "repeats" not in agent.definition()


TOP = {"name": '"t"', "track": '"agent"', "preset": '"smoke"', "games": '["Pong"]', "seeds": "[0]"}


@pytest.mark.parametrize(
    "top, backbones, message",
    [
        (
            {},
            '[[backbones]]\nname = "scrach"\n',
            r"backbones\[0\]: unknown backbone 'scrach' \(did you mean 'scratch'\?\)",
        ),
        ({"games": '["Pongg"]'}, SCRATCH, r"unknown game 'Pongg' \(did you mean 'Pong'\?\)"),
        ({"colour": '"red"'}, SCRATCH, r"unknown key 'colour'"),
        (
            {},
            '[[backbones]]\nname = "scratch"\nsett = []\n',
            r"backbones\[0\]: unknown key 'sett' \(did you mean 'set'\?\)",
        ),
        (
            {},
            '[[backbones]]\nname = "scratch"\nset = ["world_model.num_layer=2"]\n',
            r"backbones\[0\] \(scratch\): unknown config key 'world_model.num_layer'",
        ),
        ({}, '[[backbones]]\nname = "scratch"\nset = ["training.epochs=\\"many\\""]\n', r"training.epochs must be int"),
        ({}, SCRATCH * 2, r"same label"),
        ({"seeds": '["zero"]'}, SCRATCH, r"'seeds' must be a non-empty list of ints"),
        ({"track": '"speed"'}, SCRATCH, r"unknown track 'speed'"),
        ({"preset": '"iriss"'}, SCRATCH, r"unknown preset 'iriss' \(did you mean 'iris'\?\)"),
        ({"tokenizers": '["vqvea"]'}, SCRATCH, r"unknown tokenizer 'vqvea'"),
        ({"batch": "4"}, SCRATCH, r"'batch' is a positive integer of the throughput track only"),
        (
            {},
            SCRATCH + "repeats = 2\n",
            r"backbones\[0\]: 'repeats' is a positive integer of the throughput track only",
        ),
        ({}, SCRATCH + 'preset = "iriss"\n', r"backbones\[0\]: unknown preset 'iriss'"),
        ({}, SCRATCH + 'tokenizers = ["vqvea"]\n', r"unknown tokenizer 'vqvea'"),
        ({}, "", r"'backbones' must be a non-empty array of tables"),
    ],
)
def test_bad_benchmark_names_file_and_entry(tmp_path, top, backbones, message):
    text = "".join(f"{k} = {v}\n" for k, v in {**TOP, **top}.items()) + backbones
    path = write(tmp_path / "bad.toml", text)
    with pytest.raises(WmbenchError, match=message) as error:
        load_benchmark(path)
    assert str(path) in str(error.value)


def test_world_model_budgets_checked_before_running(tmp_path):
    path = benchmark(tmp_path, SCRATCH, track="world-model", more=("world_model_track.budgets=[60, 30]",))
    with pytest.raises(
        WmbenchError, match=r"backbones\[0\] \(scratch\): world_model_track.budgets must be increasing positive"
    ):
        load_benchmark(path)


def test_broken_or_missing_file(tmp_path):
    with pytest.raises(WmbenchError, match="does not exist"):
        load_benchmark(tmp_path / "nope.toml")
    with pytest.raises(WmbenchError, match="not valid TOML"):
        load_benchmark(write(tmp_path / "x.toml", "name = \n"))
    result = CliRunner().invoke(cli, ["sweep", str(tmp_path / "x.toml"), "--out", str(tmp_path / "out")])
    assert (
        result.exit_code == 2
        and result.output.startswith("wmbench: error:")
        and len(result.output.strip().splitlines()) == 1
    )
    assert not (tmp_path / "out").exists()


def test_plan_skips_finished_and_resumes_checkpointed(tmp_path):
    bench = load_benchmark(benchmark(tmp_path, SCRATCH, games='["Pong", "Breakout", "Boxing"]'))
    sweep = Sweep(bench, tmp_path / "out", 1)
    pong, breakout, _ = cells(bench)
    (sweep.folder(pong)).mkdir(parents=True)
    (sweep.folder(pong) / "summary.json").write_text("{}")
    (sweep.folder(breakout) / "checkpoints").mkdir(parents=True)
    (sweep.folder(breakout) / "checkpoints" / "last.pt").write_bytes(b"")
    assert [a for _, a in sweep.plan()] == ["skip", "resume", "run"]
    result = CliRunner().invoke(cli, ["sweep", str(bench.path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 2 and "holds no sweep" in result.output  # a folder the sweep did not make


def test_dry_run_writes_nothing(tmp_path):
    path = benchmark(tmp_path, SCRATCH + BROKEN)
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert (
        len(lines) == 2
        and lines[0].startswith("Pong-scratch-vqvae-s0  [run]")
        and "world_model.num_heads=3" in lines[1]
    )
    assert not (tmp_path / "out").exists()


def _finished_and_broken(tmp_path: Path):
    """A sweep folder whose first cell finished earlier; its second cell fails when run."""
    bench = load_benchmark(benchmark(tmp_path, SCRATCH + BROKEN))
    out = tmp_path / "out"
    finished = Sweep(bench, out, 1).folder(cells(bench)[0])
    finished.mkdir(parents=True)
    (finished / "summary.json").write_text('{"made": "earlier"}')
    # A sweep folder holds its benchmark record: make the folder as a sweep would, then run.
    out.joinpath("benchmark.json").write_text(json.dumps({"file": str(bench.path), "definition": bench.definition()}))
    return bench, out, finished


def test_failure_isolated_finished_cell_skipped_and_index(tmp_path):
    """A finished cell is skipped; a cell that fails at run time is recorded with its log and command, and the
    exit code is 1; the next sweep (quiet: no line per cell) runs the failed cell again from the start."""
    bench, out, finished = _finished_and_broken(tmp_path)
    for quiet in ([], ["--quiet"]):  # --quiet: no line per cell, the last line still
        result = CliRunner().invoke(cli, ["sweep", str(bench.path), "--out", str(out), "--jobs", "2", *quiet])
        assert result.exit_code == 1, result.output
        assert "1 of 2 cells finished" in result.output
        assert ("[1/1] Pong-broken-vqvae-s0 FAILED (exit 2)" in result.output) != bool(quiet)
        index = json.loads((out / "index.json").read_text())
        rows = {r["id"]: r for r in index["cells"]}
        assert (
            rows["Pong-scratch-vqvae-s0"]["status"] == "finished" and rows["Pong-scratch-vqvae-s0"]["action"] == "skip"
        )
        broken = rows["Pong-broken-vqvae-s0"]
        assert broken["status"] == "failed" and broken["action"] == "run" and broken["returncode"] == 2
        assert "embed_dim (64) must be divisible by num_heads (3)" in broken["error"]
        assert "world_model.num_heads=3" in broken["command"] and broken["command"].startswith("OMP_NUM_THREADS=")
        log = Path(broken["log"])
        assert log.parent == out / "cells" / "Pong-broken-vqvae-s0" and "must be divisible" in log.read_text()
        assert log.read_text().count("$ OMP_NUM_THREADS") == 1  # the failed attempt's folder was started afresh
        assert (finished / "summary.json").read_text() == '{"made": "earlier"}'
    csv_lines = (out / "index.csv").read_text().splitlines()
    assert csv_lines[0].startswith("id,status,action") and len(csv_lines) == 3
    assert not (out / "logs").exists()


def test_the_progress_bar_counts_cells_over_running_queued_and_failed(tmp_path):
    class Recorded(Progress):  # the real bars, and what the sweep showed on them
        shown: list = []

        @contextmanager
        def counter(self, description, total):
            with super().counter(description, total) as update:
                yield lambda done, note: (self.shown.append((total, done, note)), update(done, note))

    bench, out, _ = _finished_and_broken(tmp_path)
    with Recorded(enabled=True) as progress:
        rows = Sweep(bench, out, 1, progress=progress).run()
    assert [r["status"] for r in rows] == ["finished", "failed"]
    assert progress.shown[0] == (1, 0, "0 running, 1 queued")  # the finished cell is not counted
    assert progress.shown[-1] == (1, 1, "0 running, 1 failed")


def test_another_benchmark_folder_is_refused(tmp_path):
    bench = load_benchmark(benchmark(tmp_path, SCRATCH))
    out = tmp_path / "out"
    out.mkdir()
    other = {**bench.definition(), "seeds": [7]}
    out.joinpath("benchmark.json").write_text(json.dumps({"file": "other.toml", "definition": other}))
    result = CliRunner().invoke(cli, ["sweep", str(bench.path), "--out", str(out)])
    assert result.exit_code == 2 and "made for another benchmark definition (other.toml" in result.output
    assert sorted(p.name for p in out.iterdir()) == ["benchmark.json"]


@pytest.mark.slow
def test_sweep_end_to_end_resumes(tmp_path):
    """Two real tiny cells and a failing one with --jobs 2; rerunning skips the finished cells untouched."""
    bench = benchmark(tmp_path, SCRATCH + BROKEN, games='["Pong", "Breakout"]')
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["sweep", str(bench), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 1, result.output
    rows = {r["id"]: r for r in json.loads((out / "index.json").read_text())["cells"]}
    done = [i for i, r in rows.items() if r["status"] == "finished"]
    assert sorted(done) == ["Breakout-scratch-vqvae-s0", "Pong-scratch-vqvae-s0"]
    summaries = {i: (out / "cells" / i / "summary.json") for i in done}
    stamps = {i: p.stat().st_mtime_ns for i, p in summaries.items()}
    assert all(json.loads(p.read_text())["env_steps"] == 80 for p in summaries.values())
    assert all((out / "cells" / i / "log.txt").is_file() for i in rows)
    result = CliRunner().invoke(cli, ["sweep", str(bench), "--out", str(out), "--jobs", "2"])
    assert result.exit_code == 1 and "2 finished already" in result.output
    again = {r["id"]: r for r in json.loads((out / "index.json").read_text())["cells"]}
    assert all(again[i]["action"] == "skip" and again[i]["duration_s"] == rows[i]["duration_s"] for i in done)
    assert {i: p.stat().st_mtime_ns for i, p in summaries.items()} == stamps
