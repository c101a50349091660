"""The world-model track: how much real data a tokenizer and world model need, with the actor-critic left out.

The dataset (:mod:`wmbench.tracks.dataset`) is fixed per game and collection seed, and split by episodes into
train and held-out parts. The agent is built, and its tokenizer and world model trained, by the agent track's
own :class:`~wmbench.engine.trainer.Trainer`, on the preset's epoch schedule: epoch ``e`` may sample the first
``e * collect.steps_per_epoch`` train steps (the "frames seen"), as if a random policy had collected them. At
each budget (frames seen) the held-out figures are logged as one metrics line and a checkpoint is written:

- ``heldout/loss/{observations,rewards,ends}``: cross-entropies of the three heads on held-out segments;
- ``heldout/accuracy/{rewards,ends}``: argmax accuracy of the reward-sign and end heads, and
  ``heldout/accuracy/nonzero_rewards`` on the rewarded steps alone (when the held-out segments have any);
- ``heldout/rollout_mse@k`` and ``heldout/rollout_psnr@k``: frames imagined ``k`` steps ahead from a held-out
  frame, driven by the held-out actions, against the real frames (pixels in [0, 1]);
- ``heldout/rollout_token_accuracy@k``: the share of those imagined tokens equal to the real frame's tokens,
  the world model's own error (the frame errors include the tokenizer's);
- ``heldout/reconstruction_mse``: the tokenizer's own error on those real frames, the floor of the above.
"""

from __future__ import annotations

import time
from collections import defaultdict
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wmbench import config as cfg
from wmbench.engine.imagination import DreamEnv
from wmbench.engine.replay import ReplayStore
from wmbench.engine.trainer import Trainer
from wmbench.errors import WmbenchError
from wmbench.plugins import Registry
from wmbench.progress import Progress
from wmbench.rundir import OBS_LOSS, TRACK_WORLD_MODEL, RunDir
from wmbench.tracks import dataset


def check_settings(config: cfg.RunConfig) -> None:
    """Refuse budgets that do not fall on the epoch schedule, or rollouts without steps (before any work)."""
    w, per_epoch = config.world_model_track, config.training.collect.steps_per_epoch
    if not w.budgets or any(b <= 0 or b % per_epoch for b in w.budgets) or list(w.budgets) != sorted(set(w.budgets)):
        raise WmbenchError(
            f"world_model_track.budgets must be increasing multiples of training.collect.steps_per_epoch "
            f"({per_epoch}), got {list(w.budgets)}"
        )
    if not w.rollout_steps or min(w.rollout_steps) < 1:
        raise WmbenchError(f"world_model_track.rollout_steps must be positive step counts, got {list(w.rollout_steps)}")
    if not 0 < w.heldout_fraction < 1:
        raise WmbenchError(f"world_model_track.heldout_fraction must be between 0 and 1, got {w.heldout_fraction}")


def frames_to_target(rows: list[dict[str, Any]], target: float) -> int | None:
    """The first budget whose held-out next-token cross-entropy is at or below ``target`` (None: never)."""
    return next((r["env_steps"] for r in rows if r[OBS_LOSS] <= target), None)


