"""The world-model track: how much real data a world model needs, with the tokenizer frozen and the actor-critic
left out.

A cell is one game, backbone setup and seed. Its dataset (:mod:`wmbench.tracks.dataset`: a mix of behaviour
policies, split by whole episodes into train, validation and held-out parts, plus an out-of-distribution part) and
its tokenizer (:mod:`wmbench.tracks.frozen_tokenizer`: trained once on the train part, shared by every backbone)
are fixed per game and seed. Each budget is then a fresh world model, initialised alike, trained on the first
``budget`` train steps for at most ``world_model_track.steps`` optimiser steps (the same for every backbone and
budget), validated every ``training.world_model.steps_per_epoch`` steps; the state with the lowest validation loss
is kept (early stopping, one rule for all) and measured on the held-out and out-of-distribution episodes
(:mod:`wmbench.tracks.heldout`). With several ``world_model_track.lrs``, each is trained at the largest budget
and the one with the lowest validation loss serves every budget: held-out data never chooses anything.

Each finished run is one metrics line (``candidate`` runs of the learning-rate search carry validation figures
only); the checkpoint holds the cell's progress (the runs done and their figures), not weights: a run is short, and
an interrupted one starts again.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from wmbench import config as cfg
from wmbench import files
from wmbench.engine.agent import Agent, build_agent
from wmbench.engine.optim import optimizer_step
from wmbench.engine.replay import ReplayStore
from wmbench.engine.trainer import Trainer, world_model_optimizer
from wmbench.errors import WmbenchError
from wmbench.plugins import Registry
from wmbench.progress import Progress
from wmbench.rundir import OBS_LOSS, TRACK_WORLD_MODEL, RunDir
from wmbench.tracks import dataset, frozen_tokenizer, heldout, policies

PROGRESS_FORMAT = "wmbench-world-model-track-progress-1"
INPUT_SCALES = ("engine", "backbone")


def check_settings(config: cfg.RunConfig) -> None:
    """Refuse settings that cannot make a sound cell, before any work."""
    w, per_epoch = config.world_model_track, config.training.world_model.steps_per_epoch
    problems = {
        "budgets must be increasing positive frame counts": not w.budgets or min(w.budgets) <= 0
        or list(w.budgets) != sorted(set(w.budgets)),
        f"steps must be a positive multiple of training.world_model.steps_per_epoch ({per_epoch})": w.steps <= 0
        or w.steps % per_epoch,
        "validation_fraction and heldout_fraction must be above 0, and below 1 together": min(
            w.validation_fraction, w.heldout_fraction) <= 0 or w.validation_fraction + w.heldout_fraction >= 1,
        "lrs must be distinct positive learning rates": any(lr <= 0 for lr in w.lrs) or len(set(w.lrs)) != len(w.lrs),
        f"input_scale must be one of {', '.join(INPUT_SCALES)}": w.input_scale not in INPUT_SCALES,
        "rollout_steps must be positive step counts": not w.rollout_steps or min(w.rollout_steps) < 1,
        f"rollout_burn_in must be at least 1 and below world_model.max_blocks ({config.world_model.max_blocks})":
            not 1 <= w.rollout_burn_in < config.world_model.max_blocks,
        "tokenizer_steps, eval_segments, rollout_starts and rollout_samples must be above zero": min(
            w.tokenizer_steps, w.eval_segments, w.rollout_starts, w.rollout_samples) < 1,
        "patience, dataset_steps and ood_steps must not be negative": min(w.patience, w.ood_steps) < 0
        or w.dataset_steps <= 0,
    }  # fmt: skip
    for problem, found in problems.items():
        if found:
            raise WmbenchError(f"world_model_track.{problem}; got {_settings(w)}")
    policies.check(w.policies, config.game, "world_model_track.policies")


def _settings(w: cfg.WorldModelTrackConfig) -> str:
    return ", ".join(f"{f.name}={getattr(w, f.name)!r}" for f in dataclasses.fields(w))


def token_table_rms(backbone: nn.Module) -> float | None:
    """The RMS of the backbone's own input token table (a transformers model's ``get_input_embeddings``), or None."""
    get = getattr(getattr(backbone, "model", None), "get_input_embeddings", None)
    table = get() if callable(get) else None
    return None if table is None else float(table.weight.detach().float().pow(2).mean().sqrt())


class WorldModelTrack:
    """One world-model-track cell: one game, backbone setup and seed, in a run folder."""

    def __init__(
        self, config: cfg.RunConfig, run: RunDir, registry: Registry, log=print, progress: Progress | None = None
    ):
        check_settings(config)
        progress = progress or Progress(log=log)
        self.config, self.run, self.registry, self.log = config, run, registry, progress.log
        w = config.world_model_track
        self.data = dataset.load_or_collect(config.game, config.env, w, config.seed, self.log)
        train_steps = sum(len(e) for e in self.data.train)
        if w.budgets[-1] > train_steps:
            raise WmbenchError(
                f"world_model_track.budgets go up to {w.budgets[-1]} frames, but the train part of the dataset holds "
                f"{train_steps}; raise world_model_track.dataset_steps (now {w.dataset_steps})"
            )
        self.trainer = Trainer(config, run, registry, progress=progress)
        tokenizer, device = self.trainer.agent.tokenizer, self.trainer.device
        self.tokenizer_facts = frozen_tokenizer.load_or_train(
            tokenizer, config, self.data.train, self.data.file, device, self.log
        )
        self.tokenizer_state = {k: v.detach().clone() for k, v in tokenizer.state_dict().items()}
        self.tokens = {p: heldout.encode(tokenizer, getattr(self.data, p), device) for p in dataset.PARTS}
        self.references = heldout.References.fit(self.tokens["train"], tokenizer.vocab_size)
        self.episodes = {p: heldout.token_episodes(self.tokens[p], getattr(self.data, p)) for p in dataset.PARTS}
        """Each part's episodes with their tokens in place of frames: encoded once, what every run trains on."""
        self.candidates: dict[str, dict[str, Any]] = {}
        """Learning rate (as text) -> validation figures of its run at the largest budget."""
        self.rows: dict[int, dict[str, Any]] = {}
        """Budget -> the figures of its run."""

    @property
    def agent(self) -> Agent:
        return self.trainer.agent

    # Progress ----------------------------------------------------------------------------------------

    def _save_progress(self) -> None:
        t = self.trainer
        files.save_torch(self.run.last_checkpoint, {
            "format": PROGRESS_FORMAT, "config": json.dumps(cfg.to_dict(self.config)), "epoch": t.epoch,
            "wall_time": t.wall_time, "candidates": self.candidates, "rows": {str(b): r for b, r in self.rows.items()},
        })  # fmt: skip
        t.observers.checkpoint_saved(self.run.last_checkpoint, t.epoch)

    def resume(self) -> str:
        """Continue after the last finished run (or start over, when stopped before the first); returns a line saying
        from where."""
        from wmbench.checkpoints import check_same_run

        path, t = self.run.last_checkpoint, self.trainer
        if not path.exists():
            self.run.roll_back(0)
            return f"{self.run.path} has no checkpoint yet: starting it over from the first run"
        state = files.load_torch(path)
        if not isinstance(state, dict) or state.get("format") != PROGRESS_FORMAT:
            raise WmbenchError(f"{path} is not the progress of a world-model-track run")
        check_same_run(state, cfg.to_dict(self.config), path)
        t.epoch, t.wall_time = state["epoch"], state["wall_time"]
        self.candidates, self.rows = state["candidates"], {int(b): r for b, r in state["rows"].items()}
        self.run.roll_back(t.epoch)
        return f"resumed {self.run.path} after {t.epoch} run(s): budgets done {sorted(self.rows) or 'none'}"

    # One run -----------------------------------------------------------------------------------------

    def fresh_agent(self) -> Agent:
        """A new agent, initialised as every run of the cell is, with the frozen tokenizer."""
        torch.manual_seed(self.config.seed)
        agent = build_agent(dataclasses.replace(self.config, probe=False), self.registry, self.trainer.num_actions)
        agent = agent.to(self.trainer.device)
        agent.tokenizer.load_state_dict(self.tokenizer_state)
        agent.tokenizer.requires_grad_(False)
        if self.config.world_model_track.input_scale == "backbone":
            rms = token_table_rms(agent.world_model.transformer)
            if rms is None:
                raise WmbenchError(
                    f"world_model_track.input_scale=backbone: backbone {self.config.backbone.name!r} has no token table "
                    "of its own to take the scale of; use input_scale=engine"
                )
            with torch.no_grad():
                for table in agent.world_model.embedder.embedding_tables:
                    if isinstance(table, nn.Embedding):  # the world model's own, not a reused LLM table
                        table.weight.mul_(rms / table.weight.float().pow(2).mean().sqrt())
        return agent

    def train(self, budget: int, lr: float) -> dict[str, Any]:
        """Train a fresh world model on the first ``budget`` train steps at ``lr``; keeps the best validated state in
        ``self.trainer.agent``; returns the run's facts (the validation loss after every epoch among them)."""
        c, t, w = self.config, self.trainer, self.config.world_model_track
        per_epoch, batch_size = c.training.world_model.steps_per_epoch, c.training.world_model.batch_size
        start = time.perf_counter()
        t.agent = self.fresh_agent()
        wm = t.agent.world_model
        optimizer = world_model_optimizer(wm, lr, c.training.world_model.weight_decay)
        rng = np.random.default_rng(c.seed)
        store = ReplayStore(None, c.training.sampling_weights)
        store.episodes = dataset.prefix(self.episodes["train"], budget)
        params = {n: p for n, p in wm.named_parameters() if p.requires_grad}
        best, best_state, best_step, step, stale, curve = math.inf, None, 0, 0, 0, []
        while step < w.steps:
            wm.train()
            for _ in t.progress.track(
                range(per_epoch), f"{budget} frames, lr {lr:g}: steps {step + 1}-{step + per_epoch}"
            ):
                batch = {k: v.to(t.device) for k, v in store.sample(batch_size, wm.max_blocks, True, rng).items()}
                with t.autocast():
                    losses = wm.losses(
                        batch["frames"], batch["actions"], batch["rewards"], batch["ends"], batch["mask"]
                    )
                optimizer_step(optimizer, losses.total, params.values(), c.training.world_model.grad_clip)
            step += per_epoch
            loss = self.validation_loss()
            curve.append(round(loss, 5))
            if loss < best:
                best, best_step, stale = loss, step, 0
                best_state = {n: p.detach().clone() for n, p in params.items()}
            else:
                stale += 1
                if w.patience and stale >= w.patience:
                    break
        with torch.no_grad():
            for name, value in (best_state or {}).items():
                params[name].copy_(value)
        return {"lr": lr, "validation_loss": best, "best_step": best_step, "steps_run": step, "validation_curve": curve,
                "train_seconds": round(time.perf_counter() - start, 2)}  # fmt: skip

    @torch.no_grad()
    def validation_loss(self) -> float:
        """The world model's total loss (observations, rewards, ends) on windows spread over the validation part."""
        wm, t = self.agent.world_model, self.trainer
        wm.eval()
        episodes, length = self.episodes["validation"], wm.max_blocks
        chosen = _spread(dataset.windows(episodes, length), self.config.world_model_track.eval_segments)
        total = 0.0
        for batch in heldout.batches(episodes, chosen, length, self.config.training.world_model.batch_size, t.device):
            with t.autocast():
                losses = wm.losses(batch["frames"], batch["actions"], batch["rewards"], batch["ends"], batch["mask"])
            total += losses.total.item() * len(batch["mask"])
        return total / len(chosen)

    @torch.no_grad()
    def evaluate(self) -> dict[str, Any]:
        """The held-out (and out-of-distribution) figures of the current world model."""
        c, t, w = self.config, self.trainer, self.config.world_model_track
        self.agent.eval()
        args = (self.references, c.training.world_model.batch_size, t.device, t.autocast)
        out = heldout.losses(self.agent.world_model, self.episodes["heldout"], *args, "heldout")
        if self.data.ood:
            out.update(heldout.losses(self.agent.world_model, self.episodes["ood"], *args, "ood"))
        out.update(heldout.rollouts(
            self.agent.tokenizer, self.agent.world_model, self.data.heldout, self.tokens["heldout"],
            starts=w.rollout_starts, samples=w.rollout_samples, burn_in=w.rollout_burn_in, steps=w.rollout_steps,
            seed=c.seed, device=t.device, autocast=t.autocast,
        ))  # fmt: skip
        return out

    # The cell ----------------------------------------------------------------------------------------

    def _record(self, budget: int, facts: dict[str, Any], figures: dict[str, Any] | None, seconds: float) -> None:
        t = self.trainer
        t.epoch += 1
        t.env_steps = budget
        t.wall_time += seconds
        line = {**facts, **(figures or {"candidate": True})}
        t.log_epoch(line)
        if figures is None:
            self.candidates[repr(facts["lr"])] = facts
        else:
            self.rows[budget] = {"env_steps": budget, **facts, **figures}
        self._save_progress()
        what = (f"held-out next-token loss {figures[OBS_LOSS]:.4f}" if figures
                else f"validation loss {facts['validation_loss']:.4f} (learning-rate candidate)")  # fmt: skip
        self.log(f"{budget} frames, lr {facts['lr']:g}: {what}, best at step {facts['best_step']} of "
                 f"{facts['steps_run']} ({seconds:.0f}s)")  # fmt: skip

    def chosen_lr(self) -> float:
        """The candidate with the lowest validation loss (the only learning rate when there is no search)."""
        w = self.config.world_model_track
        if len(w.lrs) <= 1:
            return w.lrs[0] if w.lrs else self.config.training.world_model.lr
        return min(w.lrs, key=lambda lr: self.candidates[repr(lr)]["validation_loss"])

    def _search(self) -> Agent | None:
        """Train each learning-rate candidate not trained yet at the largest budget; returns the best world model
        trained in this process if it is the best of all candidates (else None: it is trained again)."""
        w = self.config.world_model_track
        kept: tuple[float, Agent] | None = None
        for lr in w.lrs if len(w.lrs) > 1 else ():
            if repr(lr) in self.candidates:
                continue
            best = min((c["validation_loss"] for c in self.candidates.values()), default=math.inf)
            start = time.perf_counter()
            facts = self.train(w.budgets[-1], lr)
            self._record(w.budgets[-1], facts, None, time.perf_counter() - start)
            if facts["validation_loss"] < best:
                kept = (lr, self.agent)
        return kept[1] if kept and kept[0] == self.chosen_lr() else None

    def fit(self) -> dict[str, Any]:
        """Run what is left of the cell (the learning-rate search, then every budget, the largest first); returns the
        summary written."""
        w, t = self.config.world_model_track, self.trainer
        t.start()
        kept = self._search()
        lr = self.chosen_lr()
        for budget in (w.budgets[-1], *w.budgets[:-1]):
            if budget in self.rows:
                continue
            start = time.perf_counter()
            if kept is not None and budget == w.budgets[-1]:
                t.agent, facts = kept, self.candidates[repr(lr)]
            else:
                facts = self.train(budget, lr)
            self._record(budget, facts, self.evaluate(), time.perf_counter() - start)
        t.env_steps = w.budgets[-1]
        return t.finish(self.summary())

    def summary(self) -> dict[str, Any]:
        w, t = self.config.world_model_track, self.trainer
        rows = [self.rows[b] for b in w.budgets]
        return {
            "track": TRACK_WORLD_MODEL,
            **t.run_facts(),
            "dataset": {**self.data.facts(), "policies": list(w.policies), "collection_seed": self.config.seed},
            "frozen_tokenizer": self.tokenizer_facts,
            "references": {"copy_probability": self.references.copy},
            "budgets": list(w.budgets),
            "steps": w.steps,
            "lr": self.chosen_lr(),
            "lr_search": list(self.candidates.values()),
            "per_budget": rows,
            "final": rows[-1],
        }


def _spread(items: list, count: int) -> list:
    """At most ``count`` items, evenly spaced over the list (all of them if there are fewer)."""
    if len(items) <= count:
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, count).round().astype(int)]
