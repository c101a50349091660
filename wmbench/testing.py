"""The conformance kit: what every backbone and tokenizer must satisfy, built-in or third-party.

Call these from your plugin's tests::

    from wmbench.testing import check_backbone
    def test_conforms():
        check_backbone(lambda: build(MyOptions(), tiny_shape()))

Each check raises AssertionError naming the property that failed.
"""

from __future__ import annotations

import copy
import io
from collections.abc import Callable, Sequence

import torch

from wmbench.engine.backbone import Backbone, BackboneShape
from wmbench.engine.collector import to_frames
from wmbench.engine.probe import causal_change, check_cache, check_causal, check_drop, check_mask, run_chunks
from wmbench.engine.tokenizer import Tokenizer


def tiny_shape(max_blocks: int = 4, tokens_per_block: int = 5) -> BackboneShape:
    """A small shape for tests: 2 layers, width 32, 20 tokens."""
    return BackboneShape(
        embed_dim=32, num_layers=2, num_heads=2, dropout=0.1, max_blocks=max_blocks, tokens_per_block=tokens_per_block
    )


def _close(a: torch.Tensor, b: torch.Tensor, atol: float, what: str) -> None:
    err = (a.float() - b.float()).abs().max().item()
    assert err <= atol, f"{what}: max abs difference {err:.3g} > {atol:g}"


def _run_chunks(backbone: Backbone, x: torch.Tensor, chunk: int) -> torch.Tensor:
    return run_chunks(backbone, x, (chunk,))


