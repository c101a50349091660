"""The world-model track's measures, on episodes the world model never trained on, beside references that need no
world model.

- Next-token cross-entropy (nats) over every step of the episodes (consecutive windows of ``max_blocks`` frames),
  split into frames without history (the first frame of a window: only its own earlier tokens to go on) and with
  history, and, among the latter, tokens that changed from the previous frame and tokens that did not.
- References on exactly the same tokens (:class:`References`, fitted on the train part): ``unigram`` (the token
  frequencies) and ``copy`` (the previous frame's token with probability q, else the unigram; the unigram alone
  where there is no previous frame).
- Rewards (sign) and episode ends over every step: cross-entropy, balanced accuracy (the mean of the per-class
  recalls) and precision and recall of the rare class (a reward, an end), with the number of such steps.
- Rollouts: after ``burn_in`` real frames (tokens and actions fed as context), several sampled continuations per
  start, driven by the real actions, against the real frames: MSE, PSNR and token accuracy after k imagined steps,
  beside copying the last real frame (the baseline any world model must beat), and imagined frames per second
  (every imagined frame decoded, as the agent's imagination does; the burn-in included).
"""

from __future__ import annotations

import contextlib
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from wmbench.engine.imagination import DreamEnv
from wmbench.engine.replay import Episode
from wmbench.engine.tokenizer import Tokenizer
from wmbench.engine.world_model import WorldModel
from wmbench.errors import WmbenchError
from wmbench.tracks.dataset import windows

GROUPS = ("all", "no_history", "history", "changed", "unchanged")
"""Token groups of the split cross-entropy."""
COPY_GRID = np.concatenate([np.linspace(0.05, 0.95, 19), 1 - np.logspace(-1.5, -4, 11)])
"""Candidate probabilities of the copy reference."""


@torch.no_grad()
def encode(tokenizer: Tokenizer, episodes: list[Episode], device: torch.device, batch: int = 256) -> list[torch.Tensor]:
    """Each episode's tokens ``[T, K]`` (on the CPU), through the frozen tokenizer."""
    out = []
    for e in episodes:
        chunks = [tokenizer.encode(e.frames[i : i + batch].to(device).float().div(255)).cpu()
                  for i in range(0, len(e), batch)]  # fmt: skip
        out.append(torch.cat(chunks))
    return out


