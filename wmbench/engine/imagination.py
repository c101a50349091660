"""Imagination: the world model as a batched environment, and actor-critic rollouts inside it.

One imagined step costs ``K + 1`` sequential backbone calls with the cache: the action token (reward and
end are sampled there, and the first observation token), then the K observation tokens one by one. The last
step of a rollout only needs its reward and end: one call, as the reference does. When the cache cannot take
another block, it is rebuilt from the current frame alone, as the reference does.

With parallel frame prediction a step is one call: the current frame's tokens (kept out of the cache until the
action is known), the action and the K queries, whose predictions are the next frame; the cache then drops the
queries. The last step of a rollout feeds the frame and action alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.distributions import Categorical

from wmbench.engine.actor_critic import ActorCritic, lambda_returns
from wmbench.engine.backbone import Cache
from wmbench.engine.tokenizer import Tokenizer
from wmbench.engine.world_model import WorldModel


def sample(logits: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """Sample class indices from ``logits [..., C]`` (with an explicit generator for reproducibility).

    What ``torch.multinomial`` draws for one sample, the same indices from the same generator state (its algorithm:
    the argmax of the probabilities over exponential noise), without its check of the probabilities, which reads
    them back to the host: sampling never waits for the device."""
    probs = torch.softmax(logits.float(), dim=-1)
    return probs.div(torch.empty_like(probs).exponential_(1, generator=generator)).argmax(dim=-1)


class DreamEnv:
    """A batch of environments simulated by the world model."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        world_model: WorldModel,
        generator: torch.Generator | None = None,
        greedy_frames: bool = False,
    ):
        """``greedy_frames``: each observation token is the world model's most likely one instead of a sample
        (rewards and ends are still sampled); not IRIS's, which samples every token."""
        self.tokenizer, self.world_model, self.generator = tokenizer, world_model, generator
        self.greedy_frames = greedy_frames
        self.obs_tokens: torch.Tensor  # set by reset()
        self.cache: Cache

    @torch.no_grad()
    def reset(self, frames: torch.Tensor) -> torch.Tensor:
        """Start from real frames ``[B, 3, H, W]``; returns their reconstructions."""
        self.obs_tokens = self.tokenizer.encode(frames)
        self._refresh()
        return self.tokenizer.decode(self.obs_tokens)

    def _refresh(self) -> None:
        """A new cache holding the current frame (with parallel prediction, nothing: the step feeds the frame)."""
        self.cache = self.world_model.transformer.new_cache(self.obs_tokens.size(0))
        if not self.world_model.parallel:
            self.world_model(self.obs_tokens, self.cache)

    @property
    def growth(self) -> int:
        """Tokens one step feeds the cache, the queries of parallel prediction included (then dropped)."""
        wm = self.world_model
        return wm.tokens_per_block + (wm.tokens_per_frame if wm.parallel else 0)

    @torch.no_grad()
    def step(
        self,
        actions: torch.Tensor,
        decode: bool = True,
        observe: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """Imagine one step for ``actions [B]``: next frames (or None), rewards in {-1, 0, 1}, ends.

        ``observe=False`` (a rollout's last step) samples the reward and end only: one backbone call, no
        observation tokens, no frame; the env then cannot step again until ``reset``."""
        if self.cache.num_tokens + self.growth > self.world_model.transformer.max_tokens:
            self._refresh()
        rewards, ends, tokens = self._imagine(actions, observe)
        if tokens is None:
            del self.obs_tokens, self.cache  # nothing to step from until reset()
            return None, rewards, ends
        self.obs_tokens = tokens
        return (self.tokenizer.decode(tokens) if decode else None), rewards, ends

    def _imagine(self, actions: torch.Tensor, observe: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """The world model's calls of one step from ``obs_tokens`` through ``cache``: rewards, ends and, if
        ``observe``, the next frame's tokens."""
        wm = self.world_model
        if wm.parallel:
            frame_and_action = torch.cat([self.obs_tokens, actions[:, None]], dim=1)
            hidden = wm(frame_and_action, self.cache, queries=observe)
            at_action, predicted = hidden[:, wm.tokens_per_frame], hidden[:, wm.tokens_per_block :]
        else:
            at_action = wm(actions[:, None], self.cache)[:, -1]
        rewards = sample(wm.head_rewards(at_action), self.generator).float() - 1
        ends = sample(wm.head_ends(at_action), self.generator).bool()
        if not observe:
            return rewards, ends, None
        if wm.parallel:
            return rewards, ends, self._frame_tokens(wm.head_observations(predicted))
        tokens, hidden = [], at_action
        for _ in range(wm.tokens_per_frame):
            tokens.append(self._frame_tokens(wm.head_observations(hidden)))
            hidden = wm(tokens[-1][:, None], self.cache)[:, -1]
        return rewards, ends, torch.stack(tokens, dim=1)

    def _frame_tokens(self, logits: torch.Tensor) -> torch.Tensor:
        """Observation tokens from their logits: sampled, or the most likely with ``greedy_frames``."""
        return logits.argmax(-1) if self.greedy_frames else sample(logits, self.generator)


@dataclass
class Rollout:
    """An imagined trajectory batch; every tensor is ``[B, H, ...]``."""

    frames: torch.Tensor
    actions: torch.Tensor
    logits: torch.Tensor
    values: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor


def imagine(
    actor_critic: ActorCritic,
    dream: DreamEnv,
    frames: torch.Tensor,
    mask: torch.Tensor,
    horizon: int,
) -> Rollout:
    """Roll the actor-critic out in imagination from real segments ``frames [B, T, 3, H, W]``.

    The first T - 1 frames (reconstructed) burn in the LSTM without gradients; the world model starts from the
    last one. Gradients flow into the actor-critic only, and only through the imagined steps.
    """
    with torch.no_grad():
        burn_in = dream.tokenizer.reconstruct(frames[:, :-1].flatten(0, 1)).view_as(frames[:, :-1])
    actor_critic.reset(frames.size(0), burn_in, mask[:, :-1])
    obs = dream.reset(frames[:, -1])
    out: dict[str, list[torch.Tensor]] = {k: [] for k in ("frames", "actions", "logits", "values", "rewards", "ends")}
    for h in range(horizon):
        logits, values = actor_critic(obs)
        actions = sample(logits.detach(), dream.generator)
        out["frames"].append(obs)
        out["actions"].append(actions)
        out["logits"].append(logits)
        out["values"].append(values)
        next_obs, rewards, ends = dream.step(actions, observe=h < horizon - 1)
        obs = obs if next_obs is None else next_obs  # None after the last step, which needs no frame
        out["rewards"].append(rewards)
        out["ends"].append(ends)
    return Rollout(**{k: torch.stack(v, dim=1) for k, v in out.items()})


def actor_critic_losses(
    rollout: Rollout, gamma: float, lambda_: float, entropy_weight: float
) -> dict[str, torch.Tensor]:
    """REINFORCE with a lambda-return baseline, value regression and an entropy bonus (the last step only bootstraps)."""
    with torch.no_grad():
        returns = lambda_returns(rollout.rewards, rollout.values, rollout.ends, gamma, lambda_)[:, :-1]
    values = rollout.values[:, :-1]
    dist = Categorical(logits=rollout.logits[:, :-1])
    log_probs = dist.log_prob(rollout.actions[:, :-1])
    losses = {
        "actions": -(log_probs * (returns - values.detach())).mean(),
        "entropy": -entropy_weight * dist.entropy().mean(),
        "values": torch.nn.functional.mse_loss(values, returns),
    }
    losses["total"] = losses["actions"] + losses["entropy"] + losses["values"]
    return losses