class WorldModelTrack:
    """One world-model-track run of one game with one backbone and tokenizer, in a run folder."""

    def __init__(
        self, config: cfg.RunConfig, run: RunDir, registry: Registry, log=print, progress: Progress | None = None
    ):
        check_settings(config)
        progress = progress or Progress(log=log)
        self.config, self.run, self.log = config, run, progress.log
        w = config.world_model_track
        episodes, self.dataset_file = dataset.load_or_collect(
            config.game, config.env, w.dataset_steps, config.seed, self.log
        )
        self.train, self.heldout = dataset.split(episodes, w.heldout_fraction, f"dataset {self.dataset_file}")
        train_steps = sum(len(e) for e in self.train)
        if w.budgets[-1] > train_steps:
            raise WmbenchError(
                f"world_model_track.budgets go up to {w.budgets[-1]} frames, but the train part of the dataset holds "
                f"{train_steps}; raise world_model_track.dataset_steps (now {w.dataset_steps})"
            )
        self.trainer = Trainer(config, run, registry, progress=progress)
        self.trainer.store = ReplayStore(None, config.training.sampling_weights)

    @property
    def agent(self):
        return self.trainer.agent

    def resume(self) -> str:
        """Continue from the checkpoint of the last budget reached (or start over, when stopped before the first);
        returns a line saying from where."""
        t = self.trainer
        if not self.run.last_checkpoint.exists():
            self.run.roll_back(0)
            return f"{self.run.path} has no checkpoint yet: starting it over from the first budget"
        t.load_checkpoint()
        self.run.roll_back(t.epoch)
        return f"resumed {self.run.path} after {t.env_steps} frames seen (epoch {t.epoch})"

    def fit(self) -> dict[str, Any]:
        """Train up to the last budget, logging held-out figures at each; returns the summary written."""
        c, t = self.config, self.trainer
        s, per_epoch = c.training, c.training.collect.steps_per_epoch
        budgets, k = set(c.world_model_track.budgets), c.world_model_track.rollout_steps[0]
        t.start()
        while t.env_steps < c.world_model_track.budgets[-1]:
            start = time.perf_counter()
            t.epoch += 1
            t.env_steps = t.epoch * per_epoch
            t.store.episodes = dataset.prefix(self.train, t.env_steps)
            metrics: dict[str, Any] = {}
            if t.epoch > s.tokenizer.start_after_epochs:
                metrics.update(t.train_tokenizer())
            if t.epoch > s.world_model.start_after_epochs:
                metrics.update(t.train_world_model())
            if t.env_steps in budgets:
                metrics.update(self.evaluate())
            t.wall_time += time.perf_counter() - start
            if t.env_steps in budgets:
                record = t.log_epoch(metrics)
                t.checkpoint()
                self.log(f"{t.env_steps} frames seen: held-out next-token loss {record[OBS_LOSS]:.4f}, "
                         f"rollout PSNR@{k} {record[f'heldout/rollout_psnr@{k}']:.2f} dB "
                         f"({t.wall_time:.0f}s)")  # fmt: skip
        return t.finish(self.summary())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The held-out figures of the current tokenizer and world model."""
        self.agent.tokenizer.eval()
        self.agent.world_model.eval()
        with self.trainer.autocast():
            return {**self.heldout_losses(), **self.rollout_errors()}

    def _to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.trainer.device) for k, v in batch.items()}
        batch["frames"] = batch["frames"].float().div(255)
        return batch

    def heldout_losses(self) -> dict[str, float]:
        """Cross-entropies and accuracies of the heads over evenly spread held-out segments."""
        wm, length = self.agent.world_model, self.agent.world_model.max_blocks
        starts = [(i, s) for i, e in enumerate(self.heldout) for s in range(0, len(e), length)]
        chosen = _spread(starts, self.config.world_model_track.eval_segments)
        sums: dict[str, float] = defaultdict(float)
        batch_size = self.config.training.world_model.batch_size
        for first in range(0, len(chosen), batch_size):
            segments = [self.heldout[i].segment(s, s + length) for i, s in chosen[first : first + batch_size]]
            batch = self._to_device({k: torch.stack([seg[k] for seg in segments]) for k in segments[0]})
            b, steps = batch["actions"].shape
            tokens = self.agent.tokenizer.encode(batch["frames"].flatten(0, 1)).view(b, steps, -1)
            for name, (logits, labels) in wm.predictions(
                tokens, batch["actions"], batch["rewards"], batch["ends"], batch["mask"]
            ).items():
                logits, labels = logits.flatten(0, -2).float(), labels.flatten()
                valid = labels != -100
                sums[f"loss/{name}"] += F.cross_entropy(logits, labels, reduction="sum").item()
                sums[f"count/{name}"] += valid.sum().item()
                sums[f"correct/{name}"] += ((logits.argmax(-1) == labels) & valid).sum().item()
                if name == "rewards":  # steps with a reward (label 1 is a zero reward), rare and what matters
                    rewarded = valid & (labels != 1)
                    sums["count/nonzero_rewards"] += rewarded.sum().item()
                    sums["correct/nonzero_rewards"] += ((logits.argmax(-1) == labels) & rewarded).sum().item()
        out = {f"heldout/loss/{n}": sums[f"loss/{n}"] / sums[f"count/{n}"] for n in ("observations", "rewards", "ends")}
        accuracies = [n for n in ("rewards", "nonzero_rewards", "ends") if sums[f"count/{n}"]]
        out.update({f"heldout/accuracy/{n}": sums[f"correct/{n}"] / sums[f"count/{n}"] for n in accuracies})
        return out

    def rollout_errors(self) -> dict[str, float]:
        """Frame MSE and PSNR of imagined rollouts from held-out frames, driven by the held-out actions."""
        w = self.config.world_model_track
        horizon = max(w.rollout_steps)
        starts = [(i, s) for i, e in enumerate(self.heldout) for s in range(len(e) - horizon)]
        if not starts:
            raise WmbenchError(
                f"no held-out episode is longer than {horizon} steps; lower world_model_track.rollout_steps"
            )
        chosen = _spread(starts, w.rollout_starts)
        device = self.trainer.device
        first = torch.stack([self.heldout[i].frames[s] for i, s in chosen]).to(device).float().div(255)
        actions = torch.stack([self.heldout[i].actions[s : s + horizon] for i, s in chosen]).to(device)
        real = (
            torch.stack([self.heldout[i].frames[s + 1 : s + 1 + horizon] for i, s in chosen])
            .to(device)
            .float()
            .div(255)
        )
        # A generator of its own: the same samples at every budget, and training's random streams untouched.
        dream = DreamEnv(
            self.agent.tokenizer, self.agent.world_model, torch.Generator(device=device).manual_seed(self.config.seed)
        )
        dream.reset(first)
        out: dict[str, float] = {}
        for k in range(1, horizon + 1):
            frames, _, _ = dream.step(actions[:, k - 1], decode=k in w.rollout_steps)
            if k in w.rollout_steps:
                mse = (frames.float().clamp(0, 1) - real[:, k - 1]).pow(2).flatten(1).mean(1)
                out[f"heldout/rollout_mse@{k}"] = mse.mean().item()
                out[f"heldout/rollout_psnr@{k}"] = _psnr(mse)
                same = dream.obs_tokens == self.agent.tokenizer.encode(real[:, k - 1])
                out[f"heldout/rollout_token_accuracy@{k}"] = same.float().mean().item()
        recon = self.agent.tokenizer.reconstruct(real.flatten(0, 1)).float().clamp(0, 1)
        out["heldout/reconstruction_mse"] = (recon - real.flatten(0, 1)).pow(2).mean().item()
        return out

    def summary(self) -> dict[str, Any]:
        c, t = self.config, self.trainer
        w = c.world_model_track
        rows = [r for r in self.run.read_metrics() if OBS_LOSS in r]
        figures = [{k: v for k, v in r.items() if k == "env_steps" or k.startswith("heldout/")} for r in rows]
        return {
            "track": TRACK_WORLD_MODEL,
            **t.run_facts(),
            "dataset": {
                "file": str(self.dataset_file),
                "policy": dataset.POLICY,
                "collection_seed": c.seed,
                "train_steps": sum(len(e) for e in self.train),
                "train_episodes": len(self.train),
                "heldout_steps": sum(len(e) for e in self.heldout),
                "heldout_episodes": len(self.heldout),
            },
            "budgets": list(w.budgets),
            "per_budget": figures,
            "final": figures[-1],
            "target_loss": w.target_loss,
            "frames_to_target": frames_to_target(figures, w.target_loss),
        }


def _spread(items: list, count: int) -> list:
    """At most ``count`` items, evenly spaced over the list (all of them if there are fewer)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]


def _psnr(mse: torch.Tensor) -> float:
    """Mean over frames of 10 log10(1 / MSE), pixels in [0, 1] (capped at 100 dB, an exact match)."""
    return float((-10 * torch.log10(mse.clamp_min(1e-10))).mean())
