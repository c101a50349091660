"""A Hugging Face base model as a wmbench backbone: its own positions, causal mask and key/value cache."""

from __future__ import annotations

import contextlib
import copy
from typing import Any

import torch
from torch import nn

from wmbench.engine.agent import parameter_count
from wmbench.engine.backbone import Backbone
from wmbench.errors import WmbenchError
from wmbench_llm.inference import inference_weights, preallocated_cache
from wmbench_llm.options import LLMOptions


class HFCache:
    """The model's real cache (a transformers ``DynamicCache``: keys and values, written in place by
    :class:`~wmbench_llm.inference.PreallocatedLayer`, or for state-space models such as Mamba a recurrent state) for
    ``batch_size`` sequences; ``tokens`` counts what was fed."""

    def __init__(self, past, batch_size: int, tokens: int = 0):
        self.past, self.batch_size, self.tokens = past, batch_size, tokens

    @property
    def num_tokens(self) -> int:
        return self.tokens

    def held(self) -> int:
        """Tokens the model's cache itself holds: its key/value length; for a recurrent-only cache, ``tokens`` once
        every layer holds a state (0 while any is empty)."""
        try:
            return self.past.get_seq_length()
        except ValueError:  # only recurrent layers: a state, not tokens
            used = all(any(layer.is_conv_states_initialized.values()) for layer in self.past.layers)
            return self.tokens if used else 0

    def select(self, index: torch.Tensor) -> HFCache:
        past = copy.copy(self.past)
        past.layers = [copy.copy(layer) for layer in self.past.layers]
        for layer in past.layers:  # each copied layer gets new tensors: this cache is left as it was
            if hasattr(layer, "recurrent_states"):
                for key, value in vars(layer).items():
                    if isinstance(value, dict):
                        setattr(layer, key, dict(value))
                layer.reorder_cache(index)
            else:
                layer.batch_select_indices(index)
        return HFCache(past, len(index), self.tokens)

    def drop(self, n: int) -> None:
        """Forget the last ``n`` tokens (the model's own ``crop``; key/value layers only, see ``takes_mask``). A
        :class:`~wmbench_llm.inference.PreallocatedLayer` keeps its buffers: the next tokens overwrite the dropped."""
        if not 0 <= n <= self.tokens:
            raise ValueError(f"cannot drop {n} of {self.tokens} tokens")
        if n:
            self.past.crop(-n)
        self.tokens -= n


class HFFixedCache:
    """The model's ``StaticCache`` (keys and values preallocated to ``max_tokens``, written in place) as a
    :class:`wmbench.engine.backbone.FixedCache`: ``position`` counts what was fed on the device, beside the counter
    each of the model's layers keeps."""

    def __init__(self, past, batch_size: int, position: torch.Tensor):
        self.past, self.batch_size, self.position = past, batch_size, position
        self.bound: int | None = None
        """Unused: the model attends over its whole static cache."""

    @property
    def num_tokens(self) -> int:
        return int(self.position)

    def select(self, index: torch.Tensor) -> HFFixedCache:
        past = copy.deepcopy(self.past)
        for layer in past.layers:
            if layer.is_initialized:
                layer.keys, layer.values = layer.keys[index], layer.values[index]
        return HFFixedCache(past, len(index), self.position.clone())

    def drop(self, n: int) -> None:
        for layer in self.past.layers:  # each layer's own counter (a device tensor once it holds keys)
            layer.cumulative_length -= n
        self.position -= n

    def clear(self) -> None:
        for layer in self.past.layers:
            layer.cumulative_length.zero_()
        self.position.zero_()


