"""The modes of ``wmbench play`` as plain steppable objects (no pygame): each ``reset()`` and ``step(action)``
returns a :class:`Frame` with what the views show.

Real-env modes (agent or human) also run the world model beside the env, fed the real frames and actions, so
that the header shows what it predicts (reward, episode end) for each real step. Dream modes step a
:class:`~wmbench.engine.imagination.DreamEnv` of batch one, started from a real frame of the game.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wmbench import files
from wmbench.engine.agent import Agent
from wmbench.engine.backbone import Cache
from wmbench.engine.imagination import DreamEnv, sample
from wmbench.errors import WmbenchError
from wmbench.rundir import RunDir

MODES = ("agent", "human", "dream", "dream-agent", "replay")
"""agent / human: the real game; dream / dream-agent: inside the world model; replay: saved episodes."""
REPLAY_SOURCES = ("train", "test", "imagined", "recordings")


@dataclass
class Frame:
    """One step as shown: frames are ``uint8 [H, W, 3]``; predictions are None where nothing predicts them."""

    original: np.ndarray
    frame: np.ndarray
    reconstruction: np.ndarray
    step: int
    reward: float
    ret: float
    action: int | None
    action_name: str
    predicted_reward: float | None = None
    end_probability: float | None = None
    done: bool = False
    title: str = ""


def to_image(frames: torch.Tensor) -> np.ndarray:
    """The first of ``[B, 3, H, W]`` frames in [0, 1] as ``uint8 [H, W, 3]``."""
    return (frames[0].detach().float().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()


def to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """``uint8 [H, W, 3]`` as a batch of one ``[1, 3, H, W]`` in [0, 1]."""
    return torch.tensor(image, device=device).permute(2, 0, 1)[None].float().div(255)  # a copy: frames may be read-only


def original_frame(env, obs: np.ndarray) -> np.ndarray:
    """The emulator's full screen where the env has one (Atari's ALE), else the observation itself."""
    ale = getattr(env.unwrapped, "ale", None)
    return ale.getScreenRGB() if ale is not None else obs


def probabilities(reward_logits: torch.Tensor, end_logits: torch.Tensor) -> tuple[float, float]:
    """Expected reward sign ``P(+1) - P(-1)`` and episode-end probability, from the heads' logits (first row)."""
    rewards = torch.softmax(reward_logits.float(), -1)[0]
    ends = torch.softmax(end_logits.float(), -1)[0]
    return float(rewards[2] - rewards[0]), float(ends[1])


