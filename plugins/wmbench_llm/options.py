"""The options of the ``llm-*`` backbones (the backbone id fixes the mode)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LLMOptions:
    """Options of the ``llm-*`` backbones (the id fixes the mode)."""

    model: str = "smollm2-135m"
    """Hub name, local folder, ``.gguf`` file, or an offline name (``wmbench models list``)."""
    pretrained: bool = True
    """False: the same architecture with random weights (the control for pretraining)."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub names."""
    trust_remote_code: bool = False
    """Run a hub model's own Python code (models whose architecture transformers lacks). Only if you trust it."""
    dtype: str = "float32"
    """Dtype of the LLM's weights: float32, bfloat16 or float16 (on CPUs without bf16 units bfloat16 is slow)."""
    attn_implementation: str | None = None
    """transformers' attention kernel: eager, sdpa, flash_attention_2, ...; None: transformers' default."""
    device_map: str | None = None
    """Where transformers loads the weights (its ``device_map``: cpu, cuda, cuda:1, auto): on a GPU the weights go
    straight there and 4-bit weights are quantised there; None: the CPU (the run moves the model to its device)."""
    gradient_checkpointing: bool = False
    """Recompute the LLM's activations in the backward pass: less memory, more time."""
    load_in_8bit: bool = False
    """frozen and lora: load the weights in 8 bits (bitsandbytes LLM.int8)."""
    lora_rank: int = 8
    """LoRA rank (lora and qlora)."""
    lora_alpha: int = 16
    """LoRA scaling numerator: updates are scaled by alpha / rank (alpha / sqrt(rank) with rsLoRA)."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    lora_targets: tuple[str, ...] = ("all-linear",)
    """Module names LoRA adapts; ``all-linear``: every linear layer of every block, the same rule for each family."""
    lora_variant: str = "lora"
    """lora, dora (weight-decomposed LoRA) or rslora (rank-stabilised scaling)."""
    llm_lr: float | None = None
    """Learning rate of the LLM's own trainable weights (adapters or all of them); None: the world model's."""
    quant_double: bool = True
    """qlora: also quantise the quantisation constants (double quantisation)."""
    quant_compute_dtype: str = "float32"
    """qlora: dtype the 4-bit layers compute in: float32, or bfloat16 (for GPUs: on CPUs it is many times slower)."""
    embeddings: str = "project"
    """project: the world model's own tables at the LLM's width; reuse: image tokens use the LLM's token embeddings."""
