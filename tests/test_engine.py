"""The IRIS engine's parts: world model losses, actor-critic, lambda-returns, imagination, replay."""

import numpy as np
import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.actor_critic import lambda_returns
from wmbench.engine.agent import build_agent
from wmbench.engine.fixed_dream import FixedDreamEnv
from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine, sample
from wmbench.engine.replay import Episode, ReplayStore


@pytest.fixture
def agent(smoke_config, registry):
    torch.manual_seed(0)
    return build_agent(smoke_config, registry, num_actions=6)


def test_lambda_returns_hand_computed():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    values = torch.tensor([[0.5, 1.0, 3.0]])
    ends = torch.tensor([[False, False, False]])
    g, lam = 0.9, 0.5
    g2 = 3.0  # the last step bootstraps from its value
    g1 = 0.0 + g * ((1 - lam) * 3.0 + lam * g2)  # 2.7
    g0 = 1.0 + g * ((1 - lam) * 1.0 + lam * g1)  # 1 + 0.9 * (0.5 + 1.35) = 2.665
    expected = torch.tensor([[g0, g1, g2]])
    torch.testing.assert_close(lambda_returns(rewards, values, ends, g, lam), expected)
    # An end cuts the bootstrap: G_0 = r_0.
    ended = lambda_returns(rewards, values, torch.tensor([[True, False, False]]), g, lam)
    assert ended[0, 0].item() == pytest.approx(1.0)


def test_world_model_losses_shapes_and_masking(agent):
    wm = agent.world_model
    b, t, k = 2, 4, wm.tokens_per_frame
    tokens = torch.randint(wm.vocab_size, (b, t, k))
    actions = torch.randint(6, (b, t))
    rewards = torch.tensor([[0.0, 1.0, -3.0, 0.0], [2.0, 0.0, 0.0, 0.0]])
    ends = torch.zeros(b, t, dtype=torch.bool)
    mask = torch.ones(b, t, dtype=torch.bool)
    losses = wm.losses(tokens, actions, rewards, ends, mask)
    for value in (losses.observations, losses.rewards, losses.ends, losses.total):
        assert value.shape == () and value.dtype == torch.float32 and torch.isfinite(value)
    # Padded steps carry no loss: changing what sits in them changes nothing.
    mask[1, 2:] = False
    a = wm.losses(tokens, actions, rewards, ends, mask)
    tokens2, rewards2 = tokens.clone(), rewards.clone()
    tokens2[1, 2:] = (tokens2[1, 2:] + 1) % wm.vocab_size
    rewards2[1, 2:] = 5.0
    b_ = wm.losses(tokens2, actions, rewards2, ends, mask)
    torch.testing.assert_close(a.rewards, b_.rewards)
    # Observation labels of padded steps are ignored, though padded tokens are still inputs to later positions.
    assert torch.isfinite(b_.observations)


def test_world_model_loss_reads_the_right_positions(agent):
    """The observation head at position i is scored against token i + 1 of the flattened frames."""
    wm = agent.world_model.eval()
    b, t, k = 1, 2, wm.tokens_per_frame
    tokens = torch.randint(wm.vocab_size, (b, t, k))
    actions = torch.randint(6, (b, t))
    zeros = torch.zeros(b, t)
    mask = torch.ones(b, t, dtype=torch.bool)
    loss = wm.losses(tokens, actions, zeros, zeros.bool(), mask).observations
    seq = torch.cat([tokens, actions[..., None]], 2).flatten(1)
    hidden = wm(seq)
    logits = wm.head_observations(hidden)[0]
    expected = []
    for p in range(seq.size(1) - 1):
        if p % (k + 1) != k - 1:  # positions followed by an observation token
            expected.append(torch.nn.functional.cross_entropy(logits[p][None], seq[0, p + 1][None]))
    torch.testing.assert_close(loss, torch.stack(expected).mean())


def test_the_world_model_adds_no_positions(agent):
    """What the guide promises a backbone author: the embeddings the backbone receives say which token it is (and
    whether an observation or an action) and nothing of where it stands; positions are the backbone's to add."""
    wm = agent.world_model
    seen = []
    hook = wm.transformer.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach()))
    k = wm.tokens_per_frame
    frame = torch.full((k,), 3)  # one observation token everywhere, and the same action after each frame
    block = torch.cat([frame, torch.tensor([1])])
    wm(torch.stack([block, block, block]).flatten()[None])
    wm(block[None], cache=_filled_cache(wm, block))  # the same block, continuing a cache at a later position
    hook.remove()
    embeds, continued = seen[0][0], seen[-1][0]
    assert torch.equal(embeds[: k + 1], embeds[k + 1 : 2 * (k + 1)]) and torch.equal(embeds[: k + 1], continued)
    assert torch.equal(embeds[0], embeds[k - 1]) and not torch.equal(embeds[k - 1], embeds[k])


def _filled_cache(wm, block):
    cache = wm.transformer.new_cache(1)
    wm(block[None], cache=cache)
    return cache


