"""The IRIS VQ autoencoder as a :class:`wmbench.engine.tokenizer.Tokenizer`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from wmbench.engine.tokenizer import Tokenizer
from wmbench.errors import WmbenchError

from .nets import Decoder, Encoder

if TYPE_CHECKING:
    from . import VQVAEOptions
    from .lpips import LPIPS


class VQVAETokenizer(Tokenizer):
    """Encoder, 1x1 pre-quantisation conv, codebook, 1x1 post-quantisation conv, decoder.

    Parameter names and shapes are the reference's (``encoder.*``, ``pre_quant_conv.*``, ``embedding.weight``,
    ``post_quant_conv.*``, ``decoder.*``). The optional LPIPS network is held outside the module tree, so it is
    in neither ``parameters()`` nor ``state_dict()``; it follows the frames' device and dtype in ``loss``.
    """

    def __init__(self, options: VQVAEOptions, frame_size: int):
        super().__init__()
        levels = len(options.ch_mult)
        if levels < 1:
            raise WmbenchError("vqvae ch_mult must have at least one level")
        factor = 2 ** (levels - 1)
        if frame_size < factor or frame_size % factor:
            raise WmbenchError(f"vqvae: frame size {frame_size} is not divisible by 2**(len(ch_mult)-1) = {factor}")
        self.options = options
        self.frame_size = frame_size
        self.vocab_size = options.vocab_size
        self.latent_size = frame_size // factor
        self.tokens_per_frame = self.latent_size**2
        net = dict(
            resolution=frame_size,
            ch=options.ch,
            ch_mult=tuple(options.ch_mult),
            num_res_blocks=options.num_res_blocks,
            attn_resolutions=tuple(options.attn_resolutions),
            z_channels=options.z_channels,
            dropout=options.dropout,
        )
        self.encoder = Encoder(**net)
        self.pre_quant_conv = nn.Conv2d(options.z_channels, options.embed_dim, 1)
        self.embedding = nn.Embedding(options.vocab_size, options.embed_dim)
        self.post_quant_conv = nn.Conv2d(options.embed_dim, options.z_channels, 1)
        self.decoder = Decoder(**net)
        with torch.no_grad():
            self.embedding.weight.uniform_(-1.0 / options.vocab_size, 1.0 / options.vocab_size)
        self._lpips: list[LPIPS] = []  # a plain list keeps it out of the module tree
        if options.lpips_weights is not None:
            from .lpips import load_lpips

            self._lpips.append(load_lpips(options.lpips_weights))

    def describe(self) -> dict[str, Any]:
        """Facts for summaries; JSON-ready."""
        if self._lpips:
            perceptual = f"LPIPS (VGG16) from {self.options.lpips_weights}, weight {self.options.perceptual_weight}"
        else:
            perceptual = "off (no lpips_weights file given)"
        return {
            "perceptual_loss": perceptual,
            "tokens_per_frame": self.tokens_per_frame,
            "vocab_size": self.vocab_size,
            "parameters": sum(p.numel() for p in self.parameters()),
        }

    # -- internals ------------------------------------------------------------------------------------------

    def _latents(self, x: torch.Tensor) -> torch.Tensor:
        """Pre-quantisation latents ``z`` [B, E, h, w] of inputs in [-1, 1]."""
        return self.pre_quant_conv(self.encoder(x))

    def _quantise(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Nearest codebook entries (L2): tokens [B, h*w] and the raw codebook vectors z_q [B, E, h, w]."""
        b, e, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, e)
        codebook = self.embedding.weight
        dist = flat.pow(2).sum(1, keepdim=True) + codebook.pow(2).sum(1) - 2 * flat @ codebook.t()
        tokens = dist.argmin(dim=1)
        z_q = self.embedding(tokens).view(b, h, w, e).permute(0, 3, 1, 2).contiguous()
        return tokens.view(b, h * w), z_q

    def _decode_latents(self, z_q: torch.Tensor) -> torch.Tensor:
        """Reconstruction in [-1, 1] space (not clamped) of quantised latents."""
        return self.decoder(self.post_quant_conv(z_q))

    def _check_frames(self, frames: torch.Tensor) -> None:
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[2:] != (self.frame_size, self.frame_size):
            raise ValueError(
                f"vqvae expects frames [B, 3, {self.frame_size}, {self.frame_size}], got {tuple(frames.shape)}"
            )

    # -- the Tokenizer API ----------------------------------------------------------------------------------

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        self._check_frames(frames)
        tokens, _ = self._quantise(self._latents(frames.mul(2).sub(1)))
        return tokens

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        b, k = tokens.shape
        if k != self.tokens_per_frame:
            raise ValueError(f"vqvae expects {self.tokens_per_frame} tokens per frame, got {k}")
        z_q = self.embedding(tokens).view(b, self.latent_size, self.latent_size, -1).permute(0, 3, 1, 2)
        return self._decode_latents(z_q.contiguous()).add(1).div(2).clamp(0, 1)

    def loss(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        self._check_frames(frames)
        x = frames.mul(2).sub(1)
        z = self._latents(x)
        _, z_q = self._quantise(z)
        rec = self._decode_latents(z + (z_q - z).detach())  # straight-through estimator
        beta = self.options.commitment_weight
        commitment = (z.detach() - z_q).pow(2).mean() + beta * (z - z_q.detach()).pow(2).mean()
        reconstruction = (x - rec).abs().mean()
        out = {"commitment": commitment, "reconstruction": reconstruction}
        total = commitment + reconstruction
        if self._lpips:
            lpips = self._lpips[0]
            ref = next(lpips.parameters())
            if ref.device != x.device or ref.dtype != x.dtype:
                lpips.to(device=x.device, dtype=x.dtype)
            out["perceptual"] = lpips(x, rec).mean()
            total = total + self.options.perceptual_weight * out["perceptual"]
        out["total"] = total
        return out
