"""The one optimiser step every trainer and benchmark takes."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn


def optimizer_step(
    optimizer: torch.optim.Optimizer, loss: torch.Tensor, parameters: Iterable[nn.Parameter], grad_clip: float
) -> None:
    """Zero the gradients, backpropagate ``loss``, clip the trainable ``parameters``' norm, step."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_([p for p in parameters if p.requires_grad], grad_clip)
    optimizer.step()
