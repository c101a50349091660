"""The vision plugin: vit/clip backbones and vit-vq/clip-vq tokenizers over timm and open_clip.

The kit on every mode and tower, the cached block path against the library's own forward, weights files written
from random models and loaded through timm's and open_clip's loaders, one-line errors, and (slow) smoke runs.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from wmbench.testing import check_backbone, check_tokenizer, tiny_shape
from wmbench_vision import CLIPOptions, CLIPVQOptions, ViTOptions, ViTVQOptions
from wmbench_vision.backbone import build_backbone
from wmbench_vision.tokenizer import build_tokenizer

SMALL = {"width": 32, "layers": 2, "heads": 2}
BACKBONES = {
    "vit": ("timm", lambda **o: ViTOptions(**SMALL, **o)),
    "clip": ("open_clip", lambda **o: CLIPOptions(model="ViT-S-32", **SMALL, **o)),
}
TOKENIZERS = {
    "vit-vq": ("timm", lambda **o: ViTVQOptions(**SMALL, decoder_layers=2, vocab_size=64, **o)),
    "clip-vq": (
        "open_clip",
        lambda **o: CLIPVQOptions(model="ViT-S-32", **SMALL, decoder_layers=2, vocab_size=64, **o),
    ),
}


def make_backbone(name, **options):
    """A kit factory. LoRA B starts at zero, which would leave lora_A without gradient: give it small values."""
    family, opts = BACKBONES[name]

    def make():
        torch.manual_seed(0)
        backbone = build_backbone(family, opts(**options), tiny_shape())
        with torch.no_grad():
            for n, p in backbone.named_parameters():
                if "lora_B" in n:
                    p.normal_(0.0, 0.05)
        return backbone

    return make


def make_tokenizer(name, frame_size=32, **options):
    family, opts = TOKENIZERS[name]

    def make():
        torch.manual_seed(0)
        return build_tokenizer(family, opts(**options), frame_size)

    return make


def test_importing_wmbench_and_its_plugins_imports_neither_timm_nor_open_clip():
    code = (
        "import sys; from wmbench.plugins import registry; r = registry(); r.get('backbone', 'vit'); "
        "r.get('tokenizer', 'clip-vq'); print(sorted(m for m in ('timm', 'open_clip') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("vit", {"mode": "full"}),
        ("vit", {"mode": "lora"}),
        ("vit", {"mode": "frozen"}),
        ("clip", {"mode": "full"}),
        ("clip", {"mode": "lora"}),
        ("clip", {"mode": "full", "tower": "vision"}),
    ],
)
def test_backbones_conform(name, options):
    check_backbone(make_backbone(name, **options), trainable=True, masked=True)
    facts = make_backbone(name, **options)().describe()
    assert facts["pretrained"] is False and "random init" in facts["weights"] and "learned" in facts["positions"]
    assert facts["d_model"] == 32 and facts["mode"] == options["mode"]


def test_frozen_trains_only_positions_and_lora_only_adapters():
    frozen = make_backbone("vit", mode="frozen")()
    assert [n for n, p in frozen.named_parameters() if p.requires_grad] == ["pos_emb.weight"]
    lora = make_backbone("clip", mode="lora", lora_targets=("c_fc",), lora_rank=4)()
    trainable = [n for n, p in lora.named_parameters() if p.requires_grad and n != "pos_emb.weight"]
    assert trainable and all(".c_fc.lora_" in n for n in trainable)
    assert lora.describe()["lora"] == {"rank": 4, "alpha": 16, "dropout": 0.05, "targets": ["c_fc"]}


def _library(name, tower="text"):
    """The library model a backbone was built from, with the same seed, and its own forward over the blocks."""
    import open_clip
    import timm

    torch.manual_seed(0)
    if name == "vit":
        vit = timm.create_model("vit_tiny_patch16_224", embed_dim=32, depth=2, num_heads=2)
        return lambda x, causal: vit.norm(vit.blocks(x)) if not causal else None
    cfg = open_clip.get_model_config("ViT-S-32")
    key = "text_cfg" if tower == "text" else "vision_cfg"
    sizes = {"width": 32, "layers": 2, **({"heads": 2} if tower == "text" else {"head_width": 16})}
    clip = open_clip.create_model("ViT-S-32", **{key: dict(cfg[key], **sizes)})
    if tower == "vision":
        v = clip.visual
        return lambda x, causal: v.ln_post(v.transformer(v.ln_pre(x))) if not causal else None
    # The text tower's own forward is causal: its attn_mask is CLIP's causal mask.
    return lambda x, causal: clip.ln_final(
        clip.transformer(x, attn_mask=clip.attn_mask[: x.size(1), : x.size(1)] if causal else None)
    )


@pytest.mark.parametrize(("name", "tower"), [("vit", "text"), ("clip", "text"), ("clip", "vision")])
def test_block_path_equals_the_library_forward(name, tower):
    """Our loop over the library's blocks, unmasked, is the library's forward; the text tower's also masked, cached."""
    options = {"tower": tower} if name == "clip" else {}
    backbone = make_backbone(name, **options)().eval()
    library = _library(name, tower)
    x = torch.randn(2, 12, 32)
    with torch.no_grad():
        torch.testing.assert_close(backbone.stack(x, causal=False), library(x, False))
        if name == "clip" and tower == "text":
            torch.testing.assert_close(backbone.stack(x), library(x, True))
            backbone.pos_emb.weight.zero_()  # then the backbone is the stack alone: its cached path, in chunks
            cache = backbone.new_cache(2)
            cached = torch.cat([backbone(x[:, i : i + 5], cache) for i in range(0, 12, 5)], dim=1)
            torch.testing.assert_close(cached, library(x, True))


