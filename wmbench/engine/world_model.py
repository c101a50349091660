"""The IRIS world model: token embeddings, a backbone, and heads for next token, reward sign and episode end.

A sequence is made of blocks of ``K + 1`` tokens: the K observation tokens of a frame, then its action.
The observation head reads every position that is followed by an observation token (the first K - 1 of
a block and its action); the reward and end heads read the action position.

With parallel frame prediction (REM's parallel observation prediction, Cohen et al. 2024), K learned query
embeddings follow each action instead: query j sits at the position of the next frame's token j, attends to the
real tokens up to the action and causally to the queries before it, and its hidden state predicts token j. No
token of the real sequence sees a query, so imagination can append the queries after an action, read all K
predictions from one backbone call and drop the queries from the cache. Training puts every block's queries in one
sequence under a block-sparse mask (:func:`parallel_layout`). Within a frame the K tokens are then drawn
independently given the context, where IRIS draws each given the ones before it: that is the price of one call.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from wmbench.engine.backbone import Backbone, Cache, next_position


class Embedder(nn.Module):
    """Separate tables for action and observation tokens (reference names: ``embedding_tables.0/1``)."""

    def __init__(
        self, num_actions: int, vocab_size: int, dim: int, tokens_per_block: int, observations: nn.Module | None
    ):
        super().__init__()
        self.tokens_per_block, self.num_actions = tokens_per_block, num_actions
        self.embedding_tables = nn.ModuleList(
            [nn.Embedding(num_actions, dim), observations or nn.Embedding(vocab_size, dim)]
        )

    def forward(self, tokens: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
        """Embeddings of ``tokens [B, L]`` that sit at sequence positions ``start .. start + L - 1`` (``start`` an int,
        or a 0-dim tensor on the tokens' device)."""
        positions = (start + torch.arange(tokens.size(1), device=tokens.device)) % self.tokens_per_block
        is_action = (positions == self.tokens_per_block - 1)[None, :, None]
        actions, observations = self.embedding_tables
        # Each table only sees ids that are valid for it; the other entries are masked out.
        act = actions(torch.where(is_action[..., 0], tokens, 0).clamp(max=self.num_actions - 1))
        obs = observations(torch.where(is_action[..., 0], 0, tokens))
        return torch.where(is_action, act, obs)


class Head(nn.Module):
    """A small MLP (D -> D -> out), as the reference's ``head_module``."""

    def __init__(self, dim: int, out: int):
        super().__init__()
        self.head_module = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, out))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.head_module(hidden)


@dataclass
class WorldModelLosses:
    observations: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.observations + self.rewards + self.ends


def parallel_layout(blocks: int, k: int, device: torch.device | None = None) -> tuple[torch.Tensor, ...]:
    """The training sequence of parallel prediction over ``blocks`` frames of ``k`` tokens: each block's K + 1 tokens,
    all but the last followed by the K queries of the next frame. Returns which entries are queries, their
    positions (a query takes that of the token it predicts) and the attention mask (True: may attend): causal,
    except that a query is seen by the later queries of its own block only."""
    index = torch.arange(blocks * (2 * k + 1) - k, device=device)
    block, offset = index // (2 * k + 1), index % (2 * k + 1)
    is_query = offset > k
    causal = index[None, :] <= index[:, None]
    mask = causal & (~is_query[None, :] | (block[None, :] == block[:, None]))
    return is_query, block * (k + 1) + offset, mask


