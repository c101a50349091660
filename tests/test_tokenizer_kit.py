"""The tokenizer half of the conformance kit checks what it says: reconstruction through encode and decode on real
frames (not a loss entry), and codebook usage on those frames (a collapsed codebook fails)."""

import pytest
import torch
from torch import nn

from wmbench import config as cfg
from wmbench.engine.tokenizer import Tokenizer
from wmbench.testing import check_tokenizer, real_frames


class PatchTable(Tokenizer):
    """One token per 8x8 patch, chosen by the patch's place and brightness among only ``codes`` codes, decoded through
    a learned image per code: a real tokenizer whose codebook has collapsed to ``codes`` entries."""

    vocab_size, tokens_per_frame = 64, 16

    def __init__(self, codes: int, honest: bool = True):
        super().__init__()
        self.codes, self.honest = codes, honest
        self.table = nn.Parameter(torch.randn(self.vocab_size, 3, 8, 8))

    def encode(self, frames):
        patches = frames.unfold(2, 8, 8).unfold(3, 8, 8).mean((1, 4, 5)).flatten(1)  # [B, 16]
        return (torch.arange(16) + (patches * 4).long()) % self.codes

    def decode(self, tokens):
        images = torch.sigmoid(self.table[tokens]).view(-1, 4, 4, 3, 8, 8)
        return images.permute(0, 3, 1, 4, 2, 5).reshape(-1, 3, 32, 32)

    def loss(self, frames):
        reconstruction = (self.decode(self.encode(frames)) - frames).pow(2).mean()
        whiten = (self.table - 4).pow(2).mean()  # falls as the images turn white, the reconstruction worse
        return {"total": reconstruction if self.honest else whiten, "reconstruction": reconstruction}


def _make(**kwargs):
    def make():
        torch.manual_seed(0)
        return PatchTable(**kwargs)

    return make


def test_real_frames_are_a_played_game():
    frames = real_frames(32, count=16)
    assert frames.shape == (16, 3, 32, 32) and 0 <= frames.min() and frames.max() <= 1
    assert len({f.numpy().tobytes() for f in frames}) > 8  # the game moves


def test_a_collapsed_codebook_fails_and_a_used_one_is_reported():
    with pytest.raises(AssertionError, match=r"codebook collapse: the tokens of 64 Pong frames use [123] of 64 codes"):
        check_tokenizer(_make(codes=3), 32, steps=40, lr=0.1)
    report = check_tokenizer(_make(codes=12), 32, steps=40, lr=0.1)
    assert report["codes_used"] >= 4 and report["vocab_size"] == 64
    assert report["reconstruction_mse_after"] < 0.8 * report["reconstruction_mse_before"]


def test_a_falling_total_with_no_better_reconstruction_fails():
    with pytest.raises(AssertionError, match=r"reconstruction error .* did not fall over 40 steps"):
        check_tokenizer(_make(codes=12, honest=False), 32, steps=40, lr=0.1)


def test_vqvae_at_the_smoke_preset_conforms(registry):
    options = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [], registry).tokenizer.options
    entry = registry.get("tokenizer", "vqvae")

    def make():
        torch.manual_seed(0)
        return entry.build(options, 32)

    report = check_tokenizer(make, 32)
    assert report["codes_used"] >= 4
