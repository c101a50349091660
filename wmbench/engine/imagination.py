"""Imagination: the world model as a batched environment, and actor-critic rollouts inside it.

One imagined step costs ``K + 1`` sequential backbone calls with the cache: the action token (reward and
end are sampled there, and the first observation token), then the K observation tokens one by one. The last
step of a rollout only needs its reward and end: one call, as the reference does. When the cache cannot take
another block, it is rebuilt from the current frame alone, as the reference does.
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
    """Sample class indices from ``logits [..., C]`` (with an explicit generator for reproducibility)."""
    probs = torch.softmax(logits.float(), dim=-1)
    return torch.multinomial(probs.reshape(-1, probs.size(-1)), 1, generator=generator).view(probs.shape[:-1])


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
        self.cache = self.world_model.transformer.new_cache(self.obs_tokens.size(0))
        self.world_model(self.obs_tokens, self.cache)

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
        wm = self.world_model
        if self.cache.num_tokens + wm.tokens_per_block > wm.transformer.max_tokens:
            self._refresh()
        hidden = wm(actions[:, None], self.cache)[:, -1]
        rewards = sample(wm.head_rewards(hidden), self.generator).float() - 1
        ends = sample(wm.head_ends(hidden), self.generator).bool()
        if not observe:
            del self.obs_tokens, self.cache  # nothing to step from until reset()
            return None, rewards, ends
        tokens = []
        for _ in range(wm.tokens_per_frame):
            logits = wm.head_observations(hidden)
            tokens.append(logits.argmax(-1) if self.greedy_frames else sample(logits, self.generator))
            hidden = wm(tokens[-1][:, None], self.cache)[:, -1]
        self.obs_tokens = torch.stack(tokens, dim=1)
        return (self.tokenizer.decode(self.obs_tokens) if decode else None), rewards, ends


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