def test_actor_critic_shapes_and_burn_in_mask(agent):
    ac = agent.actor_critic
    frames = torch.rand(3, 5, 3, 32, 32)
    mask = torch.ones(3, 5, dtype=torch.bool)
    mask[0, :2] = False
    ac.reset(3, frames, mask)
    logits, values = ac(torch.rand(3, 3, 32, 32))
    assert logits.shape == (3, 6) and values.shape == (3,)
    # Row 0 with its first two frames masked equals a burn-in on its last three frames only.
    ac.reset(1, frames[:1, 2:])
    h_short = ac.hx.clone()
    ac.reset(3, frames, mask)
    torch.testing.assert_close(ac.hx[0], h_short[0])


def test_burn_in_carries_no_gradient(agent):
    """As the reference: the LSTM warms up on real frames under no_grad; gradients come from imagined steps only."""
    ac = agent.actor_critic.train()
    ac.reset(2, torch.rand(2, 4, 3, 32, 32), torch.ones(2, 4, dtype=torch.bool))
    assert not ac.hx.requires_grad and not ac.cx.requires_grad
    logits, values = ac(torch.rand(2, 3, 32, 32))
    assert logits.requires_grad and values.requires_grad


class _CountingBackbone:
    """Counts the world model's backbone calls (wraps the real one)."""

    def __init__(self, wm):
        self.calls, forward = 0, wm.transformer.forward

        def counted(*args, **kwargs):
            self.calls += 1
            return forward(*args, **kwargs)

        wm.transformer.forward = counted


def test_last_imagined_step_is_one_pass(agent):
    wm = agent.world_model.eval()
    dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(0))
    dream.reset(torch.rand(2, 3, 32, 32))
    counter = _CountingBackbone(wm)
    frames, _, _ = dream.step(torch.tensor([0, 1]))
    assert counter.calls == wm.tokens_per_frame + 1 and frames is not None
    counter.calls = 0
    frames, rewards, ends = dream.step(torch.tensor([0, 1]), observe=False)
    assert counter.calls == 1 and frames is None and rewards.shape == ends.shape == (2,)
    dream.reset(torch.rand(2, 3, 32, 32))
    counter.calls = 0
    imagine(agent.actor_critic, dream, torch.rand(2, 3, 3, 32, 32), torch.ones(2, 3, dtype=torch.bool), horizon=3)
    assert counter.calls == 1 + 2 * (wm.tokens_per_frame + 1) + 1  # the reset's context, 2 full steps, 1 last


def _reference_step(wm, history, actions, generator):
    """Imagination without a cache: recompute the whole sequence for every token."""
    seq = torch.cat([history, actions[:, None]], 1)
    hidden = wm(seq)[:, -1]
    rewards = sample(wm.head_rewards(hidden), generator).float() - 1
    ends = sample(wm.head_ends(hidden), generator).bool()
    frame = []
    for _ in range(wm.tokens_per_frame):
        frame.append(sample(wm.head_observations(hidden), generator))
        seq = torch.cat([seq, frame[-1][:, None]], 1)
        hidden = wm(seq)[:, -1]
    return seq, torch.stack(frame, 1), rewards, ends


def test_imagination_with_cache_equals_recomputation(agent):
    agent = agent.double().eval()
    wm = agent.world_model
    frames = torch.rand(2, 3, 32, 32, dtype=torch.float64)
    dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(7))
    dream.reset(frames)
    history = agent.tokenizer.encode(frames)
    generator = torch.Generator().manual_seed(7)
    steps = wm.max_blocks + 3  # long enough to fill the context and rebuild it
    for step in range(steps):
        actions = torch.tensor([step % 6, (step * 5) % 6])
        if history.size(1) + wm.tokens_per_block > wm.transformer.max_tokens:
            history = history[:, -wm.tokens_per_frame :]  # the reference rebuilds from the current frame
        history, frame_ref, rewards_ref, ends_ref = _reference_step(wm, history, actions, generator)
        _, rewards, ends = dream.step(actions, decode=False)
        assert torch.equal(dream.obs_tokens, frame_ref), f"tokens differ at step {step}"
        assert torch.equal(rewards, rewards_ref) and torch.equal(ends, ends_ref)


def test_greedy_frames_are_the_most_likely_tokens(agent):
    """``greedy_frames``: every observation token is the argmax given the ones before it, whatever the generator;
    rewards and ends are still sampled."""
    agent = agent.double().eval()
    wm, frames, actions = agent.world_model, torch.rand(2, 3, 32, 32, dtype=torch.float64), torch.tensor([1, 4])
    tokens = []
    for seed in (1, 2):
        dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(seed), greedy_frames=True)
        dream.reset(frames)
        dream.step(actions, decode=False)
        tokens.append(dream.obs_tokens)
    fixed = FixedDreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(3), greedy_frames=True)
    fixed.reset(frames)
    fixed.step(actions, decode=False)
    assert torch.equal(tokens[0], tokens[1]) and torch.equal(fixed.obs_tokens, tokens[0])
    seq = torch.cat([agent.tokenizer.encode(frames), actions[:, None]], 1)
    for k in range(wm.tokens_per_frame):
        assert torch.equal(wm.head_observations(wm(seq)[:, -1]).argmax(-1), tokens[0][:, k])
        seq = torch.cat([seq, tokens[0][:, k : k + 1]], 1)