class Predictor:
    """The world model fed the real frames and actions (teacher forcing): what it predicts for each real step."""

    def __init__(self, agent: Agent, flush_every: int):
        self.agent, self.flush_every = agent, flush_every
        self.cache: Cache | None = None
        self.tokens: torch.Tensor | None = None
        self.since_flush = 0

    @torch.no_grad()
    def start(self, frames: torch.Tensor) -> torch.Tensor:
        """A new memory from ``frames [1, 3, H, W]``; returns their reconstruction."""
        self.tokens = self.agent.tokenizer.encode(frames)
        self._restart()
        return self.agent.tokenizer.decode(self.tokens)

    def _restart(self) -> None:
        wm = self.agent.world_model
        self.cache = wm.transformer.new_cache(1)
        wm(self.tokens, self.cache)
        self.since_flush = 0

    @torch.no_grad()
    def observe(self, action: int, frames: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """Predict reward and end for ``action``, then take in the real next frames; returns their reconstruction."""
        wm = self.agent.world_model
        full = self.cache.num_tokens + wm.tokens_per_block > wm.transformer.max_tokens
        if full or (self.flush_every and self.since_flush >= self.flush_every):
            self._restart()
        hidden = wm(torch.tensor([[action]], device=frames.device), self.cache)[:, -1]
        reward, end = probabilities(wm.head_rewards(hidden), wm.head_ends(hidden))
        self.tokens = self.agent.tokenizer.encode(frames)
        wm(self.tokens, self.cache)
        self.since_flush += 1
        return self.agent.tokenizer.decode(self.tokens), reward, end


class Session:
    """Common parts: the agent (eval mode), action names, the step counter and return."""

    mode = ""
    human = False

    def __init__(self, agent: Agent, action_names: list[str], device: torch.device, seed: int):
        self.agent = agent.eval().to(device)
        self.action_names, self.device = action_names, device
        self.generator = torch.Generator(device).manual_seed(seed)
        self.t, self.ret = 0, 0.0

    def name(self, action: int | None) -> str:
        return "-" if action is None else self.action_names[action]

    def _policy(self, frames: torch.Tensor, temperature: float) -> int:
        logits, _ = self.agent.actor_critic(frames)
        return int(sample(logits / temperature, self.generator)[0])


class RealSession(Session):
    """The real game, played by the agent (``agent``) or by the keys (``human``)."""

    def __init__(self, agent, action_names, device, seed, env, human: bool, temperature: float, flush_every: int):
        super().__init__(agent, action_names, device, seed)
        self.env, self.human, self.temperature = env, human, temperature
        self.mode = "human" if human else "agent"
        self.predictor = Predictor(self.agent, flush_every)
        self.obs: np.ndarray | None = None

    @torch.no_grad()
    def reset(self) -> Frame:
        self.obs, _ = self.env.reset()
        self.t, self.ret = 0, 0.0
        self.agent.actor_critic.reset(1)
        recon = self.predictor.start(to_tensor(self.obs, self.device))
        return Frame(original_frame(self.env, self.obs), self.obs, to_image(recon), 0, 0.0, 0.0, None, "-")

    @torch.no_grad()
    def step(self, action: int | None) -> Frame:
        if action is None:  # the agent acts on the reconstruction of the current frame, as in training
            recon = self.agent.tokenizer.reconstruct(to_tensor(self.obs, self.device)).clamp(0, 1)
            action = self._policy(recon, self.temperature)
        self.obs, reward, terminated, truncated, _ = self.env.step(action)
        self.t, self.ret = self.t + 1, self.ret + float(reward)
        recon, predicted, end = self.predictor.observe(action, to_tensor(self.obs, self.device))
        return Frame(
            original_frame(self.env, self.obs),
            self.obs,
            to_image(recon),
            self.t,
            float(reward),
            self.ret,
            action,
            self.name(action),
            predicted,
            end,
            bool(terminated or truncated),
        )


class DreamSession(Session):
    """Inside the world model, from a real first frame, played by the keys (``dream``) or the agent (``dream-agent``).

    The world model's memory is rebuilt from the current frame every ``flush_every`` steps (0: only when full).
    """

    def __init__(self, agent, action_names, device, seed, env, human: bool, temperature: float, flush_every: int):
        super().__init__(agent, action_names, device, seed)
        self.env, self.human, self.temperature, self.flush_every = env, human, temperature, flush_every
        self.mode = "dream" if human else "dream-agent"
        self.dream = DreamEnv(self.agent.tokenizer, self.agent.world_model, self.generator)
        self.heads: dict[str, torch.Tensor] = {}
        wm = self.agent.world_model
        for key, head in (("rewards", wm.head_rewards), ("ends", wm.head_ends)):
            head.register_forward_hook(lambda _m, _i, out, key=key: self.heads.__setitem__(key, out.detach()))
        self.start: np.ndarray | None = None
        self.current: torch.Tensor | None = None

    @torch.no_grad()
    def reset(self) -> Frame:
        obs, _ = self.env.reset()
        self.start = original_frame(self.env, obs)
        self.t, self.ret, self.since_flush = 0, 0.0, 0
        self.agent.actor_critic.reset(1)
        self.current = self.dream.reset(to_tensor(obs, self.device)).clamp(0, 1)
        return self._frame(0.0, None, None, None, False)

    def _frame(self, reward, action, predicted, end, done) -> Frame:
        image = to_image(self.current)
        recon = to_image(self.agent.tokenizer.reconstruct(self.current).clamp(0, 1))
        return Frame(
            self.start, image, recon, self.t, reward, self.ret, action, self.name(action), predicted, end, done
        )

    @torch.no_grad()
    def step(self, action: int | None) -> Frame:
        if self.flush_every and self.since_flush >= self.flush_every:
            self.current = self.dream.reset(self.current).clamp(0, 1)
            self.since_flush = 0
        if action is None:
            action = self._policy(self.current, self.temperature)
        frames, rewards, ends = self.dream.step(torch.tensor([action], device=self.device))
        self.current = frames.clamp(0, 1)
        predicted, end = probabilities(self.heads["rewards"], self.heads["ends"])  # what DreamEnv sampled from
        self.t, self.ret, self.since_flush = self.t + 1, self.ret + float(rewards[0]), self.since_flush + 1
        return self._frame(float(rewards[0]), action, predicted, end, bool(ends[0]))


@dataclass
class Episode:
    """A saved episode: frames ``uint8 [T, H, W, 3]``, and actions and rewards where they were saved."""

    title: str
    frames: np.ndarray
    actions: np.ndarray | None = None
    rewards: np.ndarray | None = None


def load_episodes(run_path: Path, source: str, size: int) -> list[Episode]:
    """Episodes of a run folder: ``train`` (replay/), ``test`` or ``imagined`` (media/ videos), ``recordings``."""
    if source == "train":
        paths = sorted((run_path / "replay").glob("*.pt"))
        data = [files.load_torch(p, what="replay file") for p in paths]
        episodes = [
            Episode(
                f"train {p.stem}", d["frames"].permute(0, 2, 3, 1).numpy(), d["actions"].numpy(), d["rewards"].numpy()
            )
            for p, d in zip(paths, data)
        ]
    elif source == "recordings":
        paths = sorted(RunDir(run_path).recordings.glob("*.npz"))
        episodes = []
        for p in paths:
            with np.load(p) as d:
                # A recording stores the action and reward that led to each frame: shifted to the replay's order.
                actions, rewards = np.append(d["actions"][1:], -1), np.append(d["rewards"][1:], 0)
                episodes.append(Episode(f"recording {p.stem}", d["frames"], actions, rewards))
    else:
        import imageio.v3 as iio

        paths = sorted(p for p in RunDir(run_path).media.glob(f"{source}_*") if p.suffix in (".mp4", ".gif"))
        episodes = []
        for p in paths:
            frames = np.asarray(iio.imread(p, index=None))[..., :3]
            scale = max(1, frames.shape[1] // size)  # media videos are upscaled (nearest) to at least 128 pixels
            episodes.append(Episode(f"{source} {p.stem}", frames[:, ::scale, ::scale]))
    if not episodes:
        raise WmbenchError(f"{run_path} has no saved {source} episodes to replay")
    return episodes


class ReplaySession(Session):
    """Saved episodes frame by frame; ``reset`` moves on to the next episode."""

    mode = "replay"

    def __init__(self, agent, action_names, device, seed, episodes: list[Episode]):
        super().__init__(agent, action_names, device, seed)
        self.episodes = episodes
        self.index = -1

    def _frame(self) -> Frame:
        e = self.episodes[self.index]
        image = e.frames[self.t]
        recon = to_image(self.agent.tokenizer.reconstruct(to_tensor(image, self.device)).clamp(0, 1))
        action = None if e.actions is None or self.t == 0 or e.actions[self.t - 1] < 0 else int(e.actions[self.t - 1])
        reward = 0.0 if e.rewards is None or self.t == 0 else float(e.rewards[self.t - 1])
        self.ret += reward
        done = self.t == len(e.frames) - 1
        return Frame(image, image, recon, self.t, reward, self.ret, action, self.name(action), done=done, title=e.title)

    @torch.no_grad()
    def reset(self) -> Frame:
        self.index = (self.index + 1) % len(self.episodes)
        self.t, self.ret = 0, 0.0
        return self._frame()

    @torch.no_grad()
    def step(self, action: int | None) -> Frame:
        self.t = min(self.t + 1, len(self.episodes[self.index].frames) - 1)
        return self._frame()
