"""The built-in ``vqvae`` tokenizer: reference layout, API, VQ gradients, training, checkpoints, LPIPS."""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import pluggy
import pytest
import torch

import wmbench_vqvae
from wmbench import hookspecs
from wmbench.config import build_dataclass
from wmbench.engine.tokenizer import Tokenizer
from wmbench.errors import WmbenchError
from wmbench.plugins import Registry
from wmbench_vqvae import VQVAEOptions, build

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
LAYOUT = SHARED / "reference" / "iris" / "state_dict_layout.tsv"
PAPER_PARAMETERS = 4_027_523  # IRIS.md: tokenizer without the LPIPS network

SMALL = VQVAEOptions(
    vocab_size=64, embed_dim=32, z_channels=32, ch=16, ch_mult=(1, 1, 1), num_res_blocks=1, attn_resolutions=()
)
SMALL_SIZE = 32


def small(**changes) -> Tokenizer:
    torch.manual_seed(0)
    return build(dataclasses.replace(SMALL, **changes), SMALL_SIZE)


def structured_frames(n: int = 8, size: int = SMALL_SIZE, seed: int = 0) -> torch.Tensor:
    """Random but learnable frames in [0, 1]: a colour gradient plus one bright rectangle each."""
    g = torch.Generator().manual_seed(seed)
    ramp = torch.linspace(0, 1, size)
    frames = torch.empty(n, 3, size, size)
    for i in range(n):
        colour = torch.rand(3, 1, 1, generator=g)
        frames[i] = 0.5 * colour * ramp.view(1, 1, -1) + 0.2 * ramp.view(1, -1, 1)
        y, x = torch.randint(0, size - 8, (2,), generator=g).tolist()
        h, w = torch.randint(4, 9, (2,), generator=g).tolist()
        frames[i, :, y : y + h, x : x + w] = torch.rand(3, 1, 1, generator=g)
    return frames.clamp(0, 1)


@pytest.fixture(scope="module")
def lpips_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local LPIPS weights file with random VGG weights, in the module's own format (no network)."""
    pytest.importorskip("torchvision")
    from wmbench_vqvae.lpips import LPIPS

    torch.manual_seed(1)
    lpips = LPIPS()
    with torch.no_grad():
        for n in range(5):  # LPIPS heads are non-negative channel weights
            getattr(lpips, f"lin{n}").model[1].weight.uniform_(0.0, 1.0)
    path = tmp_path_factory.mktemp("lpips") / "lpips.pt"
    torch.save(lpips.state_dict(), path)
    return path


def read_layout(component: str) -> dict[str, tuple[int, ...]]:
    layout = {}
    for line in LAYOUT.read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        comp, key, shape = line.split("\t")
        if comp == component:
            layout[key] = tuple(int(d) for d in shape.strip("()").split(",") if d.strip())
    return layout


# -- registration and options ---------------------------------------------------------------------------------


def test_registers_through_the_hook() -> None:
    manager = pluggy.PluginManager("wmbench")
    manager.add_hookspecs(hookspecs)
    manager.register(wmbench_vqvae, name="vqvae")
    entry = Registry(manager).get("tokenizer", "vqvae")
    assert entry.build is build and entry.options is VQVAEOptions and entry.summary


def test_options_coerce_from_config() -> None:
    opts = build_dataclass(VQVAEOptions, {"ch_mult": [1, 2], "dropout": 0, "lpips_weights": None}, "tokenizer")
    assert opts.ch_mult == (1, 2) and opts.dropout == 0.0 and opts.lpips_weights is None
    with pytest.raises(WmbenchError):
        build_dataclass(VQVAEOptions, {"vocab_siz": 3}, "tokenizer")


def test_frame_size_must_divide() -> None:
    with pytest.raises(WmbenchError, match="divisible"):
        build(SMALL, 30)


# -- the paper configuration ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper() -> Tokenizer:
    return build(VQVAEOptions(), 64)


