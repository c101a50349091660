"""The IRIS transformer: pre-LayerNorm GPT blocks, learned absolute positions, a preallocated KV cache (sliced to what
it holds, or of fixed shapes: attended over whole under a mask, its position on the device)."""

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

    def drop(self, n: int) -> None:
        """Forget the last ``n`` tokens: later ones overwrite their keys and values."""
        if not 0 <= n <= self._num_tokens:
            raise ValueError(f"cannot drop {n} of {self._num_tokens} tokens")
        self._num_tokens -= n


class FixedKVCache:
    """Keys and values of every layer, preallocated to ``max_tokens`` and attended over whole; ``position`` (on the
    device) is where the next token goes (a :class:`wmbench.engine.backbone.FixedCache`)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], position: torch.Tensor | None = None):
        self.keys, self.values = keys, values
        self.position = keys[0].new_zeros((), dtype=torch.long) if position is None else position
        self.bound: int | None = None
        self._slots = torch.arange(keys[0].size(2), device=keys[0].device)

    @property
    def num_tokens(self) -> int:
        return int(self.position)

    def select(self, index: torch.Tensor) -> FixedKVCache:
        return FixedKVCache([k[index] for k in self.keys], [v[index] for v in self.values], self.position.clone())

    def drop(self, n: int) -> None:
        """Forget the last ``n`` tokens: later ones overwrite their keys and values."""
        self.position -= n

    def clear(self) -> None:
        self.position.zero_()

    def sees(self, positions: torch.Tensor) -> torch.Tensor:
        """The mask ``[T, S]`` of tokens at ``positions`` over the ``S`` entries attended (all, or the first ``bound``):
        each sees the keys up to its own position."""
        return self._slots[: self.bound] <= positions[:, None]


AnyCache = KVCache | FixedKVCache


def attend(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    cache: AnyCache | None,
    layer: int,
    *,
    dropout: float,
    mask: torch.Tensor | None = None,
    causal: bool = True,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """Attention of heads ``[B, H, T, hd]``: causal, or through ``mask`` (``[T, T]``, True: may attend) without a
    cache; with a cache, appends k/v at its end and attends causally over all of it; with a fixed cache, writes k/v
    at ``positions`` and attends over the entries ``mask`` covers, through it (:meth:`FixedKVCache.sees`)."""
    if cache is None:
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal and mask is None, dropout_p=dropout
        )
    if isinstance(cache, FixedKVCache):
        assert mask is not None and positions is not None  # forward's, for a fixed cache
        keys, values = cache.keys[layer], cache.values[layer]
        keys.index_copy_(2, positions, k.to(keys.dtype))
        values.index_copy_(2, positions, v.to(values.dtype))
        n = mask.size(-1)
        return F.scaled_dot_product_attention(q, keys[:, :, :n], values[:, :, :n], attn_mask=mask, dropout_p=dropout)
    start, t = cache.num_tokens, q.size(2)
    cache.keys[layer][:, :, start : start + t] = k
    cache.values[layer][:, :, start : start + t] = v
    k, v = cache.keys[layer][:, :, : start + t], cache.values[layer][:, :, : start + t]
    # Query i sits at position start + i and sees keys up to there.
    causal_mask = torch.ones(t, start + t, dtype=torch.bool, device=q.device).tril(diagonal=start) if t > 1 else None
    return F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask, dropout_p=dropout)


def positions_of(
    embeds: torch.Tensor,
    cache: AnyCache | None,
    max_tokens: int,
    mask: torch.Tensor | None = None,
    positions: torch.Tensor | None = None,
) -> torch.Tensor:
    """The positions of ``embeds``: the cache's next ones, checked against ``max_tokens`` (a fixed cache's on the
    device, unchecked), or those given (a mask and positions are taken without a cache only; a position table refuses
    any past its end)."""
    if cache is not None and (mask is not None or positions is not None):
        raise ValueError("a mask and positions are taken without a cache only")
    if isinstance(cache, FixedKVCache):
        return cache.position + torch.arange(embeds.size(1), device=embeds.device)
    start, t = (0 if cache is None else cache.num_tokens), embeds.size(1)
    if positions is None:
        if start + t > max_tokens:
            raise ValueError(f"sequence of {start + t} tokens exceeds max_tokens={max_tokens}")
        return torch.arange(start, start + t, device=embeds.device)
    if positions.shape != (t,):
        raise ValueError(f"positions of shape {tuple(positions.shape)} for {t} tokens")
    return positions


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.num_heads, self.dropout = num_heads, dropout
        self.key, self.query, self.value, self.proj = (nn.Linear(dim, dim) for _ in range(4))
        self.resid_drop = nn.Dropout(dropout)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        return x.view(b, t, self.num_heads, d // self.num_heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, cache: AnyCache | None, layer: int, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self._heads(self.query(x)), self._heads(self.key(x)), self._heads(self.value(x))
        dropout = self.dropout if self.training else 0.0
        y = attend(q, k, v, cache, layer, dropout=dropout, mask=mask, positions=positions)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(b, t, d)))


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, dropout: float):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = SelfAttention(dim, num_heads, dropout)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim), nn.Dropout(dropout))

    def forward(
        self, x: torch.Tensor, cache: AnyCache | None, layer: int, mask: torch.Tensor | None, positions: torch.Tensor
    ) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), cache, layer, mask, positions)
        return x + self.mlp(self.ln2(x))


class ScratchTransformer(Backbone):
    """The IRIS world-model transformer (its parameter names follow the reference checkpoint)."""

    takes_mask = True
    fixed_shape = True

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

    def _zeros(self, batch_size: int, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
        p = self.pos_emb.weight
        shape = (batch_size, self.num_heads, self.max_tokens, self.d_model // self.num_heads)
        return [p.new_zeros(shape, dtype=dtype) for _ in self.blocks]

    def new_cache(self, batch_size: int) -> KVCache:
        return KVCache(self._zeros(batch_size), self._zeros(batch_size))

    def new_fixed_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> FixedKVCache:
        return FixedKVCache(self._zeros(batch_size, dtype), self._zeros(batch_size, dtype))

    def forward(
        self,
        embeds: torch.Tensor,
        cache: AnyCache | None = None,
        *,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        positions = positions_of(embeds, cache, self.max_tokens, mask, positions)
        if isinstance(cache, FixedKVCache):
            mask = cache.sees(positions)
        x = self.drop(embeds + self.pos_emb(positions))
        for layer, block in enumerate(self.blocks):
            x = block(x, cache, layer, mask, positions)
        if isinstance(cache, FixedKVCache):
            cache.position += embeds.size(1)
        elif cache is not None:
            cache._num_tokens += embeds.size(1)
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
