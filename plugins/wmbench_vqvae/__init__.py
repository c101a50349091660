"""Built-in wmbench plugin: vqvae, the IRIS VQ autoencoder tokenizer, and patch-kmeans, a codebook of raw pixel patches.

Light at import: the model (and torch) load in :func:`build`; torchvision only when LPIPS is used.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from wmbench.hookspecs import hookimpl

if TYPE_CHECKING:
    from wmbench.plugins import Register

    from .patch_kmeans import PatchKMeansTokenizer
    from .tokenizer import VQVAETokenizer


@dataclass(frozen=True)
class VQVAEOptions:
    """Options of the ``vqvae`` tokenizer; the defaults are the IRIS paper's."""

    vocab_size: int = 512
    """Codebook entries, i.e. distinct token ids."""
    embed_dim: int = 512
    """Width of a codebook vector (the quantised latent's channels)."""
    z_channels: int = 512
    """Channels of the encoder's output and of the decoder's input."""
    ch: int = 64
    """Base channel count of the encoder and decoder."""
    ch_mult: tuple[int, ...] = (1, 1, 1, 1, 1)
    """Channel multiplier per resolution level; each level but the last halves the resolution."""
    num_res_blocks: int = 2
    """Residual blocks per encoder level (the decoder has one more per level)."""
    attn_resolutions: tuple[int, ...] = (8, 16)
    """Feature-map sizes (in pixels per side) at which the levels add self-attention after each block."""
    dropout: float = 0.0
    """Dropout inside the residual blocks."""
    commitment_weight: float = 1.0
    """beta: weight of the encoder-side term ``(z - sg(z_q))^2`` in the commitment loss."""
    perceptual_weight: float = 1.0
    """Weight of the LPIPS perceptual loss in the total (only when ``lpips_weights`` is given)."""
    lpips_weights: str | None = None
    """Path of a local LPIPS state-dict file (VGG16 features and linear heads); None turns the perceptual loss off."""


def build(options: VQVAEOptions, frame_size: int) -> VQVAETokenizer:
    """The tokenizer for square RGB frames of ``frame_size`` pixels per side."""
    from .tokenizer import VQVAETokenizer

    return VQVAETokenizer(options, frame_size)


@dataclass(frozen=True)
class PatchKMeansOptions:
    """Options of the ``patch-kmeans`` tokenizer."""

    vocab_size: int = 64
    """Codebook entries, i.e. distinct token ids."""
    patch_size: int = 8
    """Side of a patch in pixels: (frame size / patch_size)**2 tokens per frame."""
    restart_after: int = 20
    """Training batches an entry may win no patch before it restarts at the worst-fitted patch of a batch."""


def build_patch_kmeans(options: PatchKMeansOptions, frame_size: int) -> PatchKMeansTokenizer:
    """The tokenizer for square RGB frames of ``frame_size`` pixels per side."""
    from .patch_kmeans import PatchKMeansTokenizer

    return PatchKMeansTokenizer(options, frame_size)


@hookimpl
def wmbench_register_tokenizers(register: Register) -> None:
    register(
        "vqvae",
        build,
        options=VQVAEOptions,
        summary="IRIS VQ autoencoder (taming-style conv encoder/decoder, L2 codebook, L1 + commitment + optional LPIPS)",
    )
    register(
        "patch-kmeans",
        build_patch_kmeans,
        options=PatchKMeansOptions,
        summary="codebook of raw pixel patches fitted by online k-means, idle entries restarted at rare patches",
    )
