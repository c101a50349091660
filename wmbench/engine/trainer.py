"""The IRIS training loop: collect, train tokenizer, world model and actor-critic on their schedules, evaluate."""

from __future__ import annotations

import contextlib
import json
import platform
import resource
import time
from collections import defaultdict
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from wmbench import checkpoints, score_notes
from wmbench import config as cfg
from wmbench.engine.agent import Agent, build_agent
from wmbench.engine.backbone import Backbone
from wmbench.engine.collector import Collector, evaluate
from wmbench.engine.fixed_dream import FixedDreamEnv
from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine
from wmbench.engine.optim import optimizer_step
from wmbench.engine.replay import ReplayStore
from wmbench.files import save_torch
from wmbench.media import save_reconstructions, save_video
from wmbench.plugins import Registry
from wmbench.progress import Progress
from wmbench.rundir import RunDir

PACKAGES = ("wmbench", "torch", "numpy", "gymnasium", "ale-py", "transformers", "peft", "bitsandbytes", "timm")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def package_versions() -> dict[str, str]:
    versions = {}
    for name in PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[name] = metadata.version(name)
    return versions


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    peak = {"cpu_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["cuda_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def world_model_optimizer(model: nn.Module, lr: float, weight_decay: float, fuse: bool = True) -> torch.optim.Optimizer:
    """AdamW with weight decay on linear and conv weights only, as IRIS (no decay on norms, embeddings, biases); fused
    (one kernel for every tensor) on CUDA unless ``fuse`` is False (torch's default, as the reference)."""
    decay = set()
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)) and module.weight.requires_grad:
            decay.add(id(module.weight))
    own = [g for m in model.modules() if isinstance(m, Backbone) for g in m.optimizer_groups(lr, weight_decay)]
    claimed = {id(p) for g in own for p in g["params"]}
    params = [p for p in model.parameters() if p.requires_grad and id(p) not in claimed]
    groups = [
        {"params": [p for p in params if id(p) in decay], "weight_decay": weight_decay},
        {"params": [p for p in params if id(p) not in decay], "weight_decay": 0.0},
        *own,
    ]
    return torch.optim.AdamW(groups, lr=lr, fused=fused(params) if fuse else None)


def fused(params: list[nn.Parameter]) -> bool | None:
    """Whether an Adam optimiser of ``params`` runs fused: on CUDA (None, torch's default, elsewhere)."""
    return True if params and all(p.is_cuda for p in params) else None


