"""Built-in wmbench plugin: llm. Pretrained Hugging Face language models as world-model backbones.

Four ids, one options dataclass: ``llm-frozen`` (only the world model's own embeddings and heads train),
``llm-lora`` (peft LoRA), ``llm-qlora`` (4-bit NF4 weights plus LoRA) and ``llm-full`` (every weight trains).
This module stays light: transformers, peft and bitsandbytes are imported when a backbone is built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wmbench.hookspecs import hookimpl

MODES = {
    "llm-frozen": ("frozen", "pretrained LLM, all its weights frozen"),
    "llm-lora": ("lora", "pretrained LLM with LoRA adapters (peft)"),
    "llm-qlora": ("qlora", "pretrained LLM in 4-bit NF4 (bitsandbytes) with LoRA adapters"),
    "llm-full": ("full", "pretrained LLM, every weight fine-tuned"),
}


@dataclass(frozen=True)
class LLMOptions:
    """Options of the ``llm-*`` backbones (the id fixes the mode)."""

    model: str = "smollm2-135m"
    """Hub name, local folder, ``.gguf`` file, or an offline name (``wmbench models list``)."""
    pretrained: bool = True
    """False: the same architecture with random weights (the control for pretraining)."""
    lora_rank: int = 8
    """LoRA rank (lora and qlora)."""
    lora_alpha: int = 16
    """LoRA scaling numerator: updates are scaled by alpha / rank."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    lora_targets: tuple[str, ...] = ()
    """Module names LoRA adapts; empty: q/k/v/o (Llama-style), c_attn/c_proj (GPT-2), query/key/value/dense (BERT)."""
    quant_double: bool = True
    """qlora: also quantise the quantisation constants (double quantisation)."""
    quant_compute_dtype: str = "float32"
    """qlora: dtype the 4-bit layers compute in: float32, or bfloat16 (for GPUs: on CPUs it is many times slower)."""
    embeddings: str = "project"
    """project: the world model's own tables at the LLM's width; reuse: image tokens use the LLM's token embeddings."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) for hub names."""


def _build(mode: str, options: LLMOptions, shape):
    from wmbench_llm.loading import build_backbone

    return build_backbone(options, mode, shape)


@hookimpl
def wmbench_register_backbones(register):
    for name, (mode, summary) in MODES.items():
        register(name, functools.partial(_build, mode), options=LLMOptions, summary=summary)


@hookimpl
def wmbench_add_commands(cli):
    from wmbench_llm.cli import models

    cli.add_command(models)
