"""Rollout speed for the llm-* backbones: inference weights computing the training modules' function, and a key/value
cache that grows in place.

Inference weights: each LoRA layer's adapter merged into its base weight, 4-bit weights dequantised, and on a CPU
every float linear layer's weight reordered once into oneDNN's blocked layout (the layout inductor's weight
prepacking uses), which streams a batch of a few rows through the weights about 1.4x faster than the plain product.
Under CPU bfloat16 autocast (``bf16=true``) the weights are packed in bfloat16 once, where autocast would cast every
weight on every call.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn
from transformers.cache_utils import DynamicCache, DynamicLayer

PACK_ROWS = 8
"""The batch rows oneDNN's weight layout is chosen for; any number of rows runs on it (8, 64 and 128 timed alike)."""


class PreallocatedLayer(DynamicLayer):
    """A transformers ``DynamicLayer`` whose keys and values are views into buffers allocated once for ``capacity``
    tokens: a call writes its tokens in place instead of concatenating the whole history anew. Whatever replaced
    the views (a batch selection, a reorder) gets fresh buffers on the next call."""

    def __init__(self, capacity: int):
        super().__init__()
        self.capacity = capacity
        self._keys = self._values = torch.empty(0)

    def _holds(self, end: int) -> bool:
        """Whether ``keys`` is still the start of the buffer, and the buffer has room for ``end`` tokens."""
        keys = self.keys
        return (
            keys.data_ptr() == self._keys.data_ptr()
            and keys.shape[:2] == self._keys.shape[:2]
            and end <= self._keys.shape[-2]
        )

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
            self.keys, self.values = key_states[..., :0, :], value_states[..., :0, :]
        start = self.keys.shape[-2]
        end = start + key_states.shape[-2]
        if not self._holds(end):
            size = max(end, self.capacity)
            keys, values = self.keys, self.values
            self._keys = key_states.new_empty(*key_states.shape[:2], size, key_states.shape[-1])
            self._values = value_states.new_empty(*value_states.shape[:2], size, value_states.shape[-1])
            self._keys[..., :start, :], self._values[..., :start, :] = keys, values
        self._keys[..., start:end, :], self._values[..., start:end, :] = key_states, value_states
        self.keys, self.values = self._keys[..., :end, :], self._values[..., :end, :]
        return self.keys, self.values

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        super().batch_select_indices(indices)
        self._keys = self._values = torch.empty(0)  # the rows selected continue in buffers of their own


def preallocated_cache(config, capacity: int) -> DynamicCache:
    """transformers' cache for ``config``, its plain key/value layers preallocated for ``capacity`` tokens (sliding
    windows and recurrent states keep their own layers)."""
    cache = DynamicCache(config=config)
    cache.layers = [PreallocatedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in cache.layers]
    return cache


class PackedLinear(nn.Linear):
    """A linear layer on a given ``[out, in]`` weight whose product runs on a oneDNN-packed copy of it (CPU, float32
    or bfloat16), its input cast to the weight's dtype as autocast would. ``weight`` stays readable for code that
    reads it directly."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None):
        nn.Module.__init__(self)
        self.out_features, self.in_features = weight.shape
        self.weight = nn.Parameter(weight, requires_grad=False)
        self.bias = None if bias is None else nn.Parameter(bias.detach().to(weight.dtype), requires_grad=False)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, PACK_ROWS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x.to(self.weight.dtype), self.packed, self.bias, "none", [], "")


def _pack_dtype(weight: torch.Tensor) -> torch.dtype | None:
    """The dtype a weight is packed in: under CPU bfloat16 autocast bfloat16 (what autocast casts it to on every
    call; the packed product is not autocast's to cast), else its own (float32, bfloat16); None where oneDNN's
    packed product does not apply (another device or dtype, another autocast dtype)."""
    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return None
    if torch.is_autocast_enabled("cpu"):
        return torch.bfloat16 if torch.get_autocast_dtype("cpu") == torch.bfloat16 else None
    return weight.dtype if weight.dtype in (torch.float32, torch.bfloat16) else None


def _dense_weight(layer: nn.Module) -> torch.Tensor | None:
    """A linear layer's weight as a float ``[out, in]`` tensor (4-bit dequantised, Conv1D transposed), or None."""
    weight = getattr(layer, "weight", None)
    if type(layer).__name__ == "Linear4bit":
        import bitsandbytes as bnb

        return bnb.functional.dequantize_4bit(weight.data, weight.quant_state)
    if isinstance(layer, nn.Linear) and weight.is_floating_point():  # not bitsandbytes' 8-bit weights
        return weight.detach()
    if type(layer).__name__ == "Conv1D":
        return weight.detach().t()
    return None


def inference_linear(module: nn.Module, pack: bool = True) -> nn.Linear | None:
    """A linear layer computing what ``module`` computes in eval mode (a LoRA layer with its adapter merged into the
    base weight, a 4-bit layer dequantised, GPT-2's Conv1D transposed; packed where ``pack`` and the CPU allow), or
    None where there is nothing to gain or it cannot (DoRA, 8-bit, other layers)."""
    if hasattr(module, "get_base_layer"):  # a peft LoRA layer
        if module.merged or module.use_dora.get("default"):
            return None
        base = module.get_base_layer()
        weight = _dense_weight(base)
        if weight is None:
            return None
        delta = module.get_delta_weight("default")
        weight = (weight + (delta.t() if type(base).__name__ == "Conv1D" else delta)).to(weight.dtype)
    elif type(module).__name__ == "Linear4bit":
        base, weight = module, _dense_weight(module)
    elif type(module) is nn.Linear or type(module).__name__ == "Conv1D":  # plain weights gain only by packing
        base, weight = module, _dense_weight(module)
        if weight is None or not pack or _pack_dtype(weight) is None:
            return None
    else:
        return None
    dtype = _pack_dtype(weight) if pack else None
    if dtype is not None:
        return PackedLinear(weight.to(dtype).contiguous(), base.bias)
    dense = nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None, device=weight.device,
                      dtype=weight.dtype)  # fmt: skip
    dense.requires_grad_(False)
    with torch.no_grad():
        dense.weight.copy_(weight)
        if dense.bias is not None:
            dense.bias.copy_(base.bias)
    return dense


@contextlib.contextmanager
def inference_weights(model: nn.Module, pack: bool = True) -> Iterator[None]:
    """``model``'s linear layers replaced by :func:`inference_linear`'s while inside, put back on exit."""
    swapped: list[tuple[str, nn.Module, nn.Module]] = []
    for name, module in list(model.named_modules()):
        if not name or any(name.startswith(f"{done}.") for done, _, _ in swapped):
            continue
        fast = inference_linear(module, pack)
        if fast is not None:
            parent = model.get_submodule(name.rpartition(".")[0])
            setattr(parent, name.rpartition(".")[2], fast)
            swapped.append((name, parent, module))
    try:
        yield
    finally:
        for name, parent, module in swapped:
            setattr(parent, name.rpartition(".")[2], module)