def test_imagine_rollout_and_losses(agent):
    dream = DreamEnv(agent.tokenizer, agent.world_model.eval(), torch.Generator().manual_seed(0))
    frames = torch.rand(4, 3, 3, 32, 32)
    mask = torch.ones(4, 3, dtype=torch.bool)
    rollout = imagine(agent.actor_critic, dream, frames, mask, horizon=5)
    assert rollout.frames.shape == (4, 5, 3, 32, 32)
    assert rollout.logits.shape == (4, 5, 6) and rollout.values.shape == (4, 5)
    assert set(rollout.rewards.unique().tolist()) <= {-1.0, 0.0, 1.0}
    losses = actor_critic_losses(rollout, 0.99, 0.95, 0.001)
    losses["total"].backward()
    assert agent.actor_critic.conv1.weight.grad is not None
    assert all(p.grad is None for p in agent.world_model.parameters()), "imagination must not train the world model"


def _episode(n, start=0):
    frames = torch.arange(start, start + n, dtype=torch.uint8)[:, None, None, None].expand(n, 3, 2, 2).clone()
    return Episode(frames, torch.arange(n), torch.ones(n), torch.zeros(n, dtype=torch.bool))


def test_replay_segments_pad_and_mask(tmp_path):
    store = ReplayStore(tmp_path, ())
    store.put(0, _episode(5))
    seg = store.episodes[0].segment(3, 7)
    assert seg["mask"].tolist() == [True, True, False, False]
    assert seg["actions"].tolist() == [3, 4, 0, 0]
    seg = store.episodes[0].segment(-2, 2)
    assert seg["mask"].tolist() == [False, False, True, True]
    batch = store.sample(6, 4, False, np.random.default_rng(0))
    assert batch["frames"].shape == (6, 4, 3, 2, 2) and batch["mask"][:, -1].all()


def test_replay_reload_drops_what_came_after_the_checkpoint(tmp_path):
    store = ReplayStore(tmp_path, ())
    store.put(0, _episode(5))
    store.put(1, _episode(3, 5))
    store.put(1, _episode(6, 5))  # the episode in progress grew
    store.put(2, _episode(2, 11))  # written after the checkpoint that saw 2 episodes, the last 3 long
    again = ReplayStore(tmp_path, ())
    again.load(num_episodes=2, last_length=3)
    assert [len(e) for e in again.episodes] == [5, 3]
    assert not (tmp_path / "000002.pt").exists()
    assert again.episodes[1].actions.tolist() == [0, 1, 2]


def test_episode_sampling_is_uniform_by_default_and_in_the_iris_preset(registry):
    for preset in ("iris", "smoke"):
        config = cfg.resolve(preset, "Pong", 0, "vqvae", "scratch", [], registry)
        assert config.training.sampling_weights == ()
    store = ReplayStore(None, config.training.sampling_weights)
    store.episodes = [_episode(1)] * 10
    assert np.allclose(store._episode_probabilities(), 0.1)


def test_recency_weights_option():
    store = ReplayStore(None, (0.125, 0.125, 0.25, 0.5))
    store.episodes = [_episode(1)] * 10
    probs = store._episode_probabilities()
    assert probs.sum() == pytest.approx(1.0)
    # 10 episodes in buckets of 2, 2, 2, 4: the newest four share half the mass.
    assert probs[-4:].sum() == pytest.approx(0.5) and probs[0] == pytest.approx(0.125 / 2)


def test_tokenizer_stops_training_after_its_last_epoch(registry, tmp_path):
    """``training.tokenizer.stop_after_epoch``: the tokenizer trains up to that epoch, then its weights stay put
    while the world model goes on training (and the IRIS default never stops)."""
    from plugin_site import TINY

    from wmbench.engine.trainer import Trainer
    from wmbench.rundir import RunDir

    assert cfg.resolve("iris", "Pong", 0, "vqvae", "scratch", [], registry).training.tokenizer.stop_after_epoch > 600
    sets = [*TINY, "training.epochs=3", "training.tokenizer.stop_after_epoch=2"]
    config = cfg.resolve("smoke", "Catcher", 0, "vqvae", "scratch", sets, registry)
    run = RunDir(tmp_path / "run")
    run.create(cfg.to_dict(config))
    trainer = Trainer(config, run, registry, log=lambda line: None)
    states = []
    for _ in range(3):
        trainer.epoch += 1
        metrics = trainer.train_epoch()
        states.append([p.detach().clone() for p in trainer.agent.parameters()])
        assert ("loss/tokenizer/total" in metrics) == (trainer.epoch == 2), trainer.epoch
    tokenizer = {id(p) for p in trainer.agent.tokenizer.parameters()}
    moved = [
        not torch.equal(a, b) for p, a, b in zip(trainer.agent.parameters(), states[1], states[2]) if id(p) in tokenizer
    ]
    assert not any(moved)
    assert "loss/world_model/total" in metrics
