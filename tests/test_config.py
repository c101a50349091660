"""Presets, overrides and their errors."""

import dataclasses

import pytest

from wmbench import config as cfg
from wmbench.errors import WmbenchError


def test_iris_preset_is_the_paper(registry):
    c = cfg.resolve("iris", "Breakout", 0, "vqvae", "scratch", [], registry)
    assert (c.world_model.num_layers, c.world_model.num_heads, c.world_model.embed_dim) == (10, 4, 256)
    assert c.world_model.max_blocks == 20 and c.world_model.dropout == 0.1
    t = c.training
    assert (t.epochs, t.collect.steps_per_epoch, t.collect.stop_after_epoch) == (600, 200, 500)
    assert (t.tokenizer.batch_size, t.tokenizer.start_after_epochs) == (256, 5)
    assert (t.world_model.batch_size, t.world_model.start_after_epochs, t.world_model.weight_decay) == (64, 25, 0.01)
    a = t.actor_critic
    assert (a.batch_size, a.start_after_epochs, a.burn_in, a.horizon, a.gamma, a.lambda_, a.entropy_weight) == (
        64,
        50,
        20,
        20,
        0.995,
        0.95,
        0.001,
    )
    assert (c.eval.every, c.eval.episodes, c.eval.num_envs, c.eval.temperature, c.eval.final_episodes) == (
        5,
        16,
        8,
        0.5,
        100,
    )
    assert c.tokenizer.options.vocab_size == 512 and c.tokenizer.options.ch_mult == (1, 1, 1, 1, 1)


def test_fork_preset(registry):
    c = cfg.resolve("fork", "Pong", 0, "vqvae", "scratch", [], registry)
    assert c.world_model.max_blocks == 10
    assert c.training.world_model.batch_size == 8
    assert c.training.actor_critic.steps_per_epoch == 20


def test_preset_on_a_base_preset(registry):
    smoke = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [], registry)
    llm = cfg.resolve("smoke-llm", "Pong", 0, "vqvae", "scratch", [], registry)
    assert llm.training.world_model.batch_size == 4 and llm.training.epochs == 6  # its own
    assert llm.env == smoke.env and llm.world_model == smoke.world_model and llm.tokenizer == smoke.tokenizer  # smoke's


def test_overrides_and_round_trip(registry):
    c = cfg.resolve(
        "smoke",
        "Pong",
        3,
        "vqvae",
        "scratch",
        ["world_model.num_layers=4", "tokenizer.ch=8", "training.sampling_weights=[]", "bf16=true"],
        registry,
    )
    assert c.world_model.num_layers == 4 and c.tokenizer.options.ch == 8 and c.bf16 is True
    assert c.training.sampling_weights == ()
    assert cfg.from_dict(cfg.to_dict(c), registry) == c
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.world_model.num_layers = 2


@pytest.mark.parametrize(
    "override, message",
    [
        ("world_model.num_layer=4", "did you mean 'num_layers'"),
        ("world_modle.num_layers=4", "did you mean 'world_model'"),
        ("world_model.num_layers=four", "must be int"),
        ("world_model.num_layers=2.5", "must be int"),
        ("tokenizer.chh=3", "did you mean 'ch'"),
        ("bf16=3", "must be bool"),
        ("world_model", "KEY=VALUE"),
        ("seed=3", "set by its own option"),
        ("training.epochs=0", "training.epochs must be above zero, got 0"),
        ("eval.num_envs=-2", "eval.num_envs must be above zero"),
    ],
)
def test_bad_overrides(registry, override, message):
    with pytest.raises(WmbenchError, match=message):
        cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [override], registry)


def test_unknown_names(registry):
    with pytest.raises(WmbenchError, match="unknown preset 'smoek' \\(did you mean 'smoke'\\?\\)"):
        cfg.resolve("smoek", "Pong", 0, "vqvae", "scratch", [], registry)
    with pytest.raises(WmbenchError, match="unknown backbone 'scrach' \\(did you mean 'scratch'\\?\\)"):
        cfg.resolve("smoke", "Pong", 0, "vqvae", "scrach", [], registry)
    with pytest.raises(WmbenchError, match="unknown tokenizer 'vqvea'"):
        cfg.resolve("smoke", "Pong", 0, "vqvea", "scratch", [], registry)
