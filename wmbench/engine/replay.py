"""The replay store: real episodes in memory, each also written atomically to its own file on disk."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from wmbench import files
from wmbench.errors import WmbenchError


@dataclass
class Episode:
    """One episode: frames ``uint8 [T, 3, H, W]``, actions, rewards (unclipped) and ends, each ``[T]``.

    ``ends`` is True at the episode's last step, whatever ended it: a termination, a life loss (training) or
    the training cap of ``env.max_frames_train`` frames, as IRIS's dataset stores them."""

    frames: torch.Tensor
    actions: torch.Tensor
    rewards: torch.Tensor
    ends: torch.Tensor

    def __len__(self) -> int:
        return self.frames.size(0)

    def segment(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        """Steps ``start .. stop - 1``, zero-padded where they fall outside; ``mask`` marks real steps."""
        lo, hi = max(start, 0), min(stop, len(self))
        pad = (lo - start, stop - hi)
        out = {}
        for f in fields(self):
            x = getattr(self, f.name)[lo:hi]
            out[f.name] = torch.cat([x.new_zeros(pad[0], *x.shape[1:]), x, x.new_zeros(pad[1], *x.shape[1:])])
        out["mask"] = torch.cat(
            [
                torch.zeros(pad[0], dtype=torch.bool),
                torch.ones(hi - lo, dtype=torch.bool),
                torch.zeros(pad[1], dtype=torch.bool),
            ]
        )
        return out


class ReplayStore:
    """Episodes numbered from 0 in ``folder`` (``000000.pt``, ...); the last one may still be growing."""

    def __init__(self, folder: Path | None, sampling_weights: tuple[float, ...] = ()):
        self.folder, self.sampling_weights = folder, sampling_weights
        self.episodes: list[Episode] = []

    @property
    def num_steps(self) -> int:
        return sum(len(e) for e in self.episodes)

    def put(self, index: int, episode: Episode) -> None:
        """Store episode ``index`` (a new one, or a longer version of the last one) and write it to disk."""
        if index == len(self.episodes):
            self.episodes.append(episode)
        elif index == len(self.episodes) - 1:
            self.episodes[index] = episode
        else:
            raise ValueError(f"episode {index} is neither the last nor the next one")
        if self.folder is not None:
            files.save_torch(
                self.folder / f"{index:06d}.pt", {f.name: getattr(episode, f.name) for f in fields(episode)}
            )

    def load(self, num_episodes: int, last_length: int) -> None:
        """Read back the first ``num_episodes`` episodes, the last cut to ``last_length`` steps.

        Whatever was written after the checkpoint that recorded these numbers is dropped (and deleted),
        so a resumed run neither loses nor repeats steps.
        """
        if self.folder is None:
            raise ValueError("a store without a folder has nothing to load")
        self.episodes = []
        for index in range(num_episodes):
            path = self.folder / f"{index:06d}.pt"
            data = files.load_torch(path, what="replay file")
            names = {f.name for f in fields(Episode)}
            if (
                not isinstance(data, dict)
                or set(data) != names
                or not all(isinstance(v, torch.Tensor) for v in data.values())
            ):
                raise WmbenchError(f"replay file {path} is not an episode (tensors {', '.join(sorted(names))})")
            self.episodes.append(Episode(**data))
        if self.episodes and len(self.episodes[-1]) < last_length:
            raise WmbenchError(
                f"replay file {path} holds {len(self.episodes[-1])} steps, fewer than the {last_length} the checkpoint counts"
            )
        if self.episodes and len(self.episodes[-1]) > last_length:
            last = self.episodes[-1]
            self.put(num_episodes - 1, Episode(*(getattr(last, f.name)[:last_length] for f in fields(last))))
        for path in sorted(self.folder.glob("*.pt")):
            if path.stem.isdigit() and int(path.stem) >= num_episodes:
                path.unlink()

    def _episode_probabilities(self) -> np.ndarray:
        """Uniform (IRIS), or per-recency-bucket weights, an option of wmbench's (the newest bucket takes the
        remainder; uniform while there are fewer episodes than buckets)."""
        n, w = len(self.episodes), self.sampling_weights
        if not w or n < len(w):
            return np.full(n, 1.0 / n)
        sizes = [n // len(w)] * len(w)
        sizes[-1] += n % len(w)
        probs = np.concatenate([np.full(size, weight / size) for weight, size in zip(w, sizes)])
        return probs / probs.sum()

    def sample(
        self, batch_size: int, length: int, from_start: bool, rng: np.random.Generator
    ) -> dict[str, torch.Tensor]:
        """Segments ``[B, length, ...]``. From a random start, padded at the end (world model, tokenizer), or
        ending at a random step, padded at the start (actor-critic burn-in)."""
        chosen = rng.choice(len(self.episodes), size=batch_size, p=self._episode_probabilities())
        segments = []
        for index in chosen:
            episode = self.episodes[index]
            if from_start:
                start = int(rng.integers(0, len(episode)))
                segments.append(episode.segment(start, start + length))
            else:
                stop = int(rng.integers(1, len(episode) + 1))
                segments.append(episode.segment(stop - length, stop))
        return {k: torch.stack([s[k] for s in segments]) for k in segments[0]}