class ReusedEmbedding(nn.Module):
    """Image token ``i`` embedded as the LLM's own token ``ids[i]`` (the table is the LLM's, shared)."""

    def __init__(self, table: nn.Embedding, ids: torch.Tensor):
        super().__init__()
        self.table = table
        self.register_buffer("ids", ids, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.table(self.ids[tokens])


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
    """A transformers base model (``AutoModel``, no LM head) fed ``inputs_embeds``; heads read its last hidden states.

    A checkpoint of a pretrained model holds what trains (adapters, or every weight in ``full``) and the base
    model's name and revision, not the frozen base: loading it checks the revision of the base it is loaded onto.
    """

    def __init__(self, model, *, max_tokens: int, facts: dict[str, Any], source, options: LLMOptions, keyword: str,
                 position_offset: int | None):  # fmt: skip
        super().__init__()
        self.model = model
        self.d_model = model.config.hidden_size
        self.max_tokens = max_tokens
        """The world model's context (``shape.max_tokens``), at most the model's own ``max_position_embeddings``."""
        self._facts, self._source, self._options, self._revision = facts, source, options, None
        self._keyword, self._position_offset = keyword, position_offset
        self.takes_mask = _takes_mask(model)
        """sdpa or eager attention, which take a custom 4D mask, and a cache of plain key/value layers, which can
        forget tokens: not a state-space model's recurrent state (Mamba), nor a sliding window (a custom mask would
        bypass it), nor a flash or flex kernel."""
        self.fixed_shape = self.takes_mask
        """The same models run through a ``StaticCache`` under a custom mask over all of it."""
        if facts["quantisation"].startswith("nf4"):
            self.register_load_state_dict_pre_hook(_load_4bit_state)
        if options.pretrained:
            self._load_prefix = ""
            self.register_state_dict_post_hook(_drop_frozen_base)
            self.register_load_state_dict_pre_hook(_note_prefix)
            self.register_load_state_dict_post_hook(_allow_missing_base)

    @property
    def revision(self) -> str:
        """The exact base weights (hub commit, wheel hash or file hash), computed once."""
        from wmbench_llm.sources import revision_of

        if self._revision is None:
            self._revision = revision_of(self._source) or "unknown"
        return self._revision

    def _trainable_keys(self) -> set[str]:
        return {f"model.{n}" for n, p in self.model.named_parameters() if p.requires_grad}

    def get_extra_state(self) -> dict[str, Any]:
        return {"model": self._options.model, "revision": self.revision, "adapter_only": self._options.pretrained}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        if state.get("revision") != self.revision:
            raise WmbenchError(
                f"the checkpoint's backbone was trained on {state.get('model')!r} at revision {state.get('revision')}, "
                f"but {self._options.model!r} here is at revision {self.revision}"
            )

    def new_cache(self, batch_size: int) -> HFCache:
        """transformers' cache, its key/value layers allocated once for ``max_tokens`` tokens."""
        return HFCache(preallocated_cache(self.model.config, self.max_tokens), batch_size)

    def new_fixed_cache(self, batch_size: int, dtype: torch.dtype | None = None) -> HFFixedCache:
        """A ``StaticCache`` of ``max_tokens``; its buffers take the dtype of the first keys fed (``dtype`` unused)."""
        from transformers import StaticCache

        past = StaticCache(config=self.model.config, max_cache_len=self.max_tokens)
        weight = next(self.model.parameters())
        return HFFixedCache(past, batch_size, torch.zeros((), dtype=torch.long, device=weight.device))

    def _inputs(
        self, start: int, embeds: torch.Tensor, mask: torch.Tensor | None, positions: torch.Tensor | None
    ) -> dict[str, torch.Tensor]:
        """Position ids (given ones, or where the model does not count them itself) and a custom 4D mask: boolean for
        sdpa, additive for eager attention."""
        inputs = {}
        if positions is not None or self._position_offset is not None:
            if positions is None:
                positions = torch.arange(start, start + embeds.shape[1], device=embeds.device)
            inputs["position_ids"] = (positions + (self._position_offset or 0)).expand(embeds.shape[0], -1)
        if mask is not None:
            mask = mask[None, None].expand(embeds.shape[0], 1, *mask.shape)
            if self.model.config._attn_implementation == "eager":
                blocked = torch.finfo(embeds.dtype).min
                mask = torch.zeros(mask.shape, dtype=embeds.dtype, device=mask.device).masked_fill(~mask, blocked)
            inputs["attention_mask"] = mask
        return inputs

    def forward(
        self,
        embeds: torch.Tensor,
        cache: HFCache | HFFixedCache | None = None,
        *,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if isinstance(cache, HFFixedCache):
            if mask is not None or positions is not None:
                raise ValueError("a mask and positions are taken without a cache only")
            return self._fixed_forward(embeds, cache)
        start = 0 if cache is None else cache.num_tokens
        end = start + embeds.shape[1]
        if positions is None and end > self.max_tokens:
            raise ValueError(f"{end} tokens exceed max_tokens={self.max_tokens}")
        if cache is not None and (mask is not None or positions is not None):
            raise ValueError("a mask and positions are taken without a cache only")
        if (mask is not None or positions is not None) and not self.takes_mask:
            raise ValueError(f"{self._options.model} takes no custom mask or positions")
        dtype = embeds.dtype  # the world model's; the LLM's weights may be in another (backbone.dtype)
        embeds = embeds.to(self.model.get_input_embeddings().weight.dtype)
        inputs = self._inputs(start, embeds, mask, positions)
        if cache is None:
            return self.model(inputs_embeds=embeds, use_cache=False, **inputs).last_hidden_state.to(dtype)
        if embeds.shape[0] != cache.batch_size:
            raise ValueError(f"batch of {embeds.shape[0]} for a cache of {cache.batch_size} sequences")
        kwargs = {self._keyword: cache.past, **inputs}
        out = self.model(inputs_embeds=embeds, use_cache=True, **kwargs).last_hidden_state
        cache.tokens = end
        if cache.held() != end:  # a model that ignores the cache keyword still returns plausible states
            raise WmbenchError(
                f"{self._options.model} did not use its cache: it holds {cache.held()} tokens after {end} were "
                f"fed (through {self._keyword}=)"
            )
        return out.to(dtype)

    def _fixed_forward(self, embeds: torch.Tensor, cache: HFFixedCache) -> torch.Tensor:
        """Through a fixed-shape cache: every key of it under a mask hiding those past each token, positions read on
        the device; nothing is read back to the host."""
        positions = cache.position + torch.arange(embeds.shape[1], device=embeds.device)
        slots = torch.arange(self.max_tokens, device=embeds.device)
        inputs = self._inputs(0, embeds, slots <= positions[:, None], positions)
        out = self.model(inputs_embeds=embeds, use_cache=True, **{self._keyword: cache.past}, **inputs)
        cache.position += embeds.shape[1]
        return out.last_hidden_state

    def optimizer_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """The LLM's trainable weights at ``llm_lr`` (or ``lr``); weight decay on the weights of its linear layers,
        GPT-2's Conv1D and the LoRA matrices included, none on norms, biases and embeddings."""
        linear = [m for m in self.model.modules() if isinstance(m, nn.Linear) or type(m).__name__ == "Conv1D"]
        decay = {id(m.weight) for m in linear}
        params = [p for p in self.model.parameters() if p.requires_grad]
        lr = self._options.llm_lr or lr
        groups = [
            {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay, "lr": lr},
            {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0, "lr": lr},
        ]
        return [g for g in groups if g["params"]]

    def rollout(self) -> contextlib.AbstractContextManager[None]:
        """No-gradient rollouts in eval mode on inference weights (:func:`~wmbench_llm.inference.inference_weights`:
        LoRA merged, 4-bit dequantised, oneDNN-packed on a CPU, in bfloat16 under CPU bfloat16 autocast), built once
        on entry; the training modules are put back on exit. In train mode (dropout on) nothing changes."""
        return contextlib.nullcontext() if self.training else inference_weights(self.model)

    def observation_embedding(self, vocab_size: int) -> nn.Module | None:
        """With ``embeddings="reuse"``: image tokens onto evenly spread rows of the LLM's table that it trained, else
        None. Left out: special, added and reserved tokens, rows past the tokenizer's vocabulary (padding to a round
        size) and all-zero rows. The table trains as the mode says (only in ``full``)."""
        if self._facts["embeddings"] != "reuse":
            return None
        from wmbench_llm.sources import untrained_token_ids

        table = self.model.get_input_embeddings()
        size, skip = untrained_token_ids(self._source, self.model.config, table.num_embeddings)
        rows = torch.arange(size)
        keep = table.weight.detach()[:size].abs().sum(1).cpu() > 0
        if skip:
            keep &= ~torch.isin(rows, torch.tensor(sorted(skip)))
        usable = rows[keep]
        if vocab_size > len(usable):
            raise WmbenchError(f"{vocab_size} image tokens do not fit the LLM's {len(usable)} trained token rows")
        ids = usable[((2 * torch.arange(vocab_size) + 1) * len(usable)) // (2 * vocab_size)]
        return ReusedEmbedding(table, ids.to(table.weight.device))

    def describe(self) -> dict[str, Any]:
        return {
            **self._facts,
            "source": self._source.path + (f"/{self._source.gguf_file}" if self._source.gguf_file else ""),
            "revision": self.revision,
            "d_model": self.d_model,
            "max_tokens": self.max_tokens,
            "max_positions": getattr(self.model.config, "max_position_embeddings", None),
            "parameters": parameter_count(self),
            "trainable_parameters": parameter_count(self, trainable=True),
            "token_table_parameters": self.model.get_input_embeddings().weight.numel(),
        }


def _takes_mask(model) -> bool:
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    plain = all(type(layer) is DynamicLayer for layer in DynamicCache(config=model.config).layers)
    return plain and model.config._attn_implementation in ("sdpa", "eager")


def _drop_frozen_base(module: LLMBackbone, state_dict, prefix: str, local_metadata) -> None:
    """State-dict hook: the base model's frozen state (under ``model.``) left out of checkpoints."""
    keep = {prefix + k for k in module._trainable_keys()}
    for key in [k for k in state_dict if k.startswith(prefix + "model.") and k not in keep]:
        del state_dict[key]


def _note_prefix(module: LLMBackbone, state_dict, prefix: str, *args) -> None:
    module._load_prefix = prefix


def _allow_missing_base(module: LLMBackbone, incompatible) -> None:
    """Load hook: the base model's frozen state may be missing (it comes from the base model itself)."""
    base, keep = module._load_prefix + "model.", {module._load_prefix + k for k in module._trainable_keys()}
    incompatible.missing_keys[:] = [k for k in incompatible.missing_keys if not k.startswith(base) or k in keep]
