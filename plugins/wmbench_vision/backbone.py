"""timm and open_clip transformer blocks as a causal wmbench backbone with a key/value cache.

The library's own block modules and weights do the work; the two ``*Stack.forward`` loops below only re-run each
block's attention through a causal mask and the cache, step for step as the library's forward does (a test checks
that, without the mask, they equal the library's forward). Positions are the world model's: learned absolute
embeddings over ``max_tokens`` as in ``scratch``; the library model's own position embedding is not used.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import wmbench_vision.models as models
from wmbench.engine.agent import parameter_count
from wmbench.engine.backbone import Backbone, BackboneShape
from wmbench.errors import WmbenchError
from wmbench.plugins import import_module
from wmbench_scratch.transformer import KVCache, attend, positions_of
from wmbench_vision.models import MODES

DEFAULT_TARGETS = {"timm": ("qkv", "proj"), "open_clip": ("out_proj", "c_fc", "c_proj")}


class TimmStack(nn.Module):
    """The blocks and final norm of a timm ``VisionTransformer`` (``vision_transformer.Block`` with ``Attention``)."""

    def __init__(self, vit: nn.Module, name: str):
        super().__init__()
        vt = import_module("timm.models.vision_transformer")
        blocks = getattr(vit, "blocks", None)
        if not blocks or any(type(b) is not vt.Block or type(b.attn) is not vt.Attention for b in blocks):
            raise WmbenchError(f"timm model {name!r} is not a plain ViT (vision_transformer.Block with Attention)")
        self.blocks, self.norm, self.width = blocks, vit.norm, vit.embed_dim
        self.num_heads, self.head_dim = blocks[0].attn.num_heads, blocks[0].attn.head_dim

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, causal: bool = True, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t, _ = x.shape
        for layer, block in enumerate(self.blocks):
            attn = block.attn
            h = block.norm1(x)
            q, k, v = attn.qkv(h).reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            q, k = attn.q_norm(q), attn.k_norm(k)
            dropout = attn.attn_drop.p if self.training else 0.0
            y = attend(q, k, v, cache, layer, dropout=dropout, mask=mask, causal=causal)
            y = attn.norm(y.transpose(1, 2).reshape(b, t, attn.attn_dim))
            if getattr(attn, "gate", None) is not None:
                y = y * attn.gate(h).sigmoid()
            x = x + block.drop_path1(block.ls1(attn.proj_drop(attn.proj(y))))
            x = x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))
        return self.norm(x)


class ClipStack(nn.Module):
    """An open_clip tower's ``ResidualAttentionBlock``s (``nn.MultiheadAttention``) between its layer norms."""

    def __init__(self, blocks: nn.ModuleList, norm_in: nn.Module, norm_out: nn.Module, name: str):
        super().__init__()
        ot = import_module("open_clip.transformer")
        plain = all(
            type(b) is ot.ResidualAttentionBlock
            and not hasattr(b, "ln_1_kv")
            and b.attn._qkv_same_embed_dim
            and b.attn.batch_first
            for b in blocks
        )
        if not blocks or not plain:
            raise WmbenchError(f"open_clip model {name!r} does not use plain ResidualAttentionBlocks")
        self.blocks, self.norm_in, self.norm_out = blocks, norm_in, norm_out
        attn = blocks[0].attn
        self.width, self.num_heads, self.head_dim = attn.embed_dim, attn.num_heads, attn.head_dim

    def forward(
        self, x: torch.Tensor, cache: KVCache | None = None, causal: bool = True, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        b, t, d = x.shape
        x = self.norm_in(x)
        for layer, block in enumerate(self.blocks):
            attn = block.attn
            qkv = F.linear(block.ln_1(x), attn.in_proj_weight, attn.in_proj_bias)
            q, k, v = qkv.reshape(b, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
            dropout = attn.dropout if self.training else 0.0
            y = attend(q, k, v, cache, layer, dropout=dropout, mask=mask, causal=causal)
            x = x + block.ls_1(attn.out_proj(y.transpose(1, 2).reshape(b, t, d)))
            x = x + block.ls_2(block.mlp(block.ln_2(x)))
        return self.norm_out(x)


class VisionBackbone(Backbone):
    """A library block stack fed the world model's embeddings plus learned positions, causally, with a KV cache."""

    takes_mask = True

    def __init__(self, stack: TimmStack | ClipStack, width: int, max_tokens: int, facts: dict[str, Any]):
        super().__init__()
        self.stack, self.d_model, self.max_tokens, self._facts = stack, width, max_tokens, facts
        self.pos_emb = nn.Embedding(max_tokens, width)
        nn.init.normal_(self.pos_emb.weight, std=0.02)

    def new_cache(self, batch_size: int) -> KVCache:
        p = self.pos_emb.weight
        shape = (batch_size, self.stack.num_heads, self.max_tokens, self.stack.head_dim)
        layers = range(len(self.stack.blocks))
        return KVCache([p.new_zeros(shape) for _ in layers], [p.new_zeros(shape) for _ in layers])

    def forward(
        self,
        embeds: torch.Tensor,
        cache: KVCache | None = None,
        *,
        mask: torch.Tensor | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        positions = positions_of(embeds, cache, self.max_tokens, mask, positions)
        x = self.stack(embeds + self.pos_emb(positions), cache, mask=mask)
        if cache is not None:
            cache._num_tokens += embeds.size(1)
        return x

    def describe(self) -> dict[str, Any]:
        return {
            **self._facts,
            "d_model": self.d_model,
            "layers": len(self.stack.blocks),
            "heads": self.stack.num_heads,
            "max_tokens": self.max_tokens,
            "positions": "the world model's learned absolute positions (as scratch); the model's own are unused",
            "parameters": parameter_count(self),
            "trainable_parameters": parameter_count(self, trainable=True),
        }


def add_lora(stack: nn.Module, family: str, options) -> list[str]:
    """peft LoRA adapters on the stack's linear layers named in ``options.lora_targets`` (or the defaults)."""
    peft = import_module("peft")
    if options.lora_rank < 1:
        raise WmbenchError(f"backbone.lora_rank must be at least 1, got {options.lora_rank}")
    targets = list(options.lora_targets or DEFAULT_TARGETS[family])
    linear = {n.rsplit(".", 1)[-1] for n, m in stack.named_modules() if isinstance(m, nn.Linear)}
    missing = sorted(set(targets) - linear)
    if missing:
        raise WmbenchError(f"backbone.lora_targets {missing} are not linear layers of the model ({sorted(linear)})")
    config = peft.LoraConfig(
        r=options.lora_rank, lora_alpha=options.lora_alpha, lora_dropout=options.lora_dropout, target_modules=targets
    )
    peft.inject_adapter_in_model(config, stack)
    for name, p in stack.named_parameters():
        p.requires_grad_("lora_" in name)
    return targets


def _stack(family: str, options, name: str) -> tuple[TimmStack | ClipStack, dict[str, Any]]:
    if family == "timm":
        vit, facts = models.timm_model(options)
        return TimmStack(vit, name), facts
    if options.tower not in ("text", "vision"):
        raise WmbenchError(f"backbone.tower must be text or vision, got {options.tower!r}")
    clip, facts = models.clip_model(options, options.tower)
    facts["tower"] = options.tower
    if options.tower == "text":
        return ClipStack(clip.transformer.resblocks, nn.Identity(), clip.ln_final, name), facts
    visual = clip.visual
    return ClipStack(visual.transformer.resblocks, visual.ln_pre, visual.ln_post, name), facts


def build_backbone(family: str, options, shape: BackboneShape) -> VisionBackbone:
    """The ``vit`` (timm) or ``clip`` (open_clip) backbone in ``options.mode``."""
    if options.mode not in MODES:
        raise WmbenchError(f"backbone.mode must be one of {', '.join(MODES)}, got {options.mode!r}")
    stack, facts = _stack(family, options, options.model)
    facts.update(mode=options.mode, lora=None)
    if options.mode == "lora":
        targets = add_lora(stack, family, options)
        facts["lora"] = {
            "rank": options.lora_rank,
            "alpha": options.lora_alpha,
            "dropout": options.lora_dropout,
            "targets": targets,
        }
    else:
        stack.requires_grad_(options.mode == "full")
    return VisionBackbone(stack, stack.width, shape.max_tokens, facts)