@pytest.mark.parametrize("name", ["vit", "clip"])
def test_no_train_mode_leak(name):
    """In train mode (LoRA dropout on), a later token changes no earlier output under the same random draws."""
    backbone = make_backbone(name, mode="lora", lora_dropout=0.5)().train()
    x = torch.randn(2, 20, 32)
    changed = x.clone()
    changed[:, 10:] += 1.0
    outs = []
    for inputs in (x, changed):
        torch.manual_seed(3)
        outs.append(backbone(inputs))
    torch.testing.assert_close(outs[0][:, :10], outs[1][:, :10])


@pytest.mark.parametrize(
    ("name", "patch", "tokens"), [("vit-vq", 8, 16), ("vit-vq", 4, 64), ("clip-vq", 8, 16), ("clip-vq", 4, 64)]
)
def test_tokenizers_conform(name, patch, tokens):
    make = make_tokenizer(name, patch_size=patch)
    check_tokenizer(make, 32)
    tokenizer = make()
    facts = tokenizer.describe()
    assert tokenizer.tokens_per_frame == facts["tokens_per_frame"] == tokens and facts["vocab_size"] == 64
    assert facts["encoder"] == ("frozen" if name == "clip-vq" else "trained") and facts["pretrained"] is False


def test_clip_vq_encoder_is_frozen_by_default():
    tokenizer = make_tokenizer("clip-vq")()
    assert not any(p.requires_grad for p in tokenizer.encoder.parameters())
    assert all(p.requires_grad for p in tokenizer.decoder.parameters())


def _save_random_timm(path, **sizes):
    import timm

    torch.manual_seed(7)
    vit = timm.create_model("vit_tiny_patch16_224", **sizes)
    torch.save(vit.state_dict(), path)
    return vit


def _save_random_clip(path, **sizes):
    import open_clip

    cfg = open_clip.get_model_config("ViT-S-32")
    torch.manual_seed(7)
    clip = open_clip.create_model("ViT-S-32", **{k: dict(cfg[k], **v) for k, v in sizes.items()})
    torch.save(clip.state_dict(), path)
    return clip


def test_weights_files_load_through_the_libraries(tmp_path):
    """A file written from a random model loads through timm's and open_clip's own loaders: outputs equal."""
    x = torch.randn(2, 12, 32)
    vit = _save_random_timm(tmp_path / "vit.pth", embed_dim=32, depth=2, num_heads=2).eval()
    backbone = build_backbone("timm", ViTOptions(**SMALL, weights=str(tmp_path / "vit.pth")), tiny_shape()).eval()
    clip = _save_random_clip(tmp_path / "clip.pt", text_cfg={"width": 32, "layers": 2, "heads": 2}).eval()
    options = CLIPOptions(model="ViT-S-32", **SMALL, weights=str(tmp_path / "clip.pt"))
    text = build_backbone("open_clip", options, tiny_shape()).eval()
    with torch.no_grad():
        torch.testing.assert_close(backbone.stack(x, causal=False), vit.norm(vit.blocks(x)))
        mask = clip.attn_mask[:12, :12]
        torch.testing.assert_close(text.stack(x), clip.ln_final(clip.transformer(x, attn_mask=mask)))
    for facts, path in ((backbone.describe(), "vit.pth"), (text.describe(), "clip.pt")):
        assert facts["pretrained"] is True and facts["weights"].startswith(f"local file {tmp_path / path} (sha256 ")


