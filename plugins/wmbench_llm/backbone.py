"""A Hugging Face base model as a wmbench backbone: its own positions, causal mask and key/value cache."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from wmbench.engine.agent import parameter_count
from wmbench.engine.backbone import Backbone
from wmbench.errors import WmbenchError


class HFCache:
    """The model's real ``past_key_values`` (a transformers ``DynamicCache``) for ``batch_size`` sequences."""

    def __init__(self, past, batch_size: int):
        self.past, self.batch_size = past, batch_size

    @property
    def num_tokens(self) -> int:
        return self.past.get_seq_length()

    def select(self, index: torch.Tensor) -> HFCache:
        past = copy.copy(self.past)
        past.layers = [copy.copy(layer) for layer in self.past.layers]
        past.batch_select_indices(index)  # replaces each copied layer's tensors: this cache is left as it was
        return HFCache(past, len(index))


class ReusedEmbedding(nn.Module):
    """Image token ``i`` embedded as the LLM's own token ``ids[i]`` (the table is the LLM's, shared)."""

    def __init__(self, table: nn.Embedding, ids: torch.Tensor):
        super().__init__()
        self.table = table
        self.register_buffer("ids", ids, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table(self.ids[tokens])


def check_causal(model, name: str) -> None:
    """Refuse a model whose outputs see later inputs (an encoder that ignores ``is_decoder``, say)."""
    width = model.config.hidden_size
    x = torch.randn(1, 4, width, generator=torch.Generator().manual_seed(0))
    changed = x.clone()
    changed[:, -1] = -x[:, -1]
    was_training = model.training
    model.eval()
    with torch.no_grad():
        before, after = (model(inputs_embeds=e, use_cache=False).last_hidden_state for e in (x, changed))
    model.train(was_training)
    if not torch.allclose(before[:, :-1], after[:, :-1], rtol=1e-3, atol=1e-3):
        raise WmbenchError(f"{name} does not attend causally (changing a token changes earlier outputs)")


def _load_4bit_state(module, state_dict, prefix, *args) -> None:
    """Restore 4-bit weights together with their quantisation statistics (bitsandbytes saves but does not load them)."""
    import bitsandbytes as bnb

    for name, layer in module.named_modules():
        if not isinstance(layer, bnb.nn.Linear4bit):
            continue
        key = f"{prefix}{name}.weight"
        stats = {k[len(key) + 1 :]: state_dict.pop(k) for k in list(state_dict) if k.startswith(key + ".")}
        if stats and key in state_dict:
            layer.weight = bnb.nn.Params4bit.from_prequantized(
                state_dict[key].clone(), stats, device=layer.weight.device, module=layer
            )


class LLMBackbone(Backbone):
    """A transformers base model (``AutoModel``, no LM head) fed ``inputs_embeds``; heads read its last hidden states."""

    def __init__(self, model, *, max_tokens: int, facts: dict[str, Any], source, reuse_embeddings: bool):
        super().__init__()
        self.model = model
        self.d_model = model.config.hidden_size
        self.max_tokens = max_tokens
        """The world model's context (``shape.max_tokens``), at most the model's own ``max_position_embeddings``."""
        self._facts, self._source, self._revision = facts, source, None
        self._reuse_embeddings = reuse_embeddings
        if facts["quantisation"] != "none":
            self.register_load_state_dict_pre_hook(_load_4bit_state)

    def new_cache(self, batch_size: int) -> HFCache:
        from transformers import DynamicCache

        return HFCache(DynamicCache(config=self.model.config), batch_size)

    def forward(self, embeds: torch.Tensor, cache: HFCache | None = None) -> torch.Tensor:
        start = 0 if cache is None else cache.num_tokens
        if start + embeds.shape[1] > self.max_tokens:
            raise ValueError(f"{start + embeds.shape[1]} tokens exceed max_tokens={self.max_tokens}")
        if cache is None:
            return self.model(inputs_embeds=embeds, use_cache=False).last_hidden_state
        if embeds.shape[0] != cache.batch_size:
            raise ValueError(f"batch of {embeds.shape[0]} for a cache of {cache.batch_size} sequences")
        return self.model(inputs_embeds=embeds, past_key_values=cache.past, use_cache=True).last_hidden_state

    def observation_embedding(self, vocab_size: int) -> nn.Module | None:
        """With ``embeddings="reuse"``: image tokens onto evenly spread ids of the LLM's vocabulary, else None.

        Token ``i`` takes the middle id of the ``i``-th of ``vocab_size`` equal slices of the vocabulary, so image
        tokens use a spread of ordinary word embeddings rather than a block of special or byte tokens. The table
        trains as the mode says (only in ``full``).
        """
        if not self._reuse_embeddings:
            return None
        table = self.model.get_input_embeddings()
        size = table.num_embeddings
        if vocab_size > size:
            raise WmbenchError(f"{vocab_size} image tokens do not fit the LLM's {size}-token vocabulary")
        ids = ((2 * torch.arange(vocab_size) + 1) * size) // (2 * vocab_size)
        return ReusedEmbedding(table, ids.to(table.weight.device))

    def describe(self) -> dict[str, Any]:
        from wmbench_llm.loading import revision_of

        if self._revision is None:
            self._revision = revision_of(self._source) or "unknown"
        return {
            **self._facts,
            "source": self._source.path + (f"/{self._source.gguf_file}" if self._source.gguf_file else ""),
            "revision": self._revision,
            "d_model": self.d_model,
            "max_tokens": self.max_tokens,
            "max_positions": self.model.config.max_position_embeddings,
            "parameters": parameter_count(self),
            "trainable_parameters": parameter_count(self, trainable=True),
            "token_table_parameters": self.model.get_input_embeddings().weight.numel(),
        }
