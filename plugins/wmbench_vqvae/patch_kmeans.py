"""``patch-kmeans``: a codebook of raw pixel patches, fitted by online k-means, as a
:class:`wmbench.engine.tokenizer.Tokenizer`.

A frame is cut into ``patch_size`` squares; each is the token of its nearest codebook patch (L2), and decoding pastes
the codebook patches back. ``loss`` is the mean squared distance of the patches to their nearest entry, which a
gradient optimiser turns into online k-means (each entry moves toward the mean of the patches it wins). An entry
that has won no patch for ``restart_after`` training batches restarts at the batch's patch that the codebook
fits worst, before the loss is taken, so rare patches (a ball, a paddle) get entries of their own instead of being
averaged into the background, as an autoencoder's codebook tends to do on small frames.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from wmbench.engine.tokenizer import Tokenizer
from wmbench.errors import WmbenchError

if TYPE_CHECKING:
    from . import PatchKMeansOptions


class PatchKMeansTokenizer(Tokenizer):
    """Codebook ``[vocab_size, 3 * patch_size**2]`` of patches in [0, 1]; ``idle`` counts the training batches since
    each entry last won a patch."""

    def __init__(self, options: PatchKMeansOptions, frame_size: int):
        super().__init__()
        if options.patch_size < 1 or frame_size % options.patch_size:
            raise WmbenchError(
                f"patch-kmeans: frame size {frame_size} is not a multiple of patch_size {options.patch_size}"
            )
        if options.vocab_size < 2 or options.restart_after < 1:
            raise WmbenchError("patch-kmeans: vocab_size must be at least 2 and restart_after at least 1")
        self.options, self.frame_size, self.patch = options, frame_size, options.patch_size
        self.grid = frame_size // options.patch_size
        self.vocab_size, self.tokens_per_frame = options.vocab_size, self.grid**2
        self.codebook = nn.Parameter(torch.rand(options.vocab_size, 3 * options.patch_size**2))
        self.register_buffer("idle", torch.zeros(options.vocab_size, dtype=torch.long))

    def describe(self) -> dict[str, Any]:
        return {"tokens_per_frame": self.tokens_per_frame, "vocab_size": self.vocab_size, "patch_size": self.patch,
                "parameters": self.codebook.numel()}  # fmt: skip

    def _patches(self, frames: torch.Tensor) -> torch.Tensor:
        """``[B, tokens_per_frame, 3 * patch**2]``, row-major over the grid."""
        if frames.dim() != 4 or frames.shape[1] != 3 or frames.shape[2:] != (self.frame_size, self.frame_size):
            raise ValueError(f"patch-kmeans expects frames [B, 3, {self.frame_size}, {self.frame_size}], got {tuple(frames.shape)}")  # fmt: skip
        p = self.patch
        x = frames.unfold(2, p, p).unfold(3, p, p)  # [B, 3, g, g, p, p]
        return x.permute(0, 2, 3, 1, 4, 5).reshape(len(frames), self.tokens_per_frame, -1)

    def _nearest(self, patches: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Tokens ``[N]`` and squared distances ``[N]`` of flat patches ``[N, D]`` to their nearest entry."""
        c = self.codebook.to(patches.dtype)
        dist = patches.pow(2).sum(1, keepdim=True) + c.pow(2).sum(1) - 2 * patches @ c.t()
        best, tokens = dist.min(1)
        return tokens, best.clamp_min(0)

    def encode(self, frames: torch.Tensor) -> torch.Tensor:
        patches = self._patches(frames.float())
        return self._nearest(patches.flatten(0, 1))[0].view(len(frames), -1)

    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        b, k = tokens.shape
        if k != self.tokens_per_frame:
            raise ValueError(f"patch-kmeans expects {self.tokens_per_frame} tokens per frame, got {k}")
        g, p = self.grid, self.patch
        x = self.codebook[tokens].view(b, g, g, 3, p, p).permute(0, 3, 1, 4, 2, 5)
        return x.reshape(b, 3, g * p, g * p).clamp(0, 1)

    @torch.no_grad()
    def _restart(self, patches: torch.Tensor) -> None:
        """Move entries idle for ``restart_after`` batches onto the worst-fitted distinct patches of ``patches``."""
        dead = (self.idle >= self.options.restart_after).nonzero().flatten()
        if not len(dead):
            return
        distinct = torch.unique(patches, dim=0)
        error = self._nearest(distinct)[1]
        worst = distinct[error.argsort(descending=True)[: len(dead)]]
        self.codebook[dead[: len(worst)]] = worst.to(self.codebook.dtype)
        self.idle[dead[: len(worst)]] = 0

    def loss(self, frames: torch.Tensor) -> dict[str, torch.Tensor]:
        patches = self._patches(frames.float()).flatten(0, 1)
        if self.training:
            self._restart(patches.detach())
        tokens, _ = self._nearest(patches.detach())
        if self.training:
            with torch.no_grad():
                won = torch.bincount(tokens, minlength=self.vocab_size) > 0
                self.idle.add_(1).masked_fill_(won, 0)
        error = (patches - self.codebook[tokens].to(patches.dtype)).pow(2).mean()
        return {"reconstruction": error, "total": error}
