"""The GRU backbone: causal by construction, and its cache is just the hidden state after the last token."""

import torch
from torch import nn

from wmbench.engine.backbone import Backbone


class GRUCache:
    """The hidden state ``[layers, batch, width]`` after ``num_tokens`` tokens."""

    def __init__(self, state: torch.Tensor, num_tokens: int = 0):
        self.state, self.num_tokens = state, num_tokens

    def select(self, index: torch.Tensor) -> "GRUCache":
        return GRUCache(self.state[:, index], self.num_tokens)


class GRUBackbone(Backbone):
    def __init__(self, width: int, layers: int, max_tokens: int, dropout: float = 0.0):
        super().__init__()
        self.d_model, self.max_tokens = width, max_tokens
        self.gru = nn.GRU(width, width, num_layers=layers, batch_first=True, dropout=dropout if layers > 1 else 0.0)

    def new_cache(self, batch_size: int) -> GRUCache:
        weight = self.gru.weight_ih_l0  # the state follows the module's device and dtype
        return GRUCache(weight.new_zeros(self.gru.num_layers, batch_size, self.d_model))

    def forward(self, embeds: torch.Tensor, cache: GRUCache | None = None) -> torch.Tensor:
        start = 0 if cache is None else cache.num_tokens
        if start + embeds.size(1) > self.max_tokens:
            raise ValueError(f"sequence of {start + embeds.size(1)} tokens exceeds max_tokens={self.max_tokens}")
        hidden, state = self.gru(embeds, None if cache is None else cache.state)
        if cache is not None:
            cache.state, cache.num_tokens = state, start + embeds.size(1)
        return hidden

    def describe(self) -> dict:
        return {"layers": self.gru.num_layers, "width": self.d_model}