def _cache_in_dtype(backbone: Backbone, x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The chunked cached forward after ``.to(dtype)``, failing with a named message if the cache kept another dtype."""
    try:
        out = _run_chunks(backbone, x, 3)
    except RuntimeError as exc:
        raise AssertionError(f"cache after .to({dtype}): new_cache() must follow the module's dtype ({exc})") from exc
    assert out.dtype == dtype, f"cache after .to({dtype}): cached output is {out.dtype} (cache left in another dtype?)"
    return out


def _trainable(module: torch.nn.Module) -> list[tuple[str, torch.nn.Parameter]]:
    return [(n, p) for n, p in module.named_parameters() if p.requires_grad]


def check_backbone(
    make: Callable[[], Backbone],
    *,
    length: int | None = None,
    batch: int = 3,
    atol: float = 1e-4,
    chunks: Sequence[int] = (1, 3, 7),
    trainable: bool | None = None,
    dtypes: Sequence[torch.dtype] = (torch.bfloat16,),
    device: str = "cpu",
    masked: bool | None = None,
    fixed: bool | None = None,
) -> None:
    """Check a backbone factory. ``make()`` must return the same weights each call (seed inside it).

    ``trainable``: True if some parameters must train, False if none may, None to accept either.
    ``dtypes``: dtypes the backbone must run in after ``.to(dtype)`` (pass () for quantised models).
    ``masked``: True if the backbone must declare ``takes_mask``, False if it must not, None to accept either; the
    mask and drop checks run whenever it declares it. ``fixed``: likewise for ``fixed_shape``, whose fixed-shape cache
    must give the full forward in chunks, again once cleared, and (with ``takes_mask``) after dropped tokens.
    """
    torch.manual_seed(0)
    model = make().to(device).eval()
    assert isinstance(model, Backbone), f"make() returned {type(model).__name__}, not a wmbench Backbone"
    d = model.d_model
    t = min(length or model.max_tokens, model.max_tokens)
    assert t >= 4, f"max_tokens={model.max_tokens} is too short to test"
    x = torch.randn(batch, t, d, device=device)

    # Shapes and dtype.
    with torch.no_grad():
        full = model(x)
    assert full.shape == (batch, t, d), f"output shape {tuple(full.shape)}, expected {(batch, t, d)}"
    assert full.dtype == x.dtype, f"output dtype {full.dtype} for input dtype {x.dtype}"
    assert torch.isfinite(full).all(), "non-finite outputs"

    # Causality, in eval mode and in train mode (where dropout or batch statistics over time could leak):
    # changing token s changes nothing before s, and does change s.
    for s in (t // 2, t - 1):
        for train in (False, True):
            check_causal(model, x, s, train=train, atol=atol)
        assert causal_change(model, x, s, train=False)[1] > atol, f"output at {s} ignores its own input"

    # Incremental decoding with the cache equals the full forward, for several chunk sizes.
    with torch.no_grad():
        for chunk in (*chunks, t):
            _close(_run_chunks(model, x, chunk), full, atol, f"cache with chunks of {chunk} != full forward")

        # Batch pruning: select rows of a half-filled cache and continue.
        half = t // 2
        cache = model.new_cache(batch)
        model(x[:, :half], cache)
        rows = torch.tensor([batch - 1, 0], device=device)
        pruned = cache.select(rows)
        assert pruned.num_tokens == half, "select() lost the cache length"
        _close(model(x[rows, half:], pruned), full[rows, half:], atol, "cache.select(rows) then continuing")

    # The optional capability: a mask and positions in place of the causal ones, and a cache that drops tokens.
    if masked is not None:
        assert model.takes_mask == masked, f"expected takes_mask={masked}, the backbone declares {model.takes_mask}"
    if model.takes_mask:
        check_mask(model, x, full, atol)
        check_drop(model, x, full, atol)

    # The optional fixed-shape cache (imagination captured in CUDA graphs).
    if fixed is not None:
        assert model.fixed_shape == fixed, f"expected fixed_shape={fixed}, the backbone declares {model.fixed_shape}"
    if model.fixed_shape:
        with torch.no_grad():
            check_cache(model, x, full, chunks, atol, fixed=True)
        if model.takes_mask:
            check_drop(model, x, full, atol, fixed=True)

    # Trainable accounting and gradients.
    params = _trainable(model)
    if trainable is not None:
        assert bool(params) == trainable, f"expected trainable={trainable}, found {len(params)} trainable tensors"
    model.train()
    for p in model.parameters():
        p.grad = None
    xg = x.clone().requires_grad_(True)
    model(xg).square().mean().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0, "no gradient reaches the input embeddings"
    for name, p in params:
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient reaches trainable {name}"
    for name, p in model.named_parameters():
        assert p.requires_grad or p.grad is None, f"frozen {name} received a gradient"
    model.eval()

    # Save and reload: a changed model's state dict restores its outputs in a fresh one.
    with torch.no_grad():
        for _, p in params:
            p.add_(torch.randn_like(p) * 0.05)
        changed = model(x)
        buffer = io.BytesIO()
        torch.save(model.state_dict(), buffer)
        buffer.seek(0)
        fresh = make().to(device).eval()
        if params:
            assert (fresh(x) - changed).abs().max() > atol, "perturbing trainable parameters changed nothing"
        fresh.load_state_dict(torch.load(buffer, weights_only=True))
        _close(fresh(x), changed, atol, "outputs after state-dict save and reload")

        # Other dtypes and, when there is one, the GPU: the outputs follow, and so does the cache (new_cache in the
        # module's dtype and on its device, incremental decoding equal to the full forward there too).
        loose = 0.1 * changed.abs().max().item() + atol
        for dtype in dtypes:
            moved = copy.deepcopy(model).to(dtype)
            out = moved(x.to(dtype))
            assert out.dtype == dtype, f"after .to({dtype}) the output is {out.dtype}"
            _close(out, changed, loose, f"outputs after .to({dtype})")
            _close(_cache_in_dtype(moved, x.to(dtype), dtype), out, loose, f"cache after .to({dtype}) != full forward")
        if torch.cuda.is_available() and device == "cpu":
            moved = copy.deepcopy(model).to("cuda")
            out = moved(x.cuda())
            _close(out.cpu(), changed, 1e-2, "outputs after .to('cuda')")
            _close(_run_chunks(moved, x.cuda(), 3), out, 1e-2, "cache after .to('cuda') != full forward")


def real_frames(frame_size: int, count: int = 64, game: str = "Pong", seed: int = 0) -> torch.Tensor:
    """``count`` frames of a real game (Atari's Pong by default) at ``frame_size``, every 4th step of random play:
    ``[count, 3, frame_size, frame_size]`` in [0, 1]."""
    import numpy as np

    from wmbench.config import EnvConfig
    from wmbench.plugins import registry

    played = registry().game(game)
    env, actions = played.make_env(EnvConfig(size=frame_size), train=True, seed=seed), played.num_actions()
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    frames: list[np.ndarray] = []
    while len(frames) < count:
        for _ in range(4):
            obs, _, terminated, truncated, _ = env.step(int(rng.integers(actions)))
            if terminated or truncated:
                obs, _ = env.reset()
        frames.append(obs)
    env.close()
    return to_frames(frames, torch.device("cpu"))


def _reconstruction_error(model: Tokenizer, frames: torch.Tensor) -> float:
    """Mean squared error of ``decode(encode(frames))``: what the world model's tokens let the agent see."""
    model.eval()
    with torch.no_grad():
        return (model.decode(model.encode(frames)).float() - frames).pow(2).mean().item()


def check_tokenizer(
    make: Callable[[], Tokenizer],
    frame_size: int,
    *,
    steps: int = 25,
    lr: float = 1e-3,
    min_codes: int = 4,
    game: str = "Pong",
) -> dict[str, float | int]:
    """Check a tokenizer factory on real frames of ``game`` at ``frame_size``; ``make()`` returns the same weights each
    call. Trained ``steps`` Adam steps on those frames, its reconstruction error (through ``encode`` and ``decode``)
    must fall below 0.8 of the untrained one, and its tokens of those frames must use at least ``min_codes`` codes
    (a collapsed codebook uses one to three). Returns what it measured: the reconstruction error before and after,
    and the codes used."""
    torch.manual_seed(0)
    model = make()
    assert isinstance(model, Tokenizer), f"make() returned {type(model).__name__}, not a wmbench Tokenizer"
    frames = real_frames(frame_size, game=game)
    model.eval()
    with torch.no_grad():
        tokens = model.encode(frames)
        assert tokens.shape == (len(frames), model.tokens_per_frame), f"encode shape {tuple(tokens.shape)}"
        assert tokens.dtype == torch.int64, f"tokens are {tokens.dtype}, not int64"
        assert 0 <= tokens.min() and tokens.max() < model.vocab_size, "tokens outside the vocabulary"
        decoded = model.decode(tokens)
        assert decoded.shape == frames.shape, f"decode shape {tuple(decoded.shape)}"
        assert decoded.min() >= 0 and decoded.max() <= 1, "decoded frames outside [0, 1]"
    before = _reconstruction_error(model, frames)

    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    for step in range(steps):
        batch = frames[(step * 16) % len(frames) :][:16]
        loss = model.loss(batch)
        assert "total" in loss, "loss() must return a 'total' entry"
        optimiser.zero_grad()
        loss["total"].backward()
        optimiser.step()
    after = _reconstruction_error(model, frames)
    assert after < 0.8 * before, (
        f"reconstruction error (decode(encode(frames)) against {game} frames) did not fall over {steps} steps: "
        f"{before:.4f} -> {after:.4f}"
    )
    with torch.no_grad():
        tokens = model.encode(frames)
    codes = int(tokens.unique().numel())
    assert codes >= min(min_codes, model.vocab_size), (
        f"codebook collapse: the tokens of {len(frames)} {game} frames use {codes} of {model.vocab_size} codes "
        f"(at least {min_codes} expected)"
    )

    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh.encode(frames), tokens), "tokens differ after save and reload"
        _close(fresh.decode(tokens), model.decode(tokens), 1e-5, "decoded frames after save and reload")
    return {"reconstruction_mse_before": before, "reconstruction_mse_after": after, "codes_used": codes,
            "vocab_size": model.vocab_size}  # fmt: skip
