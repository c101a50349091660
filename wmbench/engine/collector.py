"""Real experience: collection into the replay store, and evaluation episodes with the test wrappers."""

from __future__ import annotations

import time

import gymnasium
import numpy as np
import torch

from wmbench.engine.agent import Agent
from wmbench.engine.replay import Episode, ReplayStore


def to_frames(observations: np.ndarray | list[np.ndarray], device: torch.device) -> torch.Tensor:
    """``uint8 [B, H, W, 3]`` observations as float frames ``[B, 3, H, W]`` in [0, 1]."""
    array = observations if isinstance(observations, np.ndarray) else np.stack(observations)
    return torch.as_tensor(array, device=device).permute(0, 3, 1, 2).float().div(255)


class Collector:
    """Steps one training env with the agent and keeps the episode in progress in the store."""

    def __init__(self, env: gymnasium.Env, store: ReplayStore, agent: Agent, device: torch.device, seed: int):
        self.env, self.store, self.agent, self.device = env, store, agent, device
        self.seed = seed
        self.obs: np.ndarray | None = None
        self.steps: dict[str, list] = {}
        self.episode_return = 0.0

    def _start_episode(self) -> None:
        self.index = len(self.store.episodes)
        self.obs, _ = self.env.reset(seed=self.seed if not self.store.episodes else None)
        self.steps = {"frames": [], "actions": [], "rewards": [], "ends": []}
        self.episode_return = 0.0

    def _commit(self) -> None:
        """Write the episode in progress (or finished) into the store."""
        if not self.steps["frames"]:
            return
        episode = Episode(
            frames=torch.from_numpy(np.stack(self.steps["frames"])).permute(0, 3, 1, 2).contiguous(),
            actions=torch.tensor(self.steps["actions"], dtype=torch.long),
            rewards=torch.tensor(self.steps["rewards"], dtype=torch.float32),
            ends=torch.tensor(self.steps["ends"], dtype=torch.bool),
        )
        self.store.put(self.index, episode)

    def restore(self) -> bool:
        """After a resume: bring the fresh env to where collection stopped by replaying every stored action from
        the seeded first reset, checking each frame against the store. The envs are deterministic given the
        seed and the actions, so the episode in progress then continues as if never interrupted. Returns False
        (and leaves the next ``collect`` to start a new episode) if a replayed frame differs from the stored one.
        """
        for index, episode in enumerate(self.store.episodes):
            obs, _ = self.env.reset(seed=self.seed if index == 0 else None)
            frames = episode.frames.permute(0, 2, 3, 1).numpy()
            done = False
            for frame, action in zip(frames, episode.actions.tolist()):
                if not np.array_equal(obs, frame):
                    self.obs = None
                    return False
                obs, _, terminated, truncated, _ = self.env.step(action)
                done = terminated or truncated
        self.obs = None
        if self.store.episodes and not done:  # continue the last episode
            last = self.store.episodes[-1]
            self.index, self.obs = len(self.store.episodes) - 1, obs
            self.steps = {
                "frames": list(last.frames.permute(0, 2, 3, 1).numpy()),
                "actions": last.actions.tolist(),
                "rewards": last.rewards.tolist(),
                "ends": last.ends.tolist(),
            }
            self.episode_return = float(last.rewards.sum())
        elif self.store.episodes:  # the last episode had ended: start the next, as collect did right after it
            self._start_episode()
        return True

    @torch.no_grad()
    def collect(
        self, num_steps: int, epsilon: float, temperature: float, burn_in: int, generator: torch.Generator
    ) -> dict[str, float]:
        """Collect ``num_steps`` steps; returns metrics (finished episodes' mean return, steps/s)."""
        self.agent.eval()
        if self.obs is None:
            self._start_episode()
            self.agent.actor_critic.reset(1)
        else:  # Continue the episode: burn the LSTM in on its last frames, with the current weights.
            recent = self.steps["frames"][-burn_in:]
            frames = to_frames(recent, self.device)[None] if recent else None
            self.agent.actor_critic.reset(
                1, None if frames is None else self.agent.tokenizer.reconstruct(frames[0]).clamp(0, 1)[None]
            )
        returns, start = [], time.perf_counter()
        for _ in range(num_steps):
            assert self.obs is not None  # an episode is under way
            action = int(self.agent.act(to_frames([self.obs], self.device), temperature, epsilon, generator)[0])
            next_obs, reward, terminated, truncated, _ = self.env.step(action)
            # The train cap (a truncation) is stored as an end too, as IRIS's gym TimeLimit and dataset do.
            done = terminated or truncated
            for key, value in (("frames", self.obs), ("actions", action), ("rewards", reward), ("ends", done)):
                self.steps[key].append(value)
            self.episode_return += float(reward)
            self.obs = next_obs
            if done:
                returns.append(self.episode_return)
                self._commit()
                self._start_episode()
                self.agent.actor_critic.reset(1)
        self._commit()
        elapsed = time.perf_counter() - start
        metrics = {"collect/steps_per_s": num_steps / elapsed}
        if returns:
            metrics["collect/return"] = float(np.mean(returns))
            metrics["collect/episodes"] = len(returns)
        return metrics


@torch.no_grad()
def evaluate(
    agent: Agent,
    envs: list[gymnasium.Env],
    episodes: int,
    temperature: float,
    device: torch.device,
    seed: int,
    record: list[np.ndarray] | None = None,
) -> list[float]:
    """Returns of ``episodes`` test episodes, run on the envs in lockstep with one batched policy; the frames of
    the first env's first episode are appended to ``record`` if given."""
    agent.eval()
    envs = envs[:episodes]
    n = len(envs)
    obs = [env.reset(seed=seed + i)[0] for i, env in enumerate(envs)]
    running = np.zeros(n)
    active = np.ones(n, dtype=bool)
    started = n
    returns: list[float] = []
    agent.actor_critic.reset(n)
    generator = torch.Generator(device=device).manual_seed(seed)
    recording = record is not None
    if record is not None:
        record.append(obs[0])
    while active.any():
        actions = agent.act(to_frames(obs, device), temperature, 0.0, generator).cpu().numpy()
        new_episode = torch.zeros(n, dtype=torch.bool, device=device)
        for i in np.flatnonzero(active):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[i]))
            running[i] += reward
            if record is not None and recording and i == 0:
                record.append(obs[0])
                recording = not (terminated or truncated)
            if terminated or truncated:
                returns.append(float(running[i]))
                running[i] = 0.0
                if started < episodes:
                    obs[i] = envs[i].reset()[0]
                    started += 1
                    new_episode[i] = True
                else:
                    active[i] = False
        agent.actor_critic.reset_rows(new_episode)
    return returns
