"""The world-model track's fixed datasets: real transitions of a mix of behaviour policies
(:mod:`wmbench.tracks.policies`), collected once per game, environment settings, size, mix and seed, and cached
under ``$WMBENCH_CACHE/datasets/``.

Each policy collects an equal share of the steps; each policy's episodes are split, whole, into train, validation
and held-out parts (the held-out ones last, the validation ones before them), so that every part holds the same mix.
The train part interleaves the policies' episodes step for step, so that any prefix of it (a budget) holds the mix
too. An optional out-of-distribution part holds episodes of the greedy script, a policy outside the mix.

A dataset is one file written atomically (``files.save_torch``) and read with ``weights_only``; a lock file
beside it makes concurrent cells of a sweep wait for one collection instead of each collecting.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from wmbench import files
from wmbench.config import EnvConfig, WorldModelTrackConfig
from wmbench.engine.replay import Episode
from wmbench.errors import WmbenchError
from wmbench.tracks.policies import Policy

FORMAT = "wmbench-dataset-2"
PARTS = ("train", "validation", "heldout", "ood")


@dataclass(frozen=True)
class Dataset:
    """The parts of a dataset (``ood`` empty without an out-of-distribution set) and its cache file."""

    train: list[Episode]
    validation: list[Episode]
    heldout: list[Episode]
    ood: list[Episode]
    file: Path

    def facts(self) -> dict[str, object]:
        """Steps and episodes per part, and where the file is (for summaries)."""
        parts = {p: {"steps": sum(len(e) for e in getattr(self, p)), "episodes": len(getattr(self, p))} for p in PARTS}
        return {"file": str(self.file), **parts}


def dataset_path(game: str, env: EnvConfig, track: WorldModelTrackConfig, seed: int) -> Path:
    """The cache file of a dataset: a readable name, and a hash of everything that shapes its frames and parts."""
    key = json.dumps({"format": FORMAT, "game": game, "env": dataclasses.asdict(env), "seed": seed,
                      **{k: getattr(track, k) for k in ("dataset_steps", "policies", "ood_steps",
                                                        "validation_fraction", "heldout_fraction")}},
                     sort_keys=True)  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return files.cache_root() / "datasets" / f"{game}-seed{seed}-{track.dataset_steps}steps-{digest}.pt"


def collect(game: str, env_config: EnvConfig, steps: int, seed: int, policy: str) -> list[Episode]:
    """``steps`` transitions of ``policy`` in the training env; the last episode may be cut short. ``ends`` marks
    terminations (a life lost counts, in training), not the frame cap."""
    from wmbench.plugins import registry

    env = registry().game(game).make_env(env_config, train=True, seed=seed)
    rng = np.random.default_rng(seed)
    actor = Policy(policy, env, game)
    episodes: list[Episode] = []
    current: dict[str, list] = {k: [] for k in ("frames", "actions", "rewards", "ends")}

    def close() -> None:
        if current["frames"]:
            episodes.append(Episode(
                frames=torch.from_numpy(np.stack(current["frames"])).permute(0, 3, 1, 2).contiguous(),
                actions=torch.tensor(current["actions"], dtype=torch.long),
                rewards=torch.tensor(current["rewards"], dtype=torch.float32),
                ends=torch.tensor(current["ends"], dtype=torch.bool),
            ))  # fmt: skip
        for v in current.values():
            v.clear()

    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action = actor.act(rng)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in (("frames", obs), ("actions", action), ("rewards", reward), ("ends", terminated)):
            current[key].append(value)
        obs = next_obs
        if terminated or truncated:
            close()
            obs, _ = env.reset()
    close()
    env.close()
    return episodes


def split(episodes: list[Episode], fractions: tuple[float, float], where: str) -> tuple[list[Episode], ...]:
    """Train, validation and held-out episodes: from the end, whole episodes until the held-out part holds
    ``fractions[1]`` of the steps, then the validation part ``fractions[0]``; the rest trains."""
    total = sum(len(e) for e in episodes)
    parts, rest = [], list(episodes)
    for fraction in reversed(fractions):
        taken: list[Episode] = []
        while rest and sum(len(e) for e in taken) < fraction * total:
            taken.insert(0, rest.pop())
        parts.insert(0, taken)
    if not rest or not all(parts):
        raise WmbenchError(
            f"{where}: {len(episodes)} episode(s) of {total} steps cannot be split into train, validation and held-out "
            f"episodes at fractions {list(fractions)}; raise world_model_track.dataset_steps or lower env.max_frames_train"
        )
    return (rest, *parts)


def interleave(groups: list[list[Episode]]) -> list[Episode]:
    """The episodes of every group in one list, each next episode from the group with the fewest steps so far."""
    queues, taken, out = [list(g) for g in groups], [0] * len(groups), []
    while any(queues):
        i = min((i for i, q in enumerate(queues) if q), key=lambda i: taken[i])
        out.append(queues[i].pop(0))
        taken[i] += len(out[-1])
    return out


def _build(game: str, env: EnvConfig, track: WorldModelTrackConfig, seed: int, where: str) -> dict[str, list]:
    share = track.dataset_steps // len(track.policies)
    per_policy = [
        split(collect(game, env, share, seed * 100 + i, policy), (track.validation_fraction, track.heldout_fraction),
              f"{where}, policy {policy}")
        for i, policy in enumerate(track.policies)
    ]  # fmt: skip
    parts = [interleave([p[k] for p in per_policy]) for k in range(3)]
    ood = collect(game, env, track.ood_steps, seed * 100 + 99, "greedy") if track.ood_steps else []
    return dict(zip(PARTS, [*parts, ood]))


def load_or_collect(game: str, env: EnvConfig, track: WorldModelTrackConfig, seed: int, log=print) -> Dataset:
    """The cached dataset, collected first if it is not there yet."""
    path = dataset_path(game, env, track, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = [f.name for f in dataclasses.fields(Episode)]
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            log(f"collecting {track.dataset_steps} steps of {game} ({', '.join(track.policies)}; seed {seed}) and "
                f"{track.ood_steps} out-of-distribution steps into {path}")  # fmt: skip
            parts = _build(game, env, track, seed, f"dataset of {game}, seed {seed}")
            files.save_torch(path, {
                "format": FORMAT, "game": game, "seed": seed, "policies": list(track.policies),
                "env": json.dumps(dataclasses.asdict(env)),
                **{p: [{f: getattr(e, f) for f in fields} for e in episodes] for p, episodes in parts.items()},
            })  # fmt: skip
    data = files.load_torch(path, what="dataset")
    if not isinstance(data, dict) or data.get("format") != FORMAT or any(p not in data for p in PARTS):
        raise WmbenchError(f"dataset {path} is not a {FORMAT} file; delete it to collect it again")
    return Dataset(**{p: [Episode(**e) for e in data[p]] for p in PARTS}, file=path)


def prefix(episodes: list[Episode], steps: int) -> list[Episode]:
    """The first ``steps`` steps of the episodes in order (the last one taken cut short)."""
    out, left = [], steps
    for e in episodes:
        if left <= 0:
            break
        out.append(e if len(e) <= left else Episode(e.frames[:left], e.actions[:left], e.rewards[:left], e.ends[:left]))
        left -= len(out[-1])
    return out


def windows(episodes: list[Episode], length: int) -> list[tuple[int, int]]:
    """``(episode, start)`` of consecutive windows of ``length`` steps that tile every episode (the last one of an
    episode padded): every step of the episodes lies in exactly one window."""
    return [(i, s) for i, e in enumerate(episodes) for s in range(0, len(e), length)]
