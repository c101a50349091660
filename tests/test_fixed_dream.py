"""Imagination with fixed shapes computes what the eager imagination computes: the same tokens, rewards, ends and
frames from the same weights and generator (sequential and parallel prediction, fp32 and bf16 autocast, scratch and
the llm backbones), the same rollouts for the actor-critic; the sampler draws what torch.multinomial draws; on CUDA
(the ``gpu`` tests, skipped without one) the steps captured in CUDA graphs replay the same samples, and a rollout
never waits for the device."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.fixed_dream import FixedDreamEnv
from wmbench.engine.imagination import DreamEnv, imagine, sample
from wmbench.errors import WmbenchError

LLM = ["backbone.model=tiny-llama", "backbone.pretrained=false"]
SETUPS = [
    ("scratch", []),
    ("scratch", ["world_model.parallel=true"]),
    pytest.param("llm-lora", LLM, marks=pytest.mark.slow),
    pytest.param("llm-full", ["backbone.model=tiny-gpt2", "backbone.pretrained=false", "world_model.parallel=true"],
                 marks=pytest.mark.slow),
]  # fmt: skip
"""max_blocks=4 below: 3 steps fit before the cache is rebuilt (2 with parallel prediction's queries)."""


def make_agent(registry, backbone="scratch", overrides=(), device="cpu"):
    overrides = ["world_model.max_blocks=4", "training.actor_critic.fixed_shape=true", *overrides]
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", backbone, overrides, registry)
    torch.manual_seed(0)
    agent = build_agent(config, registry, num_actions=6).to(device).eval()
    with torch.no_grad():  # trained adapters, not LoRA's zero start: the merged rollout weights must carry them
        for name, p in agent.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return agent


def drive(dream, frames, actions, generator_seed=2):
    """Every output of a reset and of ``actions`` steps (the last one without observing), then again from a reset:
    reset frames, and per step frames, rewards, ends and the frame's tokens."""
    dream.generator.manual_seed(generator_seed)
    out = []
    for _ in range(2):  # the second time over the first's buffers (and graphs)
        out.append(dream.reset(frames))
        for i, action in enumerate(actions):
            observe = i < len(actions) - 1
            frame, rewards, ends = dream.step(action, decode=i % 3 != 1, observe=observe)
            out += [frame, rewards, ends, dream.obs_tokens.clone() if observe else None]
    return out


def assert_same(got, expected):
    for i, (a, b) in enumerate(zip(got, expected, strict=True)):
        if a is None or b is None:
            assert a is None and b is None, f"output {i}"
        elif a.is_floating_point():
            torch.testing.assert_close(a, b, msg=f"output {i}")
        else:
            assert torch.equal(a, b), f"output {i} differs"


def test_sample_draws_what_multinomial_draws():
    generator, again = torch.Generator(), torch.Generator()
    for shape in [(5, 7), (3, 4, 512), (64, 3), (2, 16, 64)]:
        logits = torch.randn(*shape) * 3
        generator.manual_seed(1)
        again.manual_seed(1)
        probs = torch.softmax(logits, dim=-1)
        expected = torch.multinomial(probs.reshape(-1, shape[-1]), 1, generator=again).view(shape[:-1])
        assert torch.equal(sample(logits, generator), expected)
        assert torch.equal(generator.get_state(), again.get_state()), "the generator advanced differently"


@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize("backbone, overrides", SETUPS)
def test_fixed_shape_imagination_equals_the_eager(registry, backbone, overrides, bf16):
    agent = make_agent(registry, backbone, overrides)
    frames = torch.rand(3, 3, 32, 32)
    actions = torch.randint(6, (8, 3), generator=torch.Generator().manual_seed(1))  # two rebuilds
    results = []
    for env in (DreamEnv, partial(FixedDreamEnv, whole=False), partial(FixedDreamEnv, whole=True)):
        dream = env(agent.tokenizer, agent.world_model, torch.Generator())
        with agent.world_model.transformer.rollout(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
            results.append(drive(dream, frames, actions))
    assert_same(results[1], results[0])  # attending over what is filled, as on a CPU
    assert_same(results[2], results[0])  # over the whole cache, as captured graphs do


def test_rollouts_for_the_actor_critic_are_the_same(registry):
    agent = make_agent(registry)
    agent.actor_critic.train()
    frames, mask = torch.rand(4, 3, 3, 32, 32), torch.ones(4, 3, dtype=torch.bool)
    rollouts = []
    for env in (DreamEnv, FixedDreamEnv):
        torch.manual_seed(3)
        dream = env(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(4))
        rollouts.append(imagine(agent.actor_critic, dream, frames, mask, horizon=5))
    for name in ("frames", "actions", "logits", "values", "rewards", "ends"):
        torch.testing.assert_close(getattr(rollouts[1], name), getattr(rollouts[0], name), msg=name)


def test_a_finished_rollout_must_reset_first(registry):
    agent = make_agent(registry)
    dream = FixedDreamEnv(agent.tokenizer, agent.world_model, torch.Generator())
    dream.reset(torch.rand(2, 3, 32, 32))
    dream.step(torch.tensor([0, 1]), observe=False)
    with pytest.raises(RuntimeError, match="reset it first"):
        dream.step(torch.tensor([0, 1]))


def test_capture_is_refused_off_cuda(registry):
    agent = make_agent(registry)
    with pytest.raises(ValueError, match="CUDA device only"):
        FixedDreamEnv(agent.tokenizer, agent.world_model, capture=True)
    assert not FixedDreamEnv(agent.tokenizer, agent.world_model).whole  # on a CPU, attention reads what is filled


def test_a_backbone_without_a_fixed_shape_cache_is_refused_in_one_line(registry):
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "vit", ["training.actor_critic.fixed_shape=true"], registry)
    with pytest.raises(WmbenchError, match="fixed_shape needs a backbone with a fixed-shape cache; 'vit'"):
        build_agent(config, registry, num_actions=6)


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("bf16", [False, True])
@pytest.mark.parametrize(
    "backbone, overrides", [*SETUPS[:2], ("llm-lora", LLM), ("llm-lora", [*LLM, "world_model.parallel=true"])]
)
def test_steps_captured_in_cuda_graphs_replay_the_same_samples(registry, backbone, overrides, bf16):
    """On CUDA: the captured steps give what the same fixed-shape steps (over the whole cache) give uncaptured, and (in
    fp32) what the eager env gives; no step reads anything back to the host (torch's sync debug mode turns any such
    read into an error)."""
    agent = make_agent(registry, backbone, overrides, device="cuda")
    frames = torch.rand(3, 3, 32, 32, device="cuda")
    actions = torch.randint(6, (8, 3), generator=torch.Generator().manual_seed(1)).cuda()
    results = {}
    for name, env, capture in (("eager", DreamEnv, None), ("fixed", FixedDreamEnv, False),
                               ("captured", FixedDreamEnv, True)):  # fmt: skip
        kwargs = {} if capture is None else {"capture": capture, "whole": True}
        dream = env(agent.tokenizer, agent.world_model, torch.Generator(device="cuda"), **kwargs)
        with agent.world_model.transformer.rollout(), torch.autocast("cuda", torch.bfloat16, enabled=bf16):
            if capture is not None:
                drive(dream, frames, actions)  # captures every graph, outside the sync check (allocations sync)
            torch.cuda.set_sync_debug_mode("error" if capture is not None else "default")
            try:
                results[name] = drive(dream, frames, actions[:4], generator_seed=5)  # replays
            finally:
                torch.cuda.set_sync_debug_mode("default")
    assert_same(results["captured"], results["fixed"])  # the same kernels
    if not bf16:  # (in bf16, attending over the whole cache rounds differently: a near tie may sample otherwise)
        assert_same(results["captured"], results["eager"])


@pytest.mark.gpu
@cuda
def test_a_captured_rollout_trains_the_actor_critic_as_the_eager(registry):
    agent = make_agent(registry, device="cuda")
    agent.actor_critic.train()
    frames = torch.rand(4, 3, 3, 32, 32, device="cuda")
    mask = torch.ones(4, 3, dtype=torch.bool, device="cuda")
    rollouts = []
    for env in (DreamEnv, FixedDreamEnv):
        dream = env(agent.tokenizer, agent.world_model, torch.Generator(device="cuda"))
        for seed in (4, 5):  # the second rollout replays the graphs the first captured
            dream.generator.manual_seed(seed)
            torch.manual_seed(3)
            rollout = imagine(agent.actor_critic, dream, frames, mask, horizon=5)
        rollouts.append(rollout)
    for name in ("frames", "actions", "logits", "values", "rewards", "ends"):
        torch.testing.assert_close(getattr(rollouts[1], name), getattr(rollouts[0], name), msg=name)