class Trainer:
    """One run of one game with one backbone and tokenizer, in a run folder."""

    def __init__(
        self, config: cfg.RunConfig, run: RunDir, registry: Registry, log=print, progress: Progress | None = None
    ):
        self.progress = progress or Progress(log=log)
        self.config, self.run, self.log = config, run, self.progress.log
        self.observers = registry.observers(config.loggers, run, self.log)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed)
        self.game = registry.game(config.game)
        self.provenance = {kind: registry.provenance(kind, getattr(config, kind).name) for kind in Registry.KINDS}
        self.num_actions = self.game.num_actions()
        self.agent: Agent = build_agent(config, registry, self.num_actions).to(self.device)
        t = config.training
        tokenizer, actor_critic = self._trainable("tokenizer"), self._trainable("actor_critic")
        self.optimizers = {
            "tokenizer": torch.optim.Adam(tokenizer, lr=t.tokenizer.lr, fused=fused(tokenizer)),
            "world_model": world_model_optimizer(self.agent.world_model, t.world_model.lr, t.world_model.weight_decay),
            "actor_critic": torch.optim.Adam(actor_critic, lr=t.actor_critic.lr, fused=fused(actor_critic)),
        }
        self.store = ReplayStore(run.replay, t.sampling_weights)
        self.env = self.game.make_env(config.env, train=True, seed=config.seed)
        self.collector = Collector(self.env, self.store, self.agent, self.device, config.seed)
        self.test_envs: list = []
        self.epoch, self.env_steps, self.wall_time = 0, 0, 0.0
        self.stop_requested = False

    def _trainable(self, component: str) -> list[nn.Parameter]:
        return [p for p in getattr(self.agent, component).parameters() if p.requires_grad]

    def autocast(self):
        """bf16 autocast on the run's device when the config asks for it (a no-op otherwise)."""
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.config.bf16)

    # Checkpoints -------------------------------------------------------------------------------------

    def save_checkpoint(self) -> None:
        last = self.store.episodes[-1] if self.store.episodes else None
        save_torch(
            self.run.last_checkpoint,
            {
                "format": checkpoints.FORMAT,
                "config": json.dumps(cfg.to_dict(self.config)),
                "agent": self.agent.state_dict(),
                "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                "epoch": self.epoch,
                "env_steps": self.env_steps,
                "wall_time": self.wall_time,
                "replay": {"num_episodes": len(self.store.episodes), "last_length": len(last) if last else 0},
                "rng": {
                    "torch": torch.get_rng_state(),
                    "generator": self.generator.get_state(),
                    "numpy": json.dumps(self.rng.bit_generator.state),
                },
            },
        )

    def load_init(self) -> None:
        """Start from the reference checkpoint the config names, if any (``run --init``)."""
        if self.config.init:
            checkpoints.load_reference(self.agent, Path(self.config.init), self.config.init_parts)

    def load_checkpoint(self) -> dict[str, Any]:
        """Restore the agent, optimisers, counters and RNG states from the run's last checkpoint (checked against
        this config); returns the checkpoint. Reads only: :meth:`RunDir.roll_back` drops what came after it."""
        path = self.run.last_checkpoint
        state = checkpoints.load(path)
        checkpoints.check_same_run(state, cfg.to_dict(self.config), path)
        checkpoints.load_agent_state(self.agent, state["agent"], path)
        for name, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][name])
        self.epoch, self.env_steps, self.wall_time = state["epoch"], state["env_steps"], state["wall_time"]
        torch.set_rng_state(state["rng"]["torch"])
        self.generator.set_state(state["rng"]["generator"])
        self.rng.bit_generator.state = json.loads(state["rng"]["numpy"])
        return state

    def resume(self) -> str:
        """Continue from the last checkpoint, dropping the metrics lines, replay steps and partial writes made after
        it (everything is read and checked before anything is changed); returns a line saying from where."""
        path = self.run.last_checkpoint
        if not path.exists():  # killed before its first checkpoint: start over in the same folder
            self.store.load(num_episodes=0, last_length=0)
            self.run.roll_back(0)
            self.load_init()
            return f"{self.run.path} has no checkpoint yet: starting it over from epoch 0"
        state = self.load_checkpoint()
        self.store.load(**state["replay"])
        self.run.roll_back(self.epoch)
        line = f"resumed {self.run.path} after epoch {self.epoch}: {self.env_steps} env steps, {len(self.store.episodes)} episodes"
        if self.epoch < self.config.training.collect.stop_after_epoch:
            start = time.perf_counter()
            if self.collector.restore():
                line += f"; env replayed to where it stopped ({time.perf_counter() - start:.1f}s)"
            else:
                line += (
                    "; warning: the env did not replay to the stored frames (not deterministic?), a new episode starts"
                )
        return line

    # Training steps ----------------------------------------------------------------------------------

    def _step(self, component: str, loss: torch.Tensor, grad_clip: float) -> None:
        optimizer_step(self.optimizers[component], loss, self._trainable(component), grad_clip)

    def _sample(self, batch_size: int, length: int, from_start: bool) -> dict[str, torch.Tensor]:
        batch = self.store.sample(batch_size, length, from_start, self.rng)
        batch = {k: v.to(self.device) for k, v in batch.items()}
        batch["frames"] = batch["frames"].float().div(255)
        return batch

    def train_tokenizer(self) -> dict[str, float]:
        t = self.config.training.tokenizer
        self.agent.tokenizer.train()
        sums: dict[str, Any] = defaultdict(float)
        for _ in self.progress.track(range(t.steps_per_epoch), f"epoch {self.epoch}: tokenizer"):
            frames = self._sample(t.batch_size, 1, True)["frames"][:, 0]
            with self.autocast():
                losses = self.agent.tokenizer.loss(frames)
            self._step("tokenizer", losses["total"], t.grad_clip)
            for k, v in losses.items():
                sums[f"loss/tokenizer/{k}"] += v.detach()
        return _means(sums, t.steps_per_epoch)

    def train_world_model(self) -> dict[str, float]:
        t = self.config.training.world_model
        self.agent.tokenizer.eval()
        self.agent.world_model.train()
        sums: dict[str, Any] = defaultdict(float)
        for _ in self.progress.track(range(t.steps_per_epoch), f"epoch {self.epoch}: world model"):
            batch = self._sample(t.batch_size, self.agent.world_model.max_blocks, True)
            b, steps = batch["actions"].shape
            with self.autocast():
                with torch.no_grad():
                    tokens = self.agent.tokenizer.encode(batch["frames"].flatten(0, 1)).view(b, steps, -1)
                losses = self.agent.world_model.losses(
                    tokens, batch["actions"], batch["rewards"], batch["ends"], batch["mask"]
                )
            self._step("world_model", losses.total, t.grad_clip)
            for k in ("observations", "rewards", "ends", "total"):
                sums[f"loss/world_model/{k}"] += getattr(losses, k).detach()
        return _means(sums, t.steps_per_epoch)

    def train_actor_critic(self) -> dict[str, float]:
        t = self.config.training.actor_critic
        self.agent.tokenizer.eval()
        self.agent.world_model.eval()
        self.agent.actor_critic.train()
        sums: dict[str, Any] = defaultdict(float)
        start = time.perf_counter()
        # The world model does not change in this phase: its rollout weights are made once, and a fixed-shape env's
        # graphs, captured on them, serve every step.
        with self.agent.world_model.transformer.rollout():
            dream = (FixedDreamEnv if t.fixed_shape else DreamEnv)(
                self.agent.tokenizer, self.agent.world_model, self.generator, t.greedy_frames
            )
            for _ in self.progress.track(range(t.steps_per_epoch), f"epoch {self.epoch}: actor-critic"):
                batch = self._sample(t.batch_size, t.burn_in + 1, False)
                with self.autocast():
                    rollout = imagine(self.agent.actor_critic, dream, batch["frames"], batch["mask"], t.horizon)
                    losses = actor_critic_losses(rollout, t.gamma, t.lambda_, t.entropy_weight)
                self._step("actor_critic", losses["total"], t.grad_clip)
                for k, v in losses.items():
                    sums[f"loss/actor_critic/{k}"] += v.detach()
                sums["imagination/return"] += rollout.rewards.sum(1).mean()
        means = _means(sums, t.steps_per_epoch)
        means["throughput/imagined_frames_per_s"] = (
            t.steps_per_epoch * t.batch_size * t.horizon / (time.perf_counter() - start)
        )
        return means

    # The loop ----------------------------------------------------------------------------------------

    def evaluate(self, episodes: int, video: Path | None = None) -> list[float]:
        """Returns of test episodes; the first one is also saved as a video at ``video`` if given."""
        e = self.config.eval
        if not self.test_envs:
            self.test_envs = [
                self.game.make_env(self.config.env, train=False, seed=self.config.seed + 10_000 + i)
                for i in range(e.num_envs)
            ]
        frames: list[np.ndarray] | None = [] if video else None
        with self.autocast(), self.progress.stage(f"epoch {self.epoch}: evaluation ({episodes} episodes)"):
            returns = evaluate(
                self.agent, self.test_envs, episodes, e.temperature, self.device, self.config.seed + 10_000, frames
            )
        if video is not None and frames is not None:
            save_video(video, np.stack(frames))
        return returns

    def _media_due(self) -> bool:
        every, epochs = self.config.training.media_every, self.config.training.epochs
        return bool(every) and (self.epoch % every == 0 or self.epoch == epochs)

    @torch.no_grad()
    def write_media(self) -> None:
        """This epoch's reconstruction grid, latest training episode, and an episode imagined by the actor-critic
        in the world model after a real burn-in. Randomness of their own, so media never change training."""
        t, tag = self.config.training, f"epoch_{self.epoch:04d}"
        rng = np.random.default_rng([self.config.seed, self.epoch])
        generator = torch.Generator(device=self.device).manual_seed(self.config.seed + self.epoch)
        save_video(self.run.media / f"train_{tag}", self.store.episodes[-1].frames.permute(0, 2, 3, 1).numpy())
        if self.epoch <= t.tokenizer.start_after_epochs:
            return
        frames = self.store.sample(8, 1, True, rng)["frames"][:, 0].to(self.device).float().div(255)
        save_reconstructions(
            self.run.media / f"reconstructions_{tag}.png", frames, self.agent.tokenizer, self.config.env.size
        )
        if self.epoch <= t.world_model.start_after_epochs:
            return
        self.agent.eval()
        segment = self.store.sample(1, t.actor_critic.burn_in + 1, False, rng)
        real = segment["frames"].to(self.device).float().div(255)
        with self.autocast():
            dream = DreamEnv(self.agent.tokenizer, self.agent.world_model, generator)
            rollout = imagine(
                self.agent.actor_critic, dream, real, segment["mask"].to(self.device), t.actor_critic.horizon
            )
        context = real[0, :-1][segment["mask"][0, :-1].to(self.device)]
        save_video(self.run.media / f"imagined_{tag}", torch.cat([context, rollout.frames[0].float()]))

    def train_epoch(self) -> dict[str, Any]:
        t, epoch = self.config.training, self.epoch
        metrics: dict[str, Any] = {}
        if epoch <= t.collect.stop_after_epoch:
            c = t.collect
            with self.autocast(), self.progress.stage(f"epoch {epoch}: collection ({c.steps_per_epoch} steps)"):
                metrics.update(
                    self.collector.collect(
                        c.steps_per_epoch, c.epsilon, c.temperature, t.actor_critic.burn_in, self.generator
                    )
                )
            self.env_steps += c.steps_per_epoch
        if t.tokenizer.start_after_epochs < epoch <= t.tokenizer.stop_after_epoch:
            metrics.update(self.train_tokenizer())
        if epoch > t.world_model.start_after_epochs:
            metrics.update(self.train_world_model())
        if epoch > t.actor_critic.start_after_epochs:
            metrics.update(self.train_actor_critic())
        if self.config.eval.every and epoch % self.config.eval.every == 0 and epoch < t.epochs:
            returns = self.evaluate(
                self.config.eval.episodes, self.run.media / f"test_epoch_{epoch:04d}" if self._media_due() else None
            )
            metrics["eval/return"] = float(np.mean(returns))
        if self._media_due():
            self.write_media()
        return metrics

    # The run's phases (every track goes through them, so observers hear of every kind of run) -----------

    def start(self) -> None:
        """Say what the backbone and tokenizer are, and tell the observers the run begins (or resumes)."""
        for line in self.describe_lines():
            self.log(line)
        self.observers.started(self.config)

    def log_epoch(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Append the epoch's metrics line and tell the observers; returns the line."""
        record = {"epoch": self.epoch, "env_steps": self.env_steps, "wall_time": round(self.wall_time, 3), **metrics}
        self.run.log(record)
        self.observers.metrics_logged(record)
        return record

    def checkpoint(self) -> None:
        """Write the checkpoint of the epoch just ended and tell the observers."""
        self.save_checkpoint()
        self.observers.checkpoint_saved(self.run.last_checkpoint, self.epoch)

    def finish(self, summary: dict[str, Any] | None) -> dict[str, Any] | None:
        """Write summary.json (None: the run stopped early and can be resumed) and tell the observers."""
        if summary is not None:
            self.run.write_summary(summary)
        self.observers.finished(summary)
        return summary

    def fit(self) -> dict[str, Any] | None:
        """Run the remaining epochs and the final evaluation; returns the summary written to summary.json, or
        None when ``stop_requested`` was set (by a signal handler) and the run stopped after an epoch's checkpoint."""
        t = self.config.training
        self.start()
        while self.epoch < t.epochs:
            self.epoch += 1
            start = time.perf_counter()
            metrics = self.train_epoch()
            self.wall_time += time.perf_counter() - start
            record = self.log_epoch(metrics)
            if self.epoch % t.checkpoint_every == 0 or self.epoch == t.epochs or self.stop_requested:
                self.checkpoint()
            self.log(_epoch_line(record))
            if self.stop_requested:
                return self.finish(None)
        start = time.perf_counter()
        returns = self.evaluate(self.config.eval.final_episodes, self.run.media / "test_final")
        self.wall_time += time.perf_counter() - start
        return self.finish(self.summary(returns))

    def describe_lines(self) -> list[str]:
        lines = []
        for name in ("tokenizer", "backbone"):
            module = self.agent.tokenizer if name == "tokenizer" else self.agent.world_model.transformer
            facts = module.describe()
            if facts:
                lines.append(
                    f"{name} {getattr(self.config, name).name}: " + ", ".join(f"{k}={v}" for k, v in facts.items())
                )
        return lines

    def run_facts(self) -> dict[str, Any]:
        """What every track's summary says of its run: the setup, how far it got, what it cost, where it ran."""
        c = self.config
        return {
            "game": c.game,
            "backbone": c.backbone.name,
            "tokenizer": c.tokenizer.name,
            "preset": c.preset,
            "seed": c.seed,
            "epochs": self.epoch,
            "env_steps": self.env_steps,
            "wall_time_s": round(self.wall_time, 2),
            "parameters": self.agent.parameter_counts(),
            "backbone_info": self.agent.world_model.transformer.describe(),
            "tokenizer_info": self.agent.tokenizer.describe(),
            "plugins": self.provenance,
            "peak_memory": peak_memory_mb(self.device),
            "device": str(self.device),
            "bf16": c.bf16,
            "probe": c.probe,
            "host": {
                "platform": platform.platform(),
                "python": platform.python_version(),
                "threads": torch.get_num_threads(),
            },
            "packages": package_versions(),
        }

    def summary(self, returns: list[float]) -> dict[str, Any]:
        """The agent track's summary.json: the run's facts and its final evaluation."""
        mean = float(np.mean(returns)) if returns else float("nan")
        return {
            **self.run_facts(),
            "eval_returns": returns,
            "eval_return_mean": mean,
            "human_normalised_score": self.game.human_normalised(mean),
            "score_caveats": score_notes.score_caveats(self.config),
            "paper_departures": score_notes.paper_departures(self.config, self.agent.tokenizer.describe()),
        }


def _means(sums: dict[str, Any], steps: int) -> dict[str, float]:
    """A phase's means of what it summed on the device over its steps, read back once, after the phase (reading
    them every step would make the host wait for the device at each)."""
    return {k: float(v) / steps for k, v in sums.items()}


def _epoch_line(record: dict[str, Any]) -> str:
    keys = (
        "loss/tokenizer/total",
        "loss/world_model/total",
        "loss/actor_critic/total",
        "collect/return",
        "eval/return",
    )
    shown = " ".join(f"{k.split('/')[-2] if k.startswith('loss') else k}={record[k]:.4g}" for k in keys if k in record)
    return f"epoch {record['epoch']} env_steps={record['env_steps']} {shown} ({record['wall_time']:.1f}s)"
