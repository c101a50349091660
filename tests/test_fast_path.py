"""The fast paths give what the plain, obviously-correct computations give, on the same weights and seeds:
imagination with a key/value cache vs recomputing the whole sequence for every token, the scratch
transformer's fused attention (with and without its preallocated cache) vs explicit softmax attention, and
the autoencoder's inference path (channels-last maps, fused attention) vs its training path and the
reference's batched-matmul attention."""

import math

import pytest
import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.imagination import DreamEnv, sample
from wmbench_vqvae import VQVAEOptions
from wmbench_vqvae import build as build_vqvae
from wmbench_vqvae.nets import AttnBlock

BACKBONES = [
    ("scratch", []),
    pytest.param("llm-frozen", ["backbone.model=tiny-llama", "backbone.pretrained=false"], marks=pytest.mark.slow),
    pytest.param("llm-lora", ["backbone.model=tiny-llama", "backbone.pretrained=false"], marks=pytest.mark.slow),
    pytest.param("llm-qlora", ["backbone.model=tiny-gpt2", "backbone.pretrained=false"], marks=pytest.mark.slow),
    pytest.param("llm-full", ["backbone.model=tiny-gpt2", "backbone.pretrained=false"], marks=pytest.mark.slow),
]
"""The llm-* imaginations run in the backbone's rollout() (adapters merged, 4-bit weights dequantised, packed) with
its cache written in place."""


def plain_imagination(tokenizer, wm, frames, actions, generator):
    """DreamEnv without a cache: every backbone call recomputes the whole token sequence from its start."""
    obs = tokenizer.encode(frames)
    sequence = obs
    out = []
    for action in actions:
        if sequence.size(1) + wm.tokens_per_block > wm.transformer.max_tokens:
            sequence = obs  # the cache is rebuilt from the current frame alone
        sequence = torch.cat([sequence, action[:, None]], dim=1)
        hidden = wm(sequence)[:, -1]
        rewards = sample(wm.head_rewards(hidden), generator).float() - 1
        ends = sample(wm.head_ends(hidden), generator).bool()
        tokens = []
        for _ in range(wm.tokens_per_frame):
            tokens.append(sample(wm.head_observations(hidden), generator))
            sequence = torch.cat([sequence, tokens[-1][:, None]], dim=1)
            hidden = wm(sequence)[:, -1]
        obs = torch.stack(tokens, dim=1)
        out.append((tokenizer.decode(obs), rewards, ends, obs))
    return out


@pytest.mark.parametrize("backbone, overrides", BACKBONES)
def test_cached_imagination_equals_recomputing_the_sequence(registry, backbone, overrides):
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", backbone, ["world_model.max_blocks=4", *overrides], registry)
    torch.manual_seed(0)
    agent = build_agent(config, registry, num_actions=6).eval()
    with torch.no_grad():  # trained adapters, not LoRA's zero start: the merged weights must carry them
        for name, p in agent.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    frames = torch.rand(3, 3, 32, 32)
    steps = 7  # (4 blocks x 17 - 16) // 17 = 3 steps fit before the cache is rebuilt: two rebuilds
    actions = torch.randint(6, (steps, 3), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = plain_imagination(
            agent.tokenizer, agent.world_model, frames, actions, torch.Generator().manual_seed(2)
        )
        dream = DreamEnv(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(2))
        dream.reset(frames)
        for action, (frame, rewards, ends, tokens) in zip(actions, expected):
            with agent.world_model.transformer.rollout():
                got = dream.step(action)
            assert torch.equal(dream.obs_tokens, tokens)
            assert torch.equal(got[1], rewards) and torch.equal(got[2], ends)
            torch.testing.assert_close(got[0], frame)


def explicit_forward(model, embeds):
    """The scratch transformer written out: causal softmax attention with an explicit mask, no fused kernel."""
    b, t, d = embeds.shape
    x = embeds + model.pos_emb.weight[:t]
    causal = torch.ones(t, t, dtype=torch.bool).tril()
    for block in model.blocks:
        a = block.attn
        h = block.ln1(x)
        q, k, v = (lin(h).view(b, t, model.num_heads, -1).transpose(1, 2) for lin in (a.query, a.key, a.value))
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(q.size(-1))
        weights = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        x = x + a.proj((weights @ v).transpose(1, 2).reshape(b, t, d))
        x = x + block.mlp(block.ln2(x))
    return model.ln_f(x)


def test_fused_attention_equals_explicit_attention(registry):
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", ["world_model.num_layers=3"], registry)
    torch.manual_seed(0)
    model = build_agent(config, registry, num_actions=6).world_model.transformer.eval()
    embeds = torch.randn(2, 40, model.d_model)
    with torch.no_grad():
        expected = explicit_forward(model, embeds)
        torch.testing.assert_close(model(embeds), expected)
        cache = model.new_cache(2)  # the cache fed in uneven chunks, one token at a time at the end
        chunks = [
            model(embeds[:, a:z], cache) for a, z in ((0, 17), (17, 18), (18, 35), *((i, i + 1) for i in range(35, 40)))
        ]
        torch.testing.assert_close(torch.cat(chunks, dim=1), expected)


def explicit_attn_block(block, x):
    """The autoencoder's attention block as the reference writes it: 1x1 convs, batched matmuls, softmax."""
    b, c, h, w = x.shape
    y = block.norm(x)
    q, k, v = (conv(y).reshape(b, c, h * w) for conv in (block.q, block.k, block.v))
    weights = torch.softmax(torch.bmm(q.transpose(1, 2), k) / math.sqrt(c), dim=-1)
    return x + block.proj_out(torch.bmm(v, weights.transpose(1, 2)).reshape(b, c, h, w))


def test_autoencoder_attention_equals_explicit_attention():
    torch.manual_seed(0)
    block = AttnBlock(32)
    x = torch.randn(2, 32, 8, 8)
    expected = explicit_attn_block(block, x)
    torch.testing.assert_close(block(x), expected)
    with torch.no_grad():
        torch.testing.assert_close(block(x.contiguous(memory_format=torch.channels_last)), expected)


def test_tokenizer_inference_path_equals_its_training_path():
    """Without a gradient, maps are channels-last (the fast layout on the CPU); with one, NCHW: same tokens, frames."""
    torch.manual_seed(0)
    options = VQVAEOptions(vocab_size=64, embed_dim=16, z_channels=16, ch=32, ch_mult=(1, 1, 1), num_res_blocks=1,
                           attn_resolutions=(8,))  # fmt: skip
    tokenizer = build_vqvae(options, 32).eval()
    frames = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        tokens, decoded = tokenizer.encode(frames), tokenizer.decode(tokenizer.encode(frames))
    assert decoded.is_contiguous()
    z = tokenizer._latents(frames.mul(2).sub(1))  # grad recorded: the NCHW path
    assert z.requires_grad and z.is_contiguous()
    expected_tokens, z_q = tokenizer._quantise(z)
    assert torch.equal(tokens, expected_tokens)
    # Convolutions in another layout sum in another order: agreement to 1e-4, far below one 8-bit level (4e-3).
    torch.testing.assert_close(decoded, tokenizer._decode_latents(z_q).add(1).div(2).clamp(0, 1), atol=1e-4, rtol=1e-4)
