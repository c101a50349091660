"""Built-in wmbench plugin: vision. timm and open_clip vision transformers as backbones and tokenizers.

Backbones ``vit`` (the blocks of a timm ViT) and ``clip`` (an open_clip tower: text by default, vision as an option)
run the library's own blocks and weights causally with a key/value cache. Tokenizers ``vit-vq`` (a timm ViT encoder)
and ``clip-vq`` (open_clip's image encoder, frozen by default) quantise patch features and decode them to frames.
This module stays light: timm and open_clip are imported when a model is built.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from wmbench.hookspecs import hookimpl


@dataclass(frozen=True)
class _Weights:
    """Where the library model's weights come from (shared by all four)."""

    pretrained: bool = False
    """True: the library's pretrained weights through its own download (timm: the model name's ``.tag``; open_clip:
    ``tag``). False: the library's own random init. Ignored when ``weights`` is given."""
    weights: str | None = None
    """A local checkpoint file of the same model, loaded through timm's (``pretrained_cfg_overlay``) or open_clip's
    (``pretrained=PATH``) own loader."""
    width: int | None = None
    """Override the model's width (None: the model's own); with pretrained weights it must match them."""
    layers: int | None = None
    """Override the model's number of blocks (None: the model's own)."""
    heads: int | None = None
    """Override the model's attention heads (None: the model's own)."""


@dataclass(frozen=True)
class _Backbone(_Weights):
    mode: str = "full"
    """frozen (only the world model's positions, tables and heads train), lora (peft adapters) or full."""
    lora_rank: int = 8
    """LoRA rank."""
    lora_alpha: int = 16
    """LoRA scaling numerator: updates are scaled by alpha / rank."""
    lora_dropout: float = 0.05
    """Dropout on the LoRA branch's input."""
    lora_targets: tuple[str, ...] = ()
    """Linear module names LoRA adapts; empty: qkv, proj (timm) or out_proj, c_fc, c_proj (open_clip)."""


@dataclass(frozen=True)
class ViTOptions(_Backbone):
    """Options of the ``vit`` backbone (``--set backbone.vit.layers=2``)."""

    model: str = "vit_tiny_patch16_224"
    """timm model name, optionally with a pretrained tag (``vit_base_patch16_224.augreg_in21k``)."""


@dataclass(frozen=True)
class CLIPOptions(_Backbone):
    """Options of the ``clip`` backbone."""

    model: str = "ViT-B-32"
    """open_clip model name (``open_clip.list_models()``)."""
    tag: str | None = None
    """open_clip pretrained tag for ``pretrained=true`` (``open_clip.list_pretrained_tags_by_model``); None: first."""
    tower: str = "text"
    """text (causal in CLIP already) or vision: which tower's transformer runs as the backbone."""


@dataclass(frozen=True)
class _VQ(_Weights):
    patch_size: int = 8
    """Pixels per patch side; one token per patch, so (frame size / patch_size)^2 tokens per frame."""
    vocab_size: int = 512
    """Codebook entries, i.e. distinct token ids."""
    code_dim: int = 32
    """Width of a codebook vector."""
    decoder_layers: int = 4
    """timm ViT blocks in the decoder (at the encoder's width and heads)."""
    commitment_weight: float = 1.0
    """beta: weight of the encoder-side term ``(z - sg(z_q))^2`` in the commitment loss (as vqvae)."""


@dataclass(frozen=True)
class ViTVQOptions(_VQ):
    """Options of the ``vit-vq`` tokenizer."""

    model: str = "vit_tiny_patch16_224"
    """timm model name of the encoder (built at the frame size and ``patch_size``)."""
    train_encoder: bool = True
    """False: freeze the encoder; the quantiser's projection, codebook and decoder still train."""


@dataclass(frozen=True)
class CLIPVQOptions(_VQ):
    """Options of the ``clip-vq`` tokenizer."""

    model: str = "ViT-B-32"
    """open_clip model name whose image encoder gives the patch features (built at the frame size, ``patch_size``)."""
    tag: str | None = None
    """open_clip pretrained tag for ``pretrained=true``; None: its first."""
    train_encoder: bool = False
    """True: fine-tune the image encoder too (frozen by default)."""


def _backbone(family: str, options, shape):
    from wmbench_vision.backbone import build_backbone

    return build_backbone(family, options, shape)


def _tokenizer(family: str, options, frame_size: int):
    from wmbench_vision.tokenizer import build_tokenizer

    return build_tokenizer(family, options, frame_size)


@hookimpl
def wmbench_register_backbones(register):
    register(
        "vit",
        functools.partial(_backbone, "timm"),
        options=ViTOptions,
        summary="timm ViT blocks run causally with a KV cache (frozen, LoRA or full; learned positions)",
    )
    register(
        "clip",
        functools.partial(_backbone, "open_clip"),
        options=CLIPOptions,
        summary="open_clip CLIP transformer (text tower, or vision) run causally with a KV cache",
    )


@hookimpl
def wmbench_register_tokenizers(register):
    register(
        "vit-vq",
        functools.partial(_tokenizer, "timm"),
        options=ViTVQOptions,
        summary="timm ViT patch encoder, VQ codebook (straight-through), ViT-block decoder",
    )
    register(
        "clip-vq",
        functools.partial(_tokenizer, "open_clip"),
        options=CLIPVQOptions,
        summary="open_clip image encoder's patch features (frozen), VQ codebook, trained ViT-block decoder",
    )
