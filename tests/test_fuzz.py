"""Nothing let in, properties over inputs (hypothesis): whatever ``--set`` values, seeds and benchmark files a user
writes, wmbench answers with exit code 0 or 2, never a traceback, one line on exit 2, and writes nothing then.

Examples stay cheap: ``wmbench run --dry-run`` builds the agent and envs (every check a run makes before it writes)
and stops; ``wmbench sweep --dry-run`` checks a benchmark file whole. Integers are drawn small (up to 40, a cheap
model) or beyond every limit, never in between, so that no example builds a model the size of memory.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.plugins import registry

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _keys(cls: type, prefix: str = "") -> list[str]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _keys(kind, f"{prefix}{f.name}.")
        elif f.name not in ("preset", "game", "seed", "tokenizer", "backbone"):
            out.append(prefix + f.name)
    return out


KEYS = _keys(cfg.RunConfig) + [
    f"tokenizer.{f.name}" for f in dataclasses.fields(registry().get("tokenizer", "vqvae").options)
]
"""Every config key, the vqvae tokenizer's options, and a few that do not exist."""
KEYS += ["nope", "world_model.nope", "training.collect", "env.size.deeper", "backbone.nope", "seed", "meta.x"]

small = st.integers(-3, 40)
beyond = st.sampled_from([2**31, 2**32, -(2**31) - 5, 10**30])
numbers = st.one_of(small, beyond, st.floats(allow_nan=True, allow_infinity=True), st.booleans())
json_values = st.one_of(
    numbers, st.none(), st.text(max_size=8), st.lists(st.integers(-1, 4), max_size=5), st.lists(st.text(max_size=3))
)
texts = st.one_of(json_values.map(lambda v: json.dumps(v, allow_nan=True)), st.text(max_size=12))
"""What follows ``KEY=`` on the command line: JSON of every kind (NaN and Infinity included) or any text."""
overrides = st.lists(st.tuples(st.sampled_from(KEYS), texts).map(lambda kv: f"{kv[0]}={kv[1]}"), max_size=3)


def _one_line_or_success(result) -> None:
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    assert result.exit_code in (0, 2), (result.exit_code, result.output)
    event(f"exit {result.exit_code}")
    if result.exit_code == 2:
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("wmbench: error: "), result.output


@FUZZ
@given(sets=overrides, seed=st.one_of(st.integers(-5, 5), st.integers(2**32 - 2, 2**32 + 2), beyond))
def test_run_options_and_config_values_are_checked_before_anything_is_written(tmp_path_factory, sets, seed):
    root = tmp_path_factory.mktemp("fuzz")
    out = root / "run"
    args = ["run", "--dry-run", "--game", "Catcher", "--seed", str(seed), "--out", str(out)]
    result = CliRunner().invoke(cli, [*args, *(a for s in sets for a in ("--set", s))], catch_exceptions=True)
    _one_line_or_success(result)
    assert list(root.iterdir()) == []  # nothing written, whatever the answer


# Benchmark files ---------------------------------------------------------------------------------------------------


def _toml(value) -> str:
    """A value as TOML (strings as JSON escapes them, which TOML reads alike)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if isinstance(value, (int, float, str)):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise TypeError(value)


names = st.one_of(
    st.sampled_from(["Pong", "Catcher", "scratch", "vqvae", "agent", "world-model", "smoke", "cpu", "x"]),
    st.sampled_from(["../escape", "/abs/path", "a/b", "..", ".", "a b", "$(touch PWNED)", "; touch PWNED", ""]),
    st.text(max_size=6),
)
scalars = st.one_of(names, small, beyond, st.floats(allow_nan=True, allow_infinity=True), st.booleans())
backbones = st.lists(
    st.dictionaries(
        st.sampled_from(["name", "label", "set", "other"]), st.one_of(names, st.lists(texts, max_size=2)), max_size=3
    ),  # fmt: skip
    max_size=3,
).map(lambda entries: [{**{"name": "scratch"}, **e} for e in entries])


def mostly(valid, wild):
    """Valid values half of the time (so that files get past their first error), anything else the other half."""
    return st.one_of(valid, wild)


fields = {
    "name": names, "track": mostly(st.just("agent"), names), "preset": mostly(st.just("smoke"), names),
    "games": mostly(st.just(["Catcher"]), st.lists(names, max_size=3)),
    "seeds": mostly(st.lists(st.integers(0, 3), min_size=1, max_size=2, unique=True), st.lists(st.one_of(small, beyond), max_size=3)),
    "tokenizers": mostly(st.just(["vqvae"]), st.lists(names, max_size=2)),
    "device": mostly(st.sampled_from(["cpu", "auto"]), names), "batch": scalars, "description": names,
    "backbones": mostly(st.lists(st.sampled_from(["a", "b.2", "c_3"]), min_size=1, max_size=2, unique=True).map(
        lambda labels: [{"name": "scratch", "label": label} for label in labels]), backbones),
    "set": mostly(st.just(["training.epochs=2"]), st.lists(st.tuples(st.sampled_from(KEYS[:40]), texts).map("=".join), max_size=2)),
    "executor": mostly(st.just({"name": "local"}), st.dictionaries(st.sampled_from(["name", "threads", "partition", "setup"]), scalars, max_size=2)),
    "bogus": scalars,
}  # fmt: skip
base = {"name": "fuzz", "track": "agent", "preset": "smoke", "games": ["Catcher"], "backbones": [{"name": "scratch"}]}
benchmarks = st.fixed_dictionaries({}, optional=fields).map(lambda drawn: {**base, **drawn})


@settings(FUZZ, max_examples=200)
@given(data=benchmarks, garbage=st.one_of(st.none(), st.binary(max_size=40)))
def test_benchmark_files_are_checked_whole_and_cells_stay_in_the_sweep_folder(tmp_path_factory, data, garbage):
    root = tmp_path_factory.mktemp("fuzz")
    path = root / "bench.toml"
    if garbage is None:
        path.write_text("".join(f"{k} = {_toml(v)}\n" for k, v in data.items()))
    else:
        path.write_bytes(garbage)
    out = root / "sweep"
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(out), "--dry-run"], catch_exceptions=True)
    _one_line_or_success(result)
    assert sorted(p.name for p in root.iterdir()) == ["bench.toml"]  # nothing written
    if result.exit_code == 0:  # every cell's folder is a direct child of OUT/cells, named by its id
        for line in result.output.splitlines():
            if "--out" in line.split():
                words = line.split()
                folder = words[words.index("--out") + 1]
                assert (
                    folder.startswith(str(out.absolute() / "cells") + "/") and "/" not in folder.split("cells/", 1)[1]
                )


@pytest.mark.parametrize("label", ["../escape", "/abs", "a/b", "..", ".", "a b", "x;y", "$(touch PWNED)"])
def test_labels_that_would_leave_the_sweep_folder_are_refused(tmp_path, label):
    path = tmp_path / "b.toml"
    path.write_text(f'{_toml_base()}\n[[backbones]]\nname = "scratch"\nlabel = {json.dumps(label)}\n')
    result = CliRunner().invoke(cli, ["sweep", str(path), "--out", str(tmp_path / "out"), "--dry-run"])
    assert result.exit_code == 2 and "'label' must be letters, digits" in result.output
    assert not (tmp_path / "out").exists() and not (tmp_path / "PWNED").exists()


def _toml_base() -> str:
    return 'name = "b"\ntrack = "agent"\npreset = "smoke"\ngames = ["Catcher"]'
