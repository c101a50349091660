"""The tokenizer seam: frames to discrete tokens and back."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Tokenizer(nn.Module):
    """Frames ``[B, 3, H, W]`` with values in [0, 1] to tokens ``[B, tokens_per_frame]`` and back."""

    vocab_size: int
    tokens_per_frame: int

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        """Token ids ``[B, tokens_per_frame]`` (int64) for frames in [0, 1]."""
        raise NotImplementedError

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """Frames in [0, 1] for token ids ``[B, tokens_per_frame]``."""
        raise NotImplementedError

    def loss(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training losses on a batch of frames in [0, 1]; ``"total"`` is the one to minimise."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """Facts for summaries (perceptual loss on or off, ...); JSON-ready."""
        return {}

    @torch.no_grad()
    def reconstruct(self, frames: torch.Tensor) -> torch.Tensor:
        """decode(encode(frames)): what the actor-critic sees of a real frame."""
        return self.decode(self.encode(frames))
