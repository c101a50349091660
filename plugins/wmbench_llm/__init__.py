"""Built-in wmbench plugin: llm. Pretrained Hugging Face language models as world-model backbones.

Four ids, one options dataclass: ``llm-frozen`` (only the world model's own embeddings and heads train),
``llm-lora`` (peft LoRA), ``llm-qlora`` (4-bit NF4 weights plus LoRA) and ``llm-full`` (every weight trains).
This module stays light: transformers, peft and bitsandbytes are imported when a backbone is built.
"""

from __future__ import annotations

import functools

from wmbench.hookspecs import hookimpl
from wmbench_llm.options import LLMOptions

MODES = {
    "llm-frozen": ("frozen", "pretrained LLM, all its weights frozen"),
    "llm-lora": ("lora", "pretrained LLM with LoRA adapters (peft)"),
    "llm-qlora": ("qlora", "pretrained LLM in 4-bit NF4 (bitsandbytes) with LoRA adapters"),
    "llm-full": ("full", "pretrained LLM, every weight fine-tuned"),
}


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
