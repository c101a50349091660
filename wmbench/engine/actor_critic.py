"""The IRIS actor-critic: conv + max-pool layers, an LSTM cell, policy and value heads; lambda-returns."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from wmbench.config import ActorCriticConfig


class ActorCritic(nn.Module):
    """Reads frames in [0, 1]; keeps its LSTM state between calls (``reset`` starts a new batch)."""

    def __init__(self, config: ActorCriticConfig, num_actions: int, frame_size: int):
        super().__init__()
        channels = (3, *config.channels)
        for i in range(len(config.channels)):
            self.add_module(f"conv{i + 1}", nn.Conv2d(channels[i], channels[i + 1], 3, stride=1, padding=1))
        self.convs = [getattr(self, f"conv{i + 1}") for i in range(len(config.channels))]
        side = frame_size // 2 ** len(config.channels)
        self.lstm_dim = config.lstm_dim
        self.lstm = nn.LSTMCell(channels[-1] * side * side, config.lstm_dim)
        self.critic_linear = nn.Linear(config.lstm_dim, 1)
        self.actor_linear = nn.Linear(config.lstm_dim, num_actions)
        self.hx: torch.Tensor  # the LSTM state, set by reset()
        self.cx: torch.Tensor

    def reset(self, batch_size: int, burn_in: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> None:
        """Zero the LSTM state, then feed ``burn_in [B, T, 3, H, W]`` frames where ``mask [B, T]`` holds, without
        gradients (as the reference: the actor-critic learns from imagined steps only)."""
        weight = self.lstm.weight_hh
        self.hx = weight.new_zeros(batch_size, self.lstm_dim)
        self.cx = weight.new_zeros(batch_size, self.lstm_dim)
        if burn_in is not None:
            with torch.no_grad():
                for t in range(burn_in.size(1)):
                    self(burn_in[:, t], None if mask is None else mask[:, t])

    def reset_rows(self, rows: torch.Tensor) -> None:
        """Zero the LSTM state of the rows marked True (an environment that started a new episode)."""
        keep = (~rows).to(self.hx.dtype)[:, None]
        self.hx, self.cx = self.hx * keep, self.cx * keep

    def forward(self, frames: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Action logits ``[B, A]`` and values ``[B]``; only rows where ``mask`` holds advance the LSTM."""
        x = frames.mul(2).sub(1)
        for conv in self.convs:
            x = F.relu(F.max_pool2d(conv(x), 2, 2))
        x = x.flatten(1)
        if mask is None:
            self.hx, self.cx = self.lstm(x, (self.hx, self.cx))
        else:
            hx, cx = self.lstm(x, (self.hx, self.cx))
            keep = mask[:, None]
            self.hx, self.cx = torch.where(keep, hx, self.hx), torch.where(keep, cx, self.cx)
        return self.actor_linear(self.hx), self.critic_linear(self.hx).squeeze(-1)


def lambda_returns(
    rewards: torch.Tensor, values: torch.Tensor, ends: torch.Tensor, gamma: float, lambda_: float
) -> torch.Tensor:
    """TD(lambda) returns over ``[B, H]``; the last step bootstraps from its value.

    G_t = r_t + gamma (1 - d_t) ((1 - lambda) V_{t+1} + lambda G_{t+1}),  G_{H-1} = V_{H-1}.
    """
    returns = torch.empty_like(values)
    returns[:, -1] = values[:, -1]
    not_end = 1.0 - ends.float()
    for t in range(values.size(1) - 2, -1, -1):
        bootstrap = (1 - lambda_) * values[:, t + 1] + lambda_ * returns[:, t + 1]
        returns[:, t] = rewards[:, t] + gamma * not_end[:, t] * bootstrap
    return returns
