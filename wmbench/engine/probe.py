"""The build-time probe: before a run trains, its backbone proves on random embeddings that it is causal (in eval
and in train mode) and that its cache gives what a full forward gives; for parallel frame prediction, also that it
honours a mask and positions, and that its cache forgets what it drops; for imagination with fixed shapes, that its
fixed-shape cache does all that too, and gives it again once cleared. The conformance kit checks the same
properties through the same functions, at length."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence

import torch

from wmbench.engine.backbone import Backbone, Cache
from wmbench.errors import WmbenchError


class ProbeFailure(AssertionError):
    """A backbone property that does not hold; the message names it."""


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0]


@contextlib.contextmanager
def _mode(backbone: Backbone, train: bool) -> Iterator[None]:
    """``backbone`` in train or eval mode, without gradients; its mode, buffers (running statistics) and the global
    random state are as they were afterwards."""
    was_training = backbone.training
    buffers = {name: b.clone() for name, b in backbone.named_buffers()}
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            backbone.train(train)
            yield
    finally:
        backbone.train(was_training)
        with torch.no_grad():
            for name, b in backbone.named_buffers():
                if name in buffers:
                    b.copy_(buffers[name])


def _seeded(backbone: Backbone, x: torch.Tensor, seed: int = 0, **masked: torch.Tensor) -> torch.Tensor:
    """One forward with the random state reset first, so train-mode dropout draws the same masks each call."""
    torch.manual_seed(seed)
    if x.is_cuda:
        torch.cuda.manual_seed_all(seed)
    return backbone(x, **masked)


def causal_change(backbone: Backbone, x: torch.Tensor, position: int, *, train: bool) -> tuple[float, float]:
    """Change token ``position`` of ``x``; returns how much the outputs before it and at it changed (max abs)."""
    changed = x.clone()
    changed[:, position] = -x[:, position].roll(1, dims=-1)
    with _mode(backbone, train):
        before, after = _seeded(backbone, x), _seeded(backbone, changed)
    earlier = (after[:, :position] - before[:, :position]).abs().max().item() if position else 0.0
    return earlier, (after[:, position] - before[:, position]).abs().max().item()


def check_causal(backbone: Backbone, x: torch.Tensor, position: int, *, train: bool, atol: float) -> None:
    """Changing token ``position`` changes no earlier output, in the mode given."""
    earlier, _ = causal_change(backbone, x, position, train=train)
    if earlier > atol:
        mode = "train" if train else "eval"
        raise ProbeFailure(
            f"causality in {mode} mode: changing token {position} changed earlier outputs by {earlier:.3g} > {atol:.3g}"
        )


def run_chunks(backbone: Backbone, x: torch.Tensor, sizes: Sequence[int], cache: Cache | None = None) -> torch.Tensor:
    """``x`` fed through one cache (a new one, or ``cache``, empty) in chunks of ``sizes`` (the last repeated until
    ``x`` is used up), checking after each call that the cache grew by the tokens fed."""
    cache = backbone.new_cache(x.size(0)) if cache is None else cache
    outs, start, i = [], 0, 0
    while start < x.size(1):
        chunk = x[:, start : start + sizes[min(i, len(sizes) - 1)]]
        outs.append(backbone(chunk, cache))
        start, i = start + chunk.size(1), i + 1
        if cache.num_tokens != start:
            raise ProbeFailure(f"cache: holds {cache.num_tokens} tokens after {start} were fed")
    return torch.cat(outs, dim=1)


def check_cache(
    backbone: Backbone, x: torch.Tensor, full: torch.Tensor, sizes: Sequence[int], atol: float, fixed: bool = False
) -> None:
    """A forward in chunks of ``sizes`` through the cache equals ``full``, the full forward of ``x``; ``fixed``:
    through the fixed-shape cache, and again once it is cleared (over what the first forward left in it)."""
    if not fixed:
        _check_chunks(backbone, x, full, sizes, atol, backbone.new_cache(x.size(0)), "cache")
        return
    cache = backbone.new_fixed_cache(x.size(0))
    _check_chunks(backbone, x, full, sizes, atol, cache, "fixed-shape cache")
    cache.clear()
    if cache.num_tokens:
        raise ProbeFailure(f"fixed-shape cache: holds {cache.num_tokens} tokens after clear()")
    _check_chunks(backbone, x, full, sizes, atol, cache, "fixed-shape cache after clear()")


def _check_chunks(
    backbone: Backbone, x: torch.Tensor, full: torch.Tensor, sizes: Sequence[int], atol: float, cache: Cache, what: str
) -> None:
    err = (run_chunks(backbone, x, sizes, cache).float() - full.float()).abs().max().item()
    if err > atol:
        raise ProbeFailure(f"{what}: chunks of {list(sizes)} differ from the full forward by {err:.3g} > {atol:.3g}")


def with_queries(x: torch.Tensor, at: int, extra: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x [B, T, D]`` with ``extra [B, n, D]`` inserted before token ``at``, as the world model inserts its queries:
    they take the positions ``at, at + 1, ...`` of the tokens they precede, see the tokens before them and each other
    causally, and no token of ``x`` sees them. Returns the sequence, its mask, its positions and where ``x`` sits."""
    t, n = x.size(1), extra.size(1)
    index = torch.arange(t + n, device=x.device)
    is_extra = (index >= at) & (index < at + n)
    positions = torch.cat([torch.arange(at + n), torch.arange(at, t)]).to(x.device)
    mask = (index[None, :] <= index[:, None]) & (~is_extra[None, :] | is_extra[:, None])
    return torch.cat([x[:, :at], extra, x[:, at:]], dim=1), mask, positions, ~is_extra


