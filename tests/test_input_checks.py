"""Every input checked before anything is written: the defects a new user met, each one line and exit code 2 now
(seeds out of range, overflows, a zero vocabulary, an --out that cannot be made, booleans given for numbers, ...),
``run --dry-run``, ``--debug``, and what summary.json says of the plugins that built the run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest
from click.testing import CliRunner

from wmbench import config as cfg
from wmbench.cli import cli
from wmbench.errors import WmbenchError


@pytest.mark.parametrize(
    "args, message",
    [
        (["--seed", "-1"], "Invalid value for '--seed' / '-s': -1 is not in the range 0<=x<=4294967295."),
        (["--seed", "99999999999999999999999"], "is not in the range 0<=x<=4294967295"),
        (["--set", "tokenizer.vocab_size=0"], "tokenizer.vocab_size must be above zero, got 0"),
        (["--set", "training.epochs=true"], "training.epochs must be int, got True"),
        (["--set", "training.tokenizer.lr=true"], "training.tokenizer.lr must be float, got True"),
        (
            ["--set", "training.epochs=99999999999999999999"],
            "training.epochs must be between -2,147,483,647 and 2,147,483,647",
        ),
        (["--set", "world_model.max_blocks=99999999999999999999"], "world_model.max_blocks must be between"),
        (["--set", "training.tokenizer.lr=NaN"], "training.tokenizer.lr must be a finite number, got nan"),
        (["--set", "world_model.dropout=1.5"], "world_model.dropout must be at least 0 and below 1, got 1.5"),
        (["--set", "training.actor_critic.gamma=-0.1"], "training.actor_critic.gamma must be between 0 and 1"),
        (["--set", "env.noop_max=-1"], "env.noop_max must be zero or more, got -1"),
        (["--set", "training.collect.stop_after_epoch=0"], "training.collect.stop_after_epoch must be above zero"),
        (["--set", "actor_critic.channels=[8,0]"], "actor_critic.channels must be above zero, got [8, 0]"),
        (["--set", "actor_critic.channels=[4,4,4,4,4,4]"], "env.size=32 is too small for them (at least 64)"),
        (["--set", "training.sampling_weights=[0,0]"], "training.sampling_weights must have a positive sum"),
        (["--set", 'device="tpu"'], "device must be auto, cpu, cuda or cuda:N, got 'tpu'"),
        (["--set", "env.size=30"], "vqvae: frame size 30 is not divisible by"),
        (["--set", "world_model.num_heads=3"], "must be divisible by num_heads (3)"),
        (["--out", "/proc/x/run"], "cannot create run folder /proc/x/run"),
    ],
)
def test_bad_input_is_one_line_and_nothing_is_written(tmp_path, args, message):
    out = ["--out", str(tmp_path / "run")] if "--out" not in args else []
    result = CliRunner().invoke(cli, ["run", "--game", "Catcher", *out, *args])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.output
    (line,) = result.output.splitlines()
    assert line.startswith("wmbench: error: ") and message in line, line
    assert list(tmp_path.iterdir()) == []


def test_dry_run_checks_and_writes_nothing(tmp_path):
    result = CliRunner().invoke(cli, ["run", "--game", "Catcher", "--out", str(tmp_path / "run"), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("checked: Catcher, backbone scratch, tokenizer vqvae, preset smoke, seed 0")
    assert list(tmp_path.iterdir()) == []


@dataclass(frozen=True)
class Options:
    mode: Literal["full", "frozen"] = "full"
    width: int = 8


@dataclass(frozen=True)
class NoDefault:
    width: int


@dataclass(frozen=True)
class BadDefault:
    mode: Literal["full", "frozen"] = "half"  # type: ignore[assignment]


def test_literal_options_and_options_without_defaults(registry):
    from wmbench.config import build_dataclass
    from wmbench.plugins import Register, Registry, plugin_manager

    with pytest.raises(WmbenchError, match=r"backbone.mode must be one of 'full', 'frozen', got 'half'"):
        build_dataclass(Options, {"mode": "half"}, "backbone")
    assert build_dataclass(Options, {"mode": "frozen"}, "backbone").mode == "frozen"
    register = Register(Registry(*plugin_manager()), "backbone", "mine")
    with pytest.raises(
        WmbenchError, match=r"options of backbone 'mine': every field needs a default \(width has none\)"
    ):
        register("mine", print, options=NoDefault)
    with pytest.raises(WmbenchError, match=r"the default of backbone.mode must be one of 'full', 'frozen', got 'half'"):
        register("mine", print, options=BadDefault)
    with pytest.raises(WmbenchError, match=r"backbone name '../mine' must be letters, digits"):
        register("../mine", print, options=Options)


def test_seeds_at_the_limits_resolve(registry):
    assert cfg.resolve("smoke", "Catcher", 2**32 - 1, "vqvae", "scratch", [], registry).seed == 2**32 - 1
    with pytest.raises(WmbenchError, match="seed must be between 0 and 4,294,967,295, got -1"):
        cfg.resolve("smoke", "Catcher", -1, "vqvae", "scratch", [], registry)


def test_the_integer_limit_is_for_integers(registry):
    """A float far beyond any int (a grad clip of 1e10: clipping off) is a float's business, finite is enough."""
    sets = ["training.world_model.grad_clip=1e10", "world_model_track.target_loss=3e9"]
    config = cfg.resolve("smoke", "Catcher", 0, "vqvae", "scratch", sets, registry)
    assert (config.training.world_model.grad_clip, config.world_model_track.target_loss) == (1e10, 3e9)


def test_debug_shows_the_traceback_of_a_one_line_error(monkeypatch):
    args = ["run", "--game", "Catcher", "--set", "tokenizer.vocab_size=0"]
    for extra, env, traced in (([], "", False), (["--debug"], "", True), ([], "1", True)):
        monkeypatch.setenv("WMBENCH_DEBUG", env)
        result = CliRunner().invoke(cli, [*extra, *args])
        assert result.exit_code == 2 and result.stderr.splitlines()[-1].startswith(
            "wmbench: error: tokenizer.vocab_size"
        )
        assert ("Traceback (most recent call last)" in result.stderr) == traced, result.stderr
        assert ('build.py", line' in result.stderr) == traced
