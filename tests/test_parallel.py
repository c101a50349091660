"""Parallel frame prediction: the training layout's mask, imagination's queries equal to the training forward's on the
same context for every built-in backbone family, one backbone call per imagined frame, and training through it."""

from __future__ import annotations

import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.imagination import DreamEnv, imagine
from wmbench.engine.world_model import parallel_layout

BACKBONES = [
    ("scratch", []),
    ("llm-lora", ["backbone.model=tiny-llama", "backbone.pretrained=false"]),
    ("llm-full", ["backbone.model=tiny-gpt2", "backbone.pretrained=false"]),
    ("vit", []),
    ("clip", []),
]
"""One backbone of each family that declares the capability (the tiny catalogue LLMs need no files)."""


def parallel_agent(registry, backbone="scratch", overrides=(), blocks=4):
    config = cfg.resolve(
        "smoke",
        "Pong",
        0,
        "vqvae",
        backbone,
        ["world_model.parallel=true", f"world_model.max_blocks={blocks}", *overrides],
        registry,
    )
    torch.manual_seed(0)
    return build_agent(config, registry, num_actions=6)


def test_layout_hides_every_query_from_the_real_sequence():
    k, blocks = 2, 3
    is_query, positions, mask = parallel_layout(blocks, k)
    # Blocks 0 and 1 are frame, action, queries; the last block has no queries (there is no frame after it).
    assert is_query.tolist() == [False] * 3 + [True] * 2 + [False] * 3 + [True] * 2 + [False] * 3
    assert positions.tolist() == [0, 1, 2, 3, 4, 3, 4, 5, 6, 7, 6, 7, 8]  # a query sits where its token will
    assert not mask[~is_query][:, is_query].any(), "a real token sees a query"
    real = ~is_query
    index = torch.arange(len(is_query))
    assert torch.equal(mask[real][:, real], (index[real][None] <= index[real][:, None])), "real tokens: causal"
    # The first block's queries see its frame and action, and each other causally; nothing of later blocks.
    assert mask[3].tolist() == [True] * 4 + [False] * 9
    assert mask[4].tolist() == [True] * 5 + [False] * 8


@pytest.mark.parametrize("backbone, overrides", BACKBONES)
def test_queries_in_imagination_equal_the_training_forward(registry, backbone, overrides):
    """Teacher-forced on real frames, each step's next-frame logits (and reward and end logits) are the training
    forward's for the same sequence."""
    agent = parallel_agent(registry, backbone, overrides).eval()
    wm, k, blocks = agent.world_model, agent.tokenizer.tokens_per_frame, 4
    with torch.no_grad():
        for name, p in wm.named_parameters():
            if "lora_B" in name:  # trained adapters, not LoRA's zero start: the merged rollout weights must carry them
                p.normal_(0.0, 0.05)
    frames = torch.rand(2, blocks, 3, 32, 32)
    actions = torch.randint(6, (2, blocks), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        tokens = agent.tokenizer.encode(frames.flatten(0, 1)).view(2, blocks, k)
        trained = wm.predictions(tokens, actions, torch.zeros(2, blocks), torch.zeros(2, blocks, dtype=torch.bool),
                                 torch.ones(2, blocks, dtype=torch.bool))  # fmt: skip
    seen: dict[str, list[torch.Tensor]] = {"observations": [], "rewards": [], "ends": []}
    for name in seen:
        getattr(wm, f"head_{name}").register_forward_hook(lambda _m, _i, out, name=name: seen[name].append(out))
    dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(0))
    dream.reset(frames[:, 0])
    with wm.transformer.rollout():
        for t in range(blocks - 1):  # the steps one cache holds
            dream.step(actions[:, t], decode=False)
            dream.obs_tokens = tokens[:, t + 1]  # the real next frame: the context stays the training sequence's
    expected = trained["observations"][0].view(2, blocks - 1, k, -1)
    for t in range(blocks - 1):
        torch.testing.assert_close(seen["observations"][t], expected[:, t], atol=1e-4, rtol=1e-4)
        for name in ("rewards", "ends"):
            torch.testing.assert_close(seen[name][t], trained[name][0][:, t], atol=1e-4, rtol=1e-4)


class CallCounter:
    """Counts real calls of a module (a forward pre-hook: every ``__call__`` passes through it)."""

    def __init__(self, module: torch.nn.Module):
        self.calls = 0
        module.register_forward_pre_hook(self._count)

    def _count(self, _module, _inputs):
        self.calls += 1


def test_one_backbone_call_per_imagined_frame(registry):
    agent = parallel_agent(registry).eval()
    wm = agent.world_model
    counter = CallCounter(wm.transformer)
    dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(0))
    dream.reset(torch.rand(2, 3, 32, 32))
    steps = 2 * wm.max_blocks  # past two rebuilds of the cache, which cost no call of their own
    for step in range(steps):
        frames, rewards, ends = dream.step(torch.tensor([step % 6, 1]))
        assert frames.shape == (2, 3, 32, 32) and rewards.shape == ends.shape == (2,)
        assert counter.calls == step + 1, f"step {step}: {counter.calls} backbone calls"
        assert dream.cache.num_tokens % wm.tokens_per_block == 0, "the queries stayed in the cache"
    counter.calls = 0
    assert dream.step(torch.tensor([0, 1]), observe=False)[0] is None and counter.calls == 1
    counter.calls = 0
    imagine(agent.actor_critic, dream, torch.rand(2, 3, 3, 32, 32), torch.ones(2, 3, dtype=torch.bool), horizon=5)
    assert counter.calls == 5  # one per imagined step, the last (reward and end only) included; the reset needs none


def test_parallel_training_reaches_the_queries_and_learns(registry):
    agent = parallel_agent(registry)
    wm = agent.world_model.train()
    assert "world_model.queries.weight" in agent.state_dict()
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(wm.vocab_size, (4, 4, wm.tokens_per_frame), generator=generator)
    tokens[:, 1:] = tokens[:, :1]  # a still scene: every next frame is the first again
    actions = torch.randint(6, (4, 4), generator=generator)
    rewards, ends, mask = torch.zeros(4, 4), torch.zeros(4, 4, dtype=torch.bool), torch.ones(4, 4, dtype=torch.bool)
    optimizer = torch.optim.Adam(wm.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = wm.losses(tokens, actions, rewards, ends, mask)
        optimizer.zero_grad()
        loss.total.backward()
        assert wm.queries.weight.grad is not None and wm.queries.weight.grad.abs().sum() > 0
        optimizer.step()
        losses.append(loss.observations.item())
    assert losses[-1] < 0.5 * losses[0], f"observation loss {losses[0]:.3f} -> {losses[-1]:.3f}"


def test_describe_says_parallel_prediction_departs_from_the_paper(registry):
    from wmbench.score_notes import paper_departures

    agent = parallel_agent(registry)
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", ["world_model.parallel=true"], registry)
    assert any("parallel frame prediction" in d for d in paper_departures(config, agent.tokenizer.describe()))
    assert not cfg.resolve("iris", "Pong", 0, "vqvae", "scratch", [], registry).world_model.parallel