def _differ(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


def check_mask(backbone: Backbone, x: torch.Tensor, full: torch.Tensor, atol: float) -> None:
    """The masked forward of ``x`` with the causal mask and positions is ``full``, its causal forward; with extra
    tokens inserted (:func:`with_queries`), the tokens of ``x`` still give ``full`` and the extra ones what a causal
    forward of them after the tokens they follow gives; in train mode, changing the extra tokens changes no other."""
    t = x.size(1)
    index = torch.arange(t, device=x.device)
    with _mode(backbone, train=False):
        err = _differ(backbone(x, mask=index[None, :] <= index[:, None], positions=index), full)
        if err > atol:
            raise ProbeFailure(f"mask: a causal mask gives {err:.3g} > {atol:.3g} away from the causal forward")
        at = t // 2
        extra = torch.randn(x.size(0), min(3, t - at), x.size(2), generator=torch.Generator().manual_seed(1))
        sequence, mask, positions, real = with_queries(x, at, extra.to(x))
        out = backbone(sequence, mask=mask, positions=positions)
        err = _differ(out[:, real], full)
        if err > atol:
            raise ProbeFailure(f"mask: tokens that see no inserted token changed by {err:.3g} > {atol:.3g}")
        err = _differ(out[:, ~real], backbone(sequence[:, : at + extra.size(1)])[:, at:])
        if err > atol:
            raise ProbeFailure(f"mask: inserted tokens at repeated positions differ by {err:.3g} > {atol:.3g}")
    with _mode(backbone, train=True):
        changed = sequence.clone()
        changed[:, ~real] = -sequence[:, ~real]
        before = _seeded(backbone, sequence, mask=mask, positions=positions)
        after = _seeded(backbone, changed, mask=mask, positions=positions)
        err = _differ(after[:, real], before[:, real])
    if err > atol:
        raise ProbeFailure(f"mask in train mode: masked-out tokens changed others by {err:.3g} > {atol:.3g}")


def check_drop(backbone: Backbone, x: torch.Tensor, full: torch.Tensor, atol: float, fixed: bool = False) -> None:
    """Tokens fed through the cache (``fixed``: the fixed-shape one) and then dropped leave it as it was: continuing
    it gives ``full``."""
    half = x.size(1) // 2
    dropped = -x[:, half : half + 3]
    with _mode(backbone, train=False):
        cache = backbone.new_fixed_cache(x.size(0)) if fixed else backbone.new_cache(x.size(0))
        backbone(x[:, :half], cache)
        backbone(dropped, cache)
        cache.drop(dropped.size(1))
        if cache.num_tokens != half:
            raise ProbeFailure(f"drop: the cache holds {cache.num_tokens} tokens, {half} before the dropped ones")
        err = _differ(backbone(x[:, half:], cache), full[:, half:])
    if err > atol:
        raise ProbeFailure(f"drop: continuing after dropped tokens differs by {err:.3g} > {atol:.3g}")


def probe(backbone: Backbone, *, length: int = 16, batch: int = 2, masked: bool = False, fixed: bool = False) -> None:
    """The build-time checks, cheap (a few forwards of ``length`` tokens): raises :class:`ProbeFailure`. ``masked``:
    also the mask and drop checks (parallel frame prediction); ``fixed``: the cache checks through the fixed-shape
    cache too (and its drop check with ``masked``)."""
    weight = next((p for p in backbone.parameters() if p.is_floating_point()), None)
    dtype, device = (torch.float32, "cpu") if weight is None else (weight.dtype, weight.device)
    t = min(length, backbone.max_tokens)
    x = torch.randn(batch, t, backbone.d_model, generator=torch.Generator().manual_seed(0)).to(device, dtype)
    with _mode(backbone, train=False):
        full = backbone(x)
    if tuple(full.shape) != tuple(x.shape):
        raise ProbeFailure(f"shape: output {tuple(full.shape)} for input {tuple(x.shape)}")
    atol = (1e-3 if dtype == torch.float32 else 5e-2) * (1 + full.float().abs().max().item())
    for train in (False, True):
        for position in (t // 2, t - 1):
            check_causal(backbone, x, position, train=train, atol=atol)
    with _mode(backbone, train=False):
        for fixed_cache in (False, True) if fixed else (False,):
            check_cache(backbone, x, full, (1, 4, 3), atol, fixed=fixed_cache)
    if masked:
        check_mask(backbone, x, full, atol)
        for fixed_cache in (False, True) if fixed else (False,):
            check_drop(backbone, x, full, atol, fixed=fixed_cache)


def probe_backbone(backbone: Backbone, name: str, package: str, *, masked: bool = False, fixed: bool = False) -> None:
    """:func:`probe`, with any failure as one line naming the backbone, its package and the property."""
    try:
        probe(backbone, masked=masked, fixed=fixed)
    except ProbeFailure as exc:
        problem = str(exc)
    except Exception as exc:  # noqa: BLE001 (a backbone that crashes on random embeddings fails the probe too)
        problem = f"{type(exc).__name__}: {_first_line(exc)}"
    else:
        return
    raise WmbenchError(
        f"backbone {name!r} from package {package!r} failed the build-time probe: {problem} (skip: --set probe=false)"
    )
