"""``vit-vq`` and ``clip-vq``: a library ViT's patch features, a VQ codebook, and a ViT-block decoder back to frames."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

import wmbench_vision.models as models
from wmbench.engine.agent import parameter_count
from wmbench.engine.tokenizer import Tokenizer
from wmbench.errors import WmbenchError
from wmbench.plugins import import_module


class TimmFeatures(nn.Module):
    """A timm ViT's normalised patch tokens (prefix tokens dropped): ``[B, N, width]``."""

    def __init__(self, vit: nn.Module):
        super().__init__()
        self.vit = vit
        self.width, self.heads = vit.embed_dim, vit.blocks[0].attn.num_heads
        self.mean, self.std = vit.pretrained_cfg["mean"], vit.pretrained_cfg["std"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vit.forward_features(x)[:, self.vit.num_prefix_tokens :]


class ClipFeatures(nn.Module):
    """An open_clip image encoder's patch tokens after ``ln_post``: ``[B, N, width]``."""

    def __init__(self, visual: nn.Module):
        super().__init__()
        self.visual = visual
        visual.output_tokens = True
        block = visual.transformer.resblocks[0]
        self.width, self.heads = block.attn.embed_dim, block.attn.num_heads
        self.mean, self.std = visual.image_mean, visual.image_std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)[1]


class PatchDecoder(nn.Module):
    """Codebook vectors ``[B, N, code_dim]`` to frames in [-1, 1] space: learned positions, timm ViT blocks, pixels."""

    def __init__(self, code_dim: int, width: int, heads: int, layers: int, grid: int, patch: int):
        super().__init__()
        vt = import_module("timm.models.vision_transformer")
        self.grid, self.patch = grid, patch
        self.proj_in = nn.Linear(code_dim, width)
        self.pos = nn.Parameter(torch.randn(1, grid * grid, width) * 0.02)
        self.blocks = nn.Sequential(*(vt.Block(width, heads, qkv_bias=True) for _ in range(layers)))
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, 3 * patch * patch)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        b, g, p = codes.size(0), self.grid, self.patch
        x = self.head(self.norm(self.blocks(self.proj_in(codes) + self.pos)))
        return x.view(b, g, g, 3, p, p).permute(0, 3, 1, 4, 2, 5).reshape(b, 3, g * p, g * p)


class PatchVQTokenizer(Tokenizer):
    """Encoder patch features, a linear map to ``code_dim``, an L2 codebook, and a :class:`PatchDecoder`.

    One token per patch, in the encoder's row-major patch order. Losses are the vqvae tokenizer's: L1 reconstruction
    in [-1, 1], codebook ``(sg(z) - z_q)^2`` plus ``beta (z - sg(z_q))^2`` commitment, straight-through gradients.
    """

    def __init__(self, encoder: TimmFeatures | ClipFeatures, options, frame_size: int, facts: dict[str, Any]):
        super().__init__()
        grid = frame_size // options.patch_size
        self.frame_size, self.options, self._facts = frame_size, options, facts
        self.vocab_size, self.tokens_per_frame = options.vocab_size, grid * grid
        self.encoder = encoder.requires_grad_(options.train_encoder)
        self.register_buffer("mean", torch.tensor(encoder.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(encoder.std).view(1, 3, 1, 1), persistent=False)
        self.pre_quant = nn.Linear(encoder.width, options.code_dim)
        self.embedding = nn.Embedding(options.vocab_size, options.code_dim)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / options.vocab_size, 1.0 / options.vocab_size)
        self.decoder = PatchDecoder(
            options.code_dim, encoder.width, encoder.heads, options.decoder_layers, grid, options.patch_size
        )

    def describe(self) -> dict[str, Any]:
        return {
            **self._facts,
            "encoder": "trained" if self.options.train_encoder else "frozen",
            "patch_size": self.options.patch_size,
            "tokens_per_frame": self.tokens_per_frame,
            "vocab_size": self.vocab_size,
            "parameters": parameter_count(self),
            "trainable_parameters": parameter_count(self, trainable=True),
        }

    def _latents(self, frames: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents ``z`` [B, N, code_dim] of frames in [0, 1]."""
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[2:] != (self.frame_size, self.frame_size):
            raise ValueError(f"expected frames [B, 3, {self.frame_size}, {self.frame_size}], got {tuple(frames.shape)}")
        x = (frames - self.mean.to(frames.dtype)) / self.std.to(frames.dtype)
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.options.train_encoder):
            features = self.encoder(x)
        return self.pre_quant(features)

    def _quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codebook entries (L2): tokens [B, N] and their vectors z_q [B, N, code_dim]."""
        codebook = self.embedding.weight
        dist = z.pow(2).sum(-1, keepdim=True) + codebook.pow(2).sum(1) - 2 * z @ codebook.t()
        tokens = dist.argmin(dim=-1)
        return tokens, self.embedding(tokens)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        return self._quantise(self._latents(frames))[0]

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2 or tokens.shape[1] != self.tokens_per_frame:
            raise ValueError(f"expected tokens [B, {self.tokens_per_frame}], got {tuple(tokens.shape)}")
        return self.decoder(self.embedding(tokens)).add(1).div(2).clamp(0, 1)

    def loss(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        z = self._latents(frames)
        _, z_q = self._quantise(z)
        rec = self.decoder(z + (z_q - z).detach())  # straight-through estimator
        beta = self.options.commitment_weight
        commitment = (z.detach() - z_q).pow(2).mean() + beta * (z - z_q.detach()).pow(2).mean()
        reconstruction = (frames.mul(2).sub(1) - rec).abs().mean()
        return {"commitment": commitment, "reconstruction": reconstruction, "total": commitment + reconstruction}


def build_tokenizer(family: str, options, frame_size: int) -> PatchVQTokenizer:
    """``vit-vq`` (timm) or ``clip-vq`` (open_clip's image encoder) for square frames of ``frame_size`` pixels."""
    p = options.patch_size
    if p < 1 or frame_size % p:
        raise WmbenchError(f"tokenizer.patch_size {p} does not divide the frame size {frame_size}")
    if options.vocab_size < 2 or options.code_dim < 1 or options.decoder_layers < 0:
        raise WmbenchError("tokenizer.vocab_size must be at least 2, code_dim at least 1, decoder_layers at least 0")
    if family == "timm":
        vit, facts = models.timm_model(options, img_size=frame_size, patch_size=p, num_classes=0)
        encoder: TimmFeatures | ClipFeatures = TimmFeatures(vit)
    else:
        clip, facts = models.clip_model(options, "vision", image_size=frame_size, patch_size=p)
        encoder = ClipFeatures(clip.visual)
    return PatchVQTokenizer(encoder, options, frame_size, facts)