def test_tokenizer_weights_files_load_through_the_libraries(tmp_path):
    frames = torch.rand(2, 3, 32, 32)
    vit = _save_random_timm(tmp_path / "vit.pth", embed_dim=32, depth=2, num_heads=2, img_size=32, patch_size=8)
    vq = make_tokenizer("vit-vq", weights=str(tmp_path / "vit.pth"))().eval()
    vision = {"width": 32, "layers": 2, "head_width": 16, "image_size": 32, "patch_size": 8}
    clip = _save_random_clip(tmp_path / "clip.pt", vision_cfg=vision)
    cvq = make_tokenizer("clip-vq", weights=str(tmp_path / "clip.pt"))().eval()
    clip.visual.output_tokens = True
    with torch.no_grad():
        normed = (frames - vq.mean) / vq.std
        torch.testing.assert_close(vq.encoder(normed), vit.eval().forward_features(normed)[:, 1:])
        normed = (frames - cvq.mean) / cvq.std
        torch.testing.assert_close(cvq.encoder(normed), clip.eval().visual(normed)[1])
    assert vq.describe()["pretrained"] and cvq.describe()["weights"].startswith("local file")


def _cli(*args):
    from click.testing import CliRunner

    from wmbench.cli import cli

    return CliRunner().invoke(cli, ["describe", "--game", "Pong", "--preset", "smoke", *args])


def test_bad_options_are_one_line_exit_2(tmp_path):
    _save_random_timm(tmp_path / "wide.pth", embed_dim=48, depth=2, num_heads=2)
    cases = {
        ("--backbone", "vit", "--set", "backbone.model=vit_nonesuch"): "unknown timm model 'vit_nonesuch'",
        ("--backbone", "clip", "--set", "backbone.model=ViT-Q-99"): "unknown open_clip model 'ViT-Q-99'",
        ("--backbone", "vit", "--set", f"backbone.weights={tmp_path / 'none.pth'}"): "weights file not found",
        ("--backbone", "vit", "--set", f"backbone.weights={tmp_path / 'wide.pth'}"): "cannot load weights",
        ("--backbone", "clip", "--set", f"backbone.weights={tmp_path / 'wide.pth'}"): "cannot load weights",
        ("--tokenizer", "vit-vq", "--set", "tokenizer.patch_size=5"): "patch_size 5 does not divide the frame size 32",
        ("--tokenizer", "clip-vq", "--set", "tokenizer.patch_size=0"): "tokenizer.patch_size must be above zero, got 0",
        ("--backbone", "vit", "--set", "backbone.mode=half"): "backbone.mode must be one of",
        ("--backbone", "clip", "--set", "backbone.tower=audio"): "backbone.tower must be text or vision",
        (
            "--backbone",
            "vit",
            "--set",
            "backbone.mode=lora",
            "--set",
            'backbone.lora_targets=["fc9"]',
        ): "are not linear layers",
    }
    for args, message in cases.items():
        result = _cli(*args)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], (args, result.output)
        assert lines[0].startswith("wmbench: error: ")


def test_describe_says_where_weights_came_from():
    result = _cli("--backbone", "clip", "--tokenizer", "vit-vq", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output[result.output.index("{") :])
    assert data["backbone"]["pretrained"] is False and data["backbone"]["weights"] == "random init (open_clip's own)"
    assert data["tokenizer"]["weights"] == "random init (timm's own)" and data["tokens_per_frame"] == 16


SMOKE = [
    a
    for o in (
        "training.epochs=4",
        "training.collect.steps_per_epoch=100",
        "training.tokenizer.start_after_epochs=1",
        "training.world_model.start_after_epochs=1",
        "training.tokenizer.steps_per_epoch=12",
        "training.world_model.steps_per_epoch=12",
        "training.actor_critic.start_after_epochs=3",
        "training.actor_critic.steps_per_epoch=1",
        "training.media_every=0",
        "env.max_frames_test=300",
        "eval.final_episodes=1",
    )
    for a in ("--set", o)
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("backbone", "tokenizer", "extra"),
    [
        ("vit", "vqvae", []),
        ("clip", "vqvae", []),
        ("scratch", "vit-vq", ["--set", "tokenizer.patch_size=4"]),  # 64 tokens per frame: 65-token blocks
        ("scratch", "clip-vq", []),
    ],
)
def test_smoke_run_on_atari_losses_fall(tmp_path, backbone, tokenizer, extra):
    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "wmbench",
            "run",
            "--backbone",
            backbone,
            "--tokenizer",
            tokenizer,
            "--game",
            "Pong",
            "--preset",
            "smoke",
            *SMOKE,
            *extra,
            "--out",
            str(out),
        ],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for part in ("tokenizer", "world_model"):
        losses = [r[f"loss/{part}/total"] for r in records if f"loss/{part}/total" in r]
        assert len(losses) >= 2 and losses[-1] < losses[0], (part, losses)
    summary = json.loads((out / "summary.json").read_text())
    info = summary["backbone_info" if backbone != "scratch" else "tokenizer_info"]
    assert info["pretrained"] is False and "random init" in info["weights"]
    if extra:
        assert summary["tokenizer_info"]["tokens_per_frame"] == 64
