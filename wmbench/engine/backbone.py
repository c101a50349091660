"""The backbone seam: a causal sequence model over embeddings, with a key/value (or recurrent) cache."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import nn


@dataclass(frozen=True)
class BackboneShape:
    """What a backbone's ``build(options, shape)`` is asked for (scratch backbones follow it all)."""

    embed_dim: int
    num_layers: int
    num_heads: int
    dropout: float
    max_blocks: int
    tokens_per_block: int

    @property
    def max_tokens(self) -> int:
        """Longest sequence the world model will feed."""
        return self.max_blocks * self.tokens_per_block


class Cache(Protocol):
    """What the engine needs of a backbone's cache; everything else about it is the backbone's own."""

    @property
    def num_tokens(self) -> int:
        """Tokens consumed so far."""

    def select(self, index: torch.Tensor) -> Cache:
        """The cache restricted to the batch rows in ``index`` (batch pruning)."""

    def drop(self, n: int) -> None:
        """Forget the last ``n`` tokens fed, in place: the cache is as it was before them. Needed only of a backbone
        that declares ``takes_mask``."""


class FixedCache(Cache, Protocol):
    """A cache of fixed shapes, for imagination captured in CUDA graphs: its buffers are preallocated to ``max_tokens``
    and attended over whole under a mask, and the next position is ``position``, a 0-dim int64 tensor on the cache's
    device that ``forward`` reads and advances in place. No call reads anything back to the host, and every call of
    the same length runs the same kernels on the same buffers. ``num_tokens`` reads ``position`` (a host
    synchronisation: for checks, not for the fast path); ``drop`` moves it back without a check."""

    position: torch.Tensor
    bound: int | None
    """None (as captured graphs need): every entry is attended under the mask. An int, set by a caller that knows on
    the host how many tokens the cache will hold after the next call (none when captured): a backbone may read no
    entry past it, so that an uncaptured step reads only what is filled."""

    def clear(self) -> None:
        """Forget every token, in place (``position`` to 0); the buffers stay."""


def next_position(cache: Cache | None) -> int | torch.Tensor:
    """Where the next token fed through ``cache`` goes: 0 without one, a :class:`FixedCache`'s ``position`` (read on
    the device), else ``num_tokens``."""
    if cache is None:
        return 0
    position = getattr(cache, "position", None)
    return cache.num_tokens if position is None else position


class Backbone(nn.Module):
    """Turns embeddings ``[B, T, d_model]`` into hidden states ``[B, T, d_model]``, causally.

    Output at position t depends on inputs at positions <= t only. With a cache, ``forward`` continues
    the sequence the cache holds and must give what a full forward over the whole sequence gives.
    A backbone sees embeddings only: tokens, actions and rewards belong to the world model.

    Optional capability, declared by ``takes_mask`` (parallel frame prediction needs it): without a cache,
    ``forward`` takes an attention ``mask`` and the tokens' ``positions`` in place of the causal mask and positions
    ``0 .. T - 1``, and its cache can ``drop`` the last tokens fed.
    """

    d_model: int
    """Width of the embeddings it takes and the hidden states it returns."""
    max_tokens: int
    """Longest sequence (cache included) it accepts; without a cache, positions up to ``max_tokens - 1``."""
    takes_mask: bool = False
    """Whether ``forward`` takes ``mask`` and ``positions``, and its cache ``drop``."""
    fixed_shape: bool = False
    """Whether it makes a :class:`FixedCache` (``new_fixed_cache``), for imagination with fixed shapes."""

    def new_cache(self, batch_size: int) -> Cache:
        """An empty cache for ``batch_size`` sequences of up to ``max_tokens`` tokens."""
        raise NotImplementedError

    def new_fixed_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> FixedCache:
        """An empty :class:`FixedCache` for ``batch_size`` sequences, its buffers in ``dtype`` (None: the weights').
        ``forward`` through it must give what it gives through ``new_cache``'s; it is fed at most ``max_tokens``
        tokens (not checked: that would read ``position``). Needed only of a backbone that declares
        ``fixed_shape``."""
        raise NotImplementedError

    def forward(
        self,
        embeds: torch.Tensor,
        cache: Cache | None = None,
        *,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Hidden states for ``embeds``; with a cache, appends to it (in place) and attends over it.

        With ``takes_mask``, and no cache: ``mask`` (bool ``[T, T]``, True where token i may attend to token j) and
        ``positions`` (``[T]``, each below ``max_tokens``; they may repeat) replace the causal mask and positions
        ``0 .. T - 1``; T may then exceed ``max_tokens``. Given a causal mask and those positions, the output is the
        causal forward's."""
        raise NotImplementedError

    def observation_embedding(self, vocab_size: int) -> nn.Module | None:
        """A module embedding image tokens ``0..vocab_size-1`` at width ``d_model``, or None for the world model's own."""
        return None

    def describe(self) -> dict[str, Any]:
        """Facts for summaries (model name, revision, quantisation, ...); JSON-ready."""
        return {}

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Optimiser parameter groups (own ``lr``, ``weight_decay``) for some of its trainable parameters; the others
        follow the world model's rule. Default: none."""
        return []

    def rollout(self) -> contextlib.AbstractContextManager[None]:
        """A context for no-gradient rollouts (imagination), in which a backbone may run faster inference weights
        that compute the same function. Default: nothing changes."""
        return contextlib.nullcontext()
