"""The built-in ``patch-kmeans`` tokenizer: the conformance kit, exact patch round trips, rare patches kept."""

from __future__ import annotations

import pytest
import torch

from wmbench.errors import WmbenchError
from wmbench.plugins import registry
from wmbench.testing import check_tokenizer
from wmbench_vqvae import PatchKMeansOptions, build_patch_kmeans


def test_registered_and_passes_the_kit():
    entry = registry().get("tokenizer", "patch-kmeans")
    assert entry.options is PatchKMeansOptions
    check_tokenizer(lambda: build_patch_kmeans(PatchKMeansOptions(), 32), 32)


def test_tokens_are_nearest_patches_and_decode_pastes_them():
    torch.manual_seed(0)
    tok = build_patch_kmeans(PatchKMeansOptions(vocab_size=4, patch_size=4), 8)
    frames = torch.rand(3, 3, 8, 8)
    with torch.no_grad():
        tok.codebook[:] = torch.stack([frames[0, :, :4, :4].flatten(), frames[1, :, 4:, 4:].flatten(),
                                       torch.zeros(48), torch.ones(48)])  # fmt: skip
    tokens = tok.encode(frames)
    assert tokens.shape == (3, 4) and tokens[0, 0] == 0 and tokens[1, 3] == 1
    decoded = tok.decode(tokens)
    assert torch.equal(decoded[0, :, :4, :4], frames[0, :, :4, :4])
    assert torch.equal(decoded[1, :, 4:, 4:], frames[1, :, 4:, 4:])


def test_idle_entries_restart_at_the_worst_fitted_patches():
    """Entries that win no patch for restart_after training batches move onto the distinct patches the codebook fits
    worst (a rare bright patch first), and then win them."""
    tok = build_patch_kmeans(PatchKMeansOptions(vocab_size=3, patch_size=4, restart_after=2), 8)
    with torch.no_grad():
        tok.codebook.copy_(torch.stack([torch.zeros(48), torch.full((48,), -5.0), torch.full((48,), -5.0)]))
    frames = torch.zeros(2, 3, 8, 8)
    frames[1, :, 4:, :4] = 1.0  # one bright patch among dark ones
    tok.train()
    for _ in range(2):
        tok.loss(frames)
    assert tok.idle.tolist() == [0, 2, 2] and torch.equal(tok.codebook[1], torch.full((48,), -5.0))
    tok.loss(frames)  # the third batch restarts entries 1 and 2 before its loss
    assert torch.equal(tok.codebook[1], torch.ones(48)) and torch.equal(tok.codebook[2], torch.zeros(48))
    tok.eval()
    assert tok.encode(frames)[1].tolist() == [0, 0, 1, 0]


@pytest.mark.parametrize("options, size", [(PatchKMeansOptions(patch_size=5), 32), (PatchKMeansOptions(vocab_size=1), 32),
                                           (PatchKMeansOptions(restart_after=0), 32)])  # fmt: skip
def test_bad_options_refused(options, size):
    with pytest.raises(WmbenchError, match="patch-kmeans"):
        build_patch_kmeans(options, size)