def test_paper_parameter_count(paper: Tokenizer) -> None:
    assert sum(p.numel() for p in paper.parameters()) == PAPER_PARAMETERS
    assert paper.vocab_size == 512 and paper.tokens_per_frame == 16
    assert paper.describe()["perceptual_loss"] == "off (no lpips_weights file given)"


def test_state_dict_matches_reference_layout(paper: Tokenizer) -> None:
    if not LAYOUT.is_file():
        pytest.skip(f"reference layout not found at {LAYOUT} (../shared beside the repository)")
    reference = read_layout("tokenizer")
    assert len(reference) > 300
    mine = {k: tuple(v.shape) for k, v in paper.state_dict().items()}
    assert sorted(set(reference) - set(mine)) == []
    assert sorted(set(mine) - set(reference)) == []
    assert {k: s for k, s in mine.items() if reference[k] != s} == {}


def test_codebook_init(paper: Tokenizer) -> None:
    assert paper.embedding.weight.abs().max() <= 1.0 / 512


# -- the API on small options ---------------------------------------------------------------------------------


def test_encode_decode_shapes_and_ranges() -> None:
    tok = small()
    frames = structured_frames(4)
    assert tok.tokens_per_frame == (SMALL_SIZE // 4) ** 2
    tokens = tok.encode(frames)
    assert tokens.shape == (4, tok.tokens_per_frame) and tokens.dtype == torch.int64
    assert int(tokens.min()) >= 0 and int(tokens.max()) < tok.vocab_size
    with torch.no_grad():
        out = tok.decode(tokens)
    assert out.shape == frames.shape and out.dtype == torch.float32
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert torch.equal(tok.reconstruct(frames), out)
    with torch.no_grad():
        rand = tok.decode(torch.randint(0, tok.vocab_size, (2, tok.tokens_per_frame)))
    assert float(rand.min()) >= 0.0 and float(rand.max()) <= 1.0


def test_tokens_are_nearest_codebook_entries() -> None:
    tok = small()
    frames = structured_frames(2)
    with torch.no_grad():
        z = tok.pre_quant_conv(tok.encoder(frames * 2 - 1))
        flat = z.permute(0, 2, 3, 1).reshape(2, -1, z.shape[1])
        expected = torch.cdist(flat, tok.embedding.weight.unsqueeze(0).expand(2, -1, -1)).argmin(-1)
        assert torch.equal(tok.encode(frames), expected)


def test_losses_without_lpips() -> None:
    losses = small().loss(structured_frames(2))
    assert set(losses) == {"commitment", "reconstruction", "total"}
    assert torch.allclose(losses["total"], losses["commitment"] + losses["reconstruction"])


def test_straight_through_gradients() -> None:
    tok = small()
    frames = structured_frames(4)
    tok.loss(frames)["reconstruction"].backward()
    for name in ("encoder.conv_in.weight", "pre_quant_conv.weight", "decoder.conv_out.weight"):
        grad = tok.get_parameter(name).grad
        assert grad is not None and grad.abs().sum() > 0, name
    assert tok.embedding.weight.grad is None  # the codebook learns from the commitment loss only

    tok.zero_grad(set_to_none=True)
    tok.loss(frames)["commitment"].backward()
    grad = tok.embedding.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    used = torch.unique(tok.encode(frames))
    unused = torch.ones(tok.vocab_size, dtype=torch.bool)
    unused[used] = False
    assert grad[unused].abs().sum() == 0 and grad[used].abs().sum(1).gt(0).all()
    assert tok.encoder.conv_in.weight.grad.abs().sum() > 0  # the beta (commitment) term reaches the encoder
    assert tok.decoder.conv_out.weight.grad is None


def test_commitment_weight_is_beta_on_the_encoder_term() -> None:
    frames = structured_frames(2)
    base, doubled = small(), small(commitment_weight=2.0)
    with torch.no_grad():
        z = base.pre_quant_conv(base.encoder(frames * 2 - 1))
        tokens = base.encode(frames)
    mse = (z - base.embedding(tokens).view(2, 8, 8, -1).permute(0, 3, 1, 2)).pow(2).mean()
    assert torch.allclose(base.loss(frames)["commitment"], 2 * mse)
    assert torch.allclose(doubled.loss(frames)["commitment"], 3 * mse)


def test_reconstruction_loss_falls() -> None:
    tok = small()
    frames = structured_frames(8)
    opt = torch.optim.Adam(tok.parameters(), lr=2e-3)
    history = []
    for _ in range(30):
        losses = tok.loss(frames)
        opt.zero_grad()
        losses["total"].backward()
        opt.step()
        history.append(losses["reconstruction"].item())
    assert history[-1] < 0.6 * history[0], history


def test_state_dict_round_trip() -> None:
    tok = small()
    frames = structured_frames(4)
    buffer = io.BytesIO()
    torch.save(tok.state_dict(), buffer)
    buffer.seek(0)
    torch.manual_seed(123)
    other = build(SMALL, SMALL_SIZE)
    assert not torch.equal(other.embedding.weight, tok.embedding.weight)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    tokens = tok.encode(frames)
    assert torch.equal(other.encode(frames), tokens)
    assert torch.equal(other.decode(tokens), tok.decode(tokens))


# -- LPIPS ----------------------------------------------------------------------------------------------------


def test_lpips_from_local_file(lpips_file: Path) -> None:
    path = lpips_file
    plain = small()
    with_lpips = small(lpips_weights=str(path), perceptual_weight=0.5)
    assert plain.state_dict().keys() == with_lpips.state_dict().keys()
    assert sum(p.numel() for p in with_lpips.parameters()) == sum(p.numel() for p in plain.parameters())
    assert str(path) in with_lpips.describe()["perceptual_loss"]

    frames = structured_frames(2)
    losses = with_lpips.loss(frames)
    assert set(losses) == {"commitment", "reconstruction", "perceptual", "total"}
    assert losses["perceptual"].item() > 0
    expected = losses["commitment"] + losses["reconstruction"] + 0.5 * losses["perceptual"]
    assert torch.allclose(losses["total"], expected)
    assert not torch.allclose(losses["total"], plain.loss(frames)["total"])

    with_lpips.loss(frames)["perceptual"].backward()
    assert with_lpips.encoder.conv_in.weight.grad.abs().sum() > 0
    lpips = with_lpips._lpips[0]
    assert not lpips.training and all(not p.requires_grad and p.grad is None for p in lpips.parameters())
    with_lpips.train()
    assert not lpips.training


def test_lpips_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WmbenchError, match="no such file"):
        small(lpips_weights=str(tmp_path / "absent.pt"))


