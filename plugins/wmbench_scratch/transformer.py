"""The IRIS transformer: pre-LayerNorm GPT blocks, learned absolute positions, a preallocated KV cache."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from wmbench.engine.backbone import Backbone, BackboneShape


class KVCache:
    """Keys and values of every layer, preallocated to ``max_tokens``; ``num_tokens`` of them are filled."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], num_tokens: int = 0):
        self.keys, self.values, self._num_tokens = keys, values, num_tokens

    @property
    def num_tokens(self) -> int:
        return self._num_tokens

    def select(self, index: torch.Tensor) -> KVCache:
        return KVCache([k[index] for k in self.keys], [v[index] for v in self.values], self._num_tokens)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.key, self.query, self.value, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        dropout = self.dropout if self.training else 0.0
        if cache is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            start = cache.num_tokens
            cache.keys[layer][:, :, start : start + t] = k
            cache.values[layer][:, :, start : start + t] = v
            k, v = cache.keys[layer][:, :, : start + t], cache.values[layer][:, :, : start + t]
            # Query i sits at position start + i and sees keys up to there.
            mask = None
            if t > 1:
                mask = torch.ones(t, start + t, dtype=torch.bool, device=x.device).tril(diagonal=start)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor, cache: KVCache | None, layer: int) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer)
        return x + self.mlp(self.ln2(x))


class ScratchTransformer(Backbone):
    """The IRIS world-model transformer (its parameter names follow the reference checkpoint)."""

    def __init__(self, shape: BackboneShape):
        super().__init__()
        if shape.embed_dim % shape.num_heads:
            from wmbench.errors import WmbenchError

            raise WmbenchError(
                f"world_model.embed_dim ({shape.embed_dim}) must be divisible by num_heads ({shape.num_heads})"
            )
        self.d_model, self.num_heads = shape.embed_dim, shape.num_heads
        self.max_tokens = shape.max_tokens
        self.pos_emb = nn.Embedding(self.max_tokens, shape.embed_dim)
        self.drop = nn.Dropout(shape.dropout)
        self.blocks = nn.ModuleList(
            Block(shape.embed_dim, shape.num_heads, shape.dropout) for _ in range(shape.num_layers)
        )
        self.ln_f = nn.LayerNorm(shape.embed_dim)
        self.apply(_init_weights)

    def new_cache(self, batch_size: int) -> KVCache:
        p = self.pos_emb.weight
        shape = (batch_size, self.num_heads, self.max_tokens, self.d_model // self.num_heads)
        return KVCache([p.new_zeros(shape) for _ in self.blocks], [p.new_zeros(shape) for _ in self.blocks])

    def forward(self, embeds: torch.Tensor, cache: KVCache | None = None) -> torch.Tensor:
        start = 0 if cache is None else cache.num_tokens
        t = embeds.size(1)
        if start + t > self.max_tokens:
            raise ValueError(f"sequence of {start + t} tokens exceeds max_tokens={self.max_tokens}")
        positions = torch.arange(start, start + t, device=embeds.device)
        x = self.drop(embeds + self.pos_emb(positions))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer)
        if cache is not None:
            cache._num_tokens += t
        return self.ln_f(x)

    def describe(self) -> dict[str, Any]:
        return {"layers": len(self.blocks), "heads": self.num_heads, "width": self.d_model}


def _init_weights(module: nn.Module) -> None:
    """GPT-2 style initialisation, as IRIS uses."""
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)