class WorldModel(nn.Module):
    def __init__(
        self, backbone: Backbone, vocab_size: int, tokens_per_frame: int, num_actions: int, parallel: bool = False
    ):
        super().__init__()
        dim = backbone.d_model
        self.vocab_size, self.tokens_per_frame, self.num_actions = vocab_size, tokens_per_frame, num_actions
        self.tokens_per_block = tokens_per_frame + 1
        self.parallel = parallel
        """Predict a frame's K tokens at once from K query embeddings; needs ``backbone.takes_mask``."""
        self.transformer = backbone
        reused = getattr(backbone, "observation_embedding", lambda _: None)(vocab_size)
        self.embedder = Embedder(num_actions, vocab_size, dim, self.tokens_per_block, reused)
        self.head_observations = Head(dim, vocab_size)
        self.head_rewards = Head(dim, 3)
        self.head_ends = Head(dim, 2)
        own = [self.embedder.embedding_tables[0], self.head_observations, self.head_rewards, self.head_ends]
        if reused is None:
            own.append(self.embedder.embedding_tables[1])
        if parallel:
            self.queries = nn.Embedding(tokens_per_frame, dim)
            own.append(self.queries)
        for module in own:
            module.apply(_init_weights)

    @property
    def max_blocks(self) -> int:
        return self.transformer.max_tokens // self.tokens_per_block

    def forward(self, tokens: torch.Tensor, cache: Cache | None = None, queries: bool = False) -> torch.Tensor:
        """Hidden states for ``tokens [B, L]``, continuing ``cache`` if given. ``queries`` (parallel prediction, the
        tokens ending with an action): followed by those of the K queries (``[B, L + K]`` in all), which the cache
        then drops."""
        embeds = self.embedder(tokens, next_position(cache))
        if queries:
            embeds = torch.cat([embeds, self.queries.weight.expand(tokens.size(0), -1, -1)], dim=1)
        hidden = self.transformer(embeds, cache)
        if queries and cache is not None:
            cache.drop(self.tokens_per_frame)
        return hidden

    def losses(
        self,
        obs_tokens: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        ends: torch.Tensor,
        mask: torch.Tensor,
    ) -> WorldModelLosses:
        """Cross-entropies on a batch of segments: tokens ``[B, T, K]``, the rest ``[B, T]``; mask marks real steps."""
        out = self.predictions(obs_tokens, actions, rewards, ends, mask)
        return WorldModelLosses(
            **{k: F.cross_entropy(logits.flatten(0, -2), labels.flatten()) for k, (logits, labels) in out.items()}
        )

    def predictions(
        self,
        obs_tokens: torch.Tensor,
        actions: torch.Tensor,
        rewards: torch.Tensor,
        ends: torch.Tensor,
        mask: torch.Tensor,
    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Logits and labels (-100 where masked) of the heads, for ``observations``, ``rewards`` and ``ends``."""
        b, t, k = obs_tokens.shape
        tokens = torch.cat([obs_tokens, actions[..., None]], dim=2).flatten(1)
        labels = obs_tokens.masked_fill(~mask[..., None], -100)
        if self.parallel:
            hidden, reads = self._parallel_hidden(tokens, t)
            labels = labels[:, 1:].flatten(1)  # the queries after frame i predict frame i + 1
        else:
            hidden = self(tokens).view(b, t, k + 1, -1)
            # Positions 0..K-2 predict tokens 1..K-1 of the same frame; the action position predicts the next frame's
            # first.
            reads = torch.cat([hidden[:, :, : k - 1], hidden[:, :, k:]], dim=2).flatten(1, 2)[:, :-1]
            labels = labels.flatten(1)[:, 1:]
        at_action = hidden[:, :, k]
        reward_labels = (rewards.sign().long() + 1).masked_fill(~mask, -100)
        end_labels = ends.long().masked_fill(~mask, -100)
        return {
            "observations": (self.head_observations(reads), labels),
            "rewards": (self.head_rewards(at_action), reward_labels),
            "ends": (self.head_ends(at_action), end_labels),
        }

    def _parallel_hidden(self, tokens: torch.Tensor, blocks: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of the real tokens ``[B, T, K + 1, D]`` and of the queries ``[B, (T - 1) K, D]``, from one
        forward of the sequence :func:`parallel_layout` describes."""
        b, k = tokens.size(0), self.tokens_per_frame
        real = self.embedder(tokens, 0).view(b, blocks, k + 1, -1)
        queries = self.queries.weight.expand(b, blocks, -1, -1)
        sequence = torch.cat([real, queries], dim=2).flatten(1, 2)[:, :-k]
        is_query, positions, mask = parallel_layout(blocks, k, tokens.device)
        hidden = self.transformer(sequence, mask=mask, positions=positions)
        return hidden[:, ~is_query].view(b, blocks, k + 1, -1), hidden[:, is_query]


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