@dataclass(frozen=True)
class References:
    """Predictors without a world model, fitted on the train part's tokens."""

    unigram: torch.Tensor
    """Token frequencies (add-one smoothed)."""
    copy: float
    """The copy reference's probability of the previous frame's token, the best of :data:`COPY_GRID` on the train part."""

    @classmethod
    def fit(cls, tokens: list[torch.Tensor], vocab_size: int) -> References:
        flat = torch.cat([t.flatten() for t in tokens])
        unigram = (torch.bincount(flat, minlength=vocab_size).double() + 1) / (len(flat) + vocab_size)
        now = torch.cat([t[1:].flatten() for t in tokens])
        same = (now == torch.cat([t[:-1].flatten() for t in tokens])).double()
        u = unigram[now]
        losses = [-torch.log(q * same + (1 - q) * u).mean().item() for q in COPY_GRID]
        return cls(unigram.float(), float(COPY_GRID[int(np.argmin(losses))]))

    def losses(self, labels: torch.Tensor, previous: torch.Tensor, history: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-token cross-entropies of ``unigram`` and ``copy`` (labels >= 0 only)."""
        u = self.unigram.to(labels.device)[labels.clamp_min(0)]
        copy = torch.where(history, torch.log(self.copy * (labels == previous) + (1 - self.copy) * u), torch.log(u))
        return {"unigram": -torch.log(u), "copy": -copy}


def token_episodes(tokens: list[torch.Tensor], episodes: list[Episode]) -> list[Episode]:
    """The episodes with their tokens ``[T, K]`` in place of their frames (what the world model trains and is
    measured on: segments and samples of them carry tokens under ``frames``)."""
    return [Episode(t, e.actions, e.rewards, e.ends) for t, e in zip(tokens, episodes)]


def batches(episodes: list[Episode], spans: list[tuple[int, int]], length: int, size: int, device: torch.device):
    """Batches of windows ``(episode, start)`` of ``length`` steps, as tensors on ``device`` (padded, ``mask``)."""
    for first in range(0, len(spans), size):
        segments = [episodes[i].segment(s, s + length) for i, s in spans[first : first + size]]
        yield {key: torch.stack([seg[key] for seg in segments]).to(device) for key in segments[0]}


def _classification(pred: torch.Tensor, label: torch.Tensor, rare: Callable[[torch.Tensor], torch.Tensor]):
    """Balanced accuracy over the classes present (None with fewer than two: one class is nothing to balance, and
    "always the common class" would score 1), and precision and recall of the rare classes (a hit: the rare class
    predicted exactly), with the count of rare steps; precision and recall are None without rare steps."""
    recalls = [(pred[label == c] == c).double().mean().item() for c in label.unique()]
    hits = ((pred == label) & rare(label)).sum().item()
    predicted, actual = rare(pred).sum().item(), rare(label).sum().item()
    return {
        "balanced_accuracy": float(np.mean(recalls)) if len(recalls) > 1 else None,
        "precision": hits / predicted if predicted else (None if not actual else 0.0),
        "recall": hits / actual if actual else None,
        "count": int(actual),
    }


@torch.no_grad()
def losses(
    wm: WorldModel, episodes: list[Episode], refs: References, batch_size: int, device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager], prefix: str,
) -> dict[str, float | None]:  # fmt: skip
    """Cross-entropies by token group beside the references, and reward and end figures, over every step of token
    episodes (:func:`token_episodes`)."""
    length, k = wm.max_blocks, wm.tokens_per_frame
    sums: dict[str, float] = defaultdict(float)
    heads: dict[str, tuple[list, list]] = {"rewards": ([], []), "ends": ([], [])}
    position = torch.arange(1, length * k, device=device)  # the flattened obs token each read predicts
    history = position >= k  # reads of a frame after the window's first
    for batch in batches(episodes, windows(episodes, length), length, batch_size, device):
        obs = batch["frames"]
        with autocast():
            out = wm.predictions(obs, batch["actions"], batch["rewards"], batch["ends"], batch["mask"])
        logits, labels = out["observations"]
        nll = F.cross_entropy(logits.float().transpose(1, 2), labels, reduction="none")
        flat = obs.flatten(1)
        previous = flat[:, (position - k).clamp_min(0)]
        valid = labels != -100
        changed = history & (labels != previous)
        groups = {"all": valid, "no_history": valid & ~history, "history": valid & history,
                  "changed": valid & changed, "unchanged": valid & history & ~changed}  # fmt: skip
        reference = refs.losses(labels, previous, history.expand_as(labels))
        for name, where in groups.items():
            sums[f"count/{name}"] += where.sum().item()
            sums[f"model/{name}"] += nll[where].sum().item()
            for ref, values in reference.items():
                sums[f"{ref}/{name}"] += values[where].sum().item()
        for head in heads:
            head_logits, head_labels = out[head]
            kept = head_labels != -100
            sums[f"loss/{head}"] += F.cross_entropy(
                head_logits[kept].float(), head_labels[kept], reduction="sum"
            ).item()
            heads[head][0].append(head_logits[kept].argmax(-1).cpu())
            heads[head][1].append(head_labels[kept].cpu())
    figures: dict[str, float | None] = {}
    for name in GROUPS:
        count = sums[f"count/{name}"]
        figures[f"{prefix}/loss/observations" + ("" if name == "all" else f"_{name}")] = (
            sums[f"model/{name}"] / count if count else None
        )
        for ref in ("unigram", "copy"):
            figures[f"{prefix}/reference/{ref}/observations" + ("" if name == "all" else f"_{name}")] = (
                sums[f"{ref}/{name}"] / count if count else None
            )
    figures[f"{prefix}/share/changed"] = (
        sums["count/changed"] / sums["count/history"] if sums["count/history"] else None
    )
    rare = {"rewards": lambda x: x != 1, "ends": lambda x: x == 1}  # reward class 1 is a zero reward
    for head, (pred, label) in heads.items():
        p, y = torch.cat(pred), torch.cat(label)
        figures[f"{prefix}/loss/{head}"] = sums[f"loss/{head}"] / len(y)
        figures.update({f"{prefix}/{head}/{k}": v for k, v in _classification(p, y, rare[head]).items()})
    return figures


def _psnr(mse: torch.Tensor) -> torch.Tensor:
    """Per frame 10 log10(1 / MSE), pixels in [0, 1] (capped at 100 dB, an exact match)."""
    return -10 * torch.log10(mse.clamp_min(1e-10))


@torch.no_grad()
def rollouts(
    tokenizer: Tokenizer, wm: WorldModel, episodes: list[Episode], tokens: list[torch.Tensor], *, starts: int,
    samples: int, burn_in: int, steps: tuple[int, ...], seed: int, device: torch.device,
    autocast: Callable[[], contextlib.AbstractContextManager], chunk: int = 128,
) -> dict[str, float]:  # fmt: skip
    """Imagined rollouts from ``starts`` held-out windows (spread over the episodes), ``samples`` each, after
    ``burn_in`` real frames, against the real frames and beside copying the last real frame."""
    horizon = max(steps)
    found = [(i, s) for i, e in enumerate(episodes) for s in range(len(e) - burn_in - horizon + 1)]
    if not found:
        raise WmbenchError(
            f"no held-out episode is as long as world_model_track.rollout_burn_in + the longest rollout step "
            f"({burn_in + horizon} frames); lower them or raise world_model_track.dataset_steps"
        )
    picked = [found[j] for j in np.unique(np.linspace(0, len(found) - 1, min(starts, len(found))).round().astype(int))]
    runs = [p for p in picked for _ in range(samples)]
    generator = torch.Generator(device=device).manual_seed(seed)
    dream = DreamEnv(tokenizer, wm, generator)
    sums: dict[str, float] = defaultdict(float)
    seconds = 0.0
    for first in range(0, len(runs), chunk):
        part = runs[first : first + chunk]
        context = torch.stack([tokens[i][s : s + burn_in] for i, s in part]).to(device)
        actions = torch.stack([episodes[i].actions[s : s + burn_in - 1 + horizon] for i, s in part]).to(device)
        real = torch.stack([episodes[i].frames[s + burn_in : s + burn_in + horizon] for i, s in part])
        real = real.to(device).float().div(255)
        real_tokens = torch.stack([tokens[i][s + burn_in : s + burn_in + horizon] for i, s in part]).to(device)
        last = torch.stack([episodes[i].frames[s + burn_in - 1] for i, s in part]).to(device).float().div(255)
        start = time.perf_counter()
        with autocast(), wm.transformer.rollout():
            blocks = torch.cat([context[:, :-1], actions[:, : burn_in - 1, None]], dim=2).flatten(1)
            dream.cache = wm.transformer.new_cache(len(part))
            wm(torch.cat([blocks, context[:, -1]], dim=1), dream.cache)
            dream.obs_tokens = context[:, -1]
            imagined = []
            for k in range(1, horizon + 1):
                frames, _, _ = dream.step(actions[:, burn_in - 2 + k])
                imagined.append((frames.float().clamp(0, 1), dream.obs_tokens))
        seconds += time.perf_counter() - start
        for k in steps:
            frames, predicted = imagined[k - 1]
            target = real[:, k - 1]
            mse = (frames - target).pow(2).flatten(1).mean(1)
            copy = (last - target).pow(2).flatten(1).mean(1)
            sums[f"mse@{k}"] += mse.sum().item()
            sums[f"psnr@{k}"] += _psnr(mse).sum().item()
            sums[f"copy_mse@{k}"] += copy.sum().item()
            sums[f"copy_psnr@{k}"] += _psnr(copy).sum().item()
            sums[f"tokens@{k}"] += (predicted == real_tokens[:, k - 1]).float().mean(1).sum().item()
            sums[f"copy_tokens@{k}"] += (context[:, -1] == real_tokens[:, k - 1]).float().mean(1).sum().item()
        recon = tokenizer.decode(real_tokens.flatten(0, 1)).float().clamp(0, 1)
        sums["reconstruction_mse"] += (recon - real.flatten(0, 1)).pow(2).flatten(1).mean(1).sum().item() / horizon
    n = len(runs)
    out = {"heldout/rollout/starts": float(len(picked)), "heldout/rollout/samples": float(samples),
           "heldout/reconstruction_mse": sums["reconstruction_mse"] / n,
           "heldout/imagined_frames_per_s": n * horizon / seconds}  # fmt: skip
    for k in steps:
        for key, name in (("mse", "rollout_mse"), ("psnr", "rollout_psnr"), ("tokens", "rollout_token_accuracy"),
                          ("copy_mse", "copy_mse"), ("copy_psnr", "copy_psnr"), ("copy_tokens", "copy_token_accuracy")):  # fmt: skip
            out[f"heldout/{name}@{k}"] = sums[f"{key}@{k}"] / n
    return out