def test_lpips_from_reference_style_checkpoint(lpips_file: Path, tmp_path: Path) -> None:
    """Keys under ``tokenizer.lpips.`` (a reference checkpoint trained with LPIPS) are taken from the file."""
    state = {f"tokenizer.lpips.{k}": v for k, v in torch.load(lpips_file, weights_only=True).items()}
    state["tokenizer.embedding.weight"] = torch.zeros(SMALL.vocab_size, SMALL.embed_dim)
    path = tmp_path / "checkpoint.pt"
    torch.save(state, path)
    assert "perceptual" in small(lpips_weights=str(path)).loss(structured_frames(1))


def test_lpips_corrupt_or_wrong_file(lpips_file: Path, tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    with pytest.raises(WmbenchError, match="cannot read"):
        small(lpips_weights=str(garbage))
    wrong = tmp_path / "wrong.pt"
    torch.save({"lin0.model.1.weight": torch.zeros(1, 64, 1, 1)}, wrong)
    with pytest.raises(WmbenchError, match="not an LPIPS state dict") as info:
        small(lpips_weights=str(wrong))
    assert "\n" not in str(info.value)
    state = torch.load(lpips_file, weights_only=True)
    state["lin0.model.1.weight"] = torch.zeros(1, 32, 1, 1)
    torch.save(state, wrong)
    with pytest.raises(WmbenchError, match="not an LPIPS state dict"):
        small(lpips_weights=str(wrong))
    torch.save([1, 2, 3], wrong)
    with pytest.raises(WmbenchError, match="not a state dict"):
        small(lpips_weights=str(wrong))
