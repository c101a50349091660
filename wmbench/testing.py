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
from wmbench.engine.probe import causal_change, check_causal, check_drop, check_mask, run_chunks
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
) -> None:
    """Check a backbone factory. ``make()`` must return the same weights each call (seed inside it).

    ``trainable``: True if some parameters must train, False if none may, None to accept either.
    ``dtypes``: dtypes the backbone must run in after ``.to(dtype)`` (pass () for quantised models).
    ``masked``: True if the backbone must declare ``takes_mask``, False if it must not, None to accept either; the
    mask and drop checks run whenever it declares it.
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


def check_tokenizer(make: Callable[[], Tokenizer], frame_size: int, *, steps: int = 25, lr: float = 1e-3) -> None:
    """Check a tokenizer factory on frames of ``frame_size``; ``make()`` returns the same weights each call."""
    torch.manual_seed(0)
    model = make()
    assert isinstance(model, Tokenizer), f"make() returned {type(model).__name__}, not a wmbench Tokenizer"
    # Structured frames: smooth colour gradients plus a few blocks, so reconstruction can improve.
    grid = torch.linspace(0, 1, frame_size)
    frames = torch.stack(
        [
            torch.stack(
                [
                    grid.expand(frame_size, -1) * (i + 1) / 4,
                    grid[:, None].expand(-1, frame_size),
                    torch.full((frame_size, frame_size), i / 4),
                ]
            )
            for i in range(4)
        ]
    ).clamp(0, 1)
    model.eval()
    with torch.no_grad():
        tokens = model.encode(frames)
        assert tokens.shape == (4, model.tokens_per_frame), f"encode shape {tuple(tokens.shape)}"
        assert tokens.dtype == torch.int64, f"tokens are {tokens.dtype}, not int64"
        assert 0 <= tokens.min() and tokens.max() < model.vocab_size, "tokens outside the vocabulary"
        decoded = model.decode(tokens)
        assert decoded.shape == frames.shape, f"decode shape {tuple(decoded.shape)}"
        assert decoded.min() >= 0 and decoded.max() <= 1, "decoded frames outside [0, 1]"

    model.train()
    optimiser = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    losses = []
    for _ in range(steps):
        loss = model.loss(frames)
        assert "total" in loss, "loss() must return a 'total' entry"
        optimiser.zero_grad()
        loss["total"].backward()
        optimiser.step()
        losses.append(loss["total"].item())
    assert min(losses[-3:]) < 0.8 * losses[0], (
        f"loss did not fall over {steps} steps: {losses[0]:.4f} -> {losses[-1]:.4f}"
    )

    model.eval()
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = make().eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh.encode(frames), model.encode(frames)), "tokens differ after save and reload"
        _close(fresh.decode(tokens), model.decode(tokens), 1e-5, "decoded frames after save and reload")
