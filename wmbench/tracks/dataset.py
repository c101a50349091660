"""The world-model track's fixed datasets: real transitions of a uniform random policy, collected once per
game, environment settings, size and collection seed, and cached under ``$WMBENCH_CACHE/datasets/``.

A dataset is one file written atomically (``files.save_torch``) and read with ``weights_only``; a lock file
beside it makes concurrent cells of a sweep wait for one collection instead of each collecting.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from wmbench import files
from wmbench.config import EnvConfig
from wmbench.engine.replay import Episode
from wmbench.errors import WmbenchError

FORMAT = "wmbench-dataset-1"
POLICY = "uniform random"


def dataset_path(game: str, env: EnvConfig, steps: int, seed: int) -> Path:
    """The cache file of a dataset: readable name, and a hash of everything that shapes its frames."""
    key = json.dumps(
        {"format": FORMAT, "game": game, "env": dataclasses.asdict(env), "steps": steps, "seed": seed}, sort_keys=True
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return files.cache_root() / "datasets" / f"{game}-seed{seed}-{steps}steps-{digest}.pt"


def collect(game: str, env_config: EnvConfig, steps: int, seed: int) -> list[Episode]:
    """``steps`` transitions of a uniform random policy in the training env; the last episode may be cut short."""
    from wmbench.plugins import registry

    env = registry().game(game).make_env(env_config, train=True, seed=seed)
    rng = np.random.default_rng(seed)
    num_actions = int(env.action_space.n)
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
        action = int(rng.integers(num_actions))
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


def load_or_collect(game: str, env_config: EnvConfig, steps: int, seed: int, log=print) -> tuple[list[Episode], Path]:
    """The cached dataset, collected first if it is not there yet; returns its episodes and file."""
    path = dataset_path(game, env_config, steps, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            log(f"collecting {steps} random-policy steps of {game} (seed {seed}) into {path}")
            episodes = collect(game, env_config, steps, seed)
            fields = [f.name for f in dataclasses.fields(Episode)]
            files.save_torch(path, {
                "format": FORMAT, "game": game, "seed": seed, "steps": steps, "policy": POLICY,
                "env": json.dumps(dataclasses.asdict(env_config)),
                "episodes": [{f: getattr(e, f) for f in fields} for e in episodes],
            })  # fmt: skip
    data = files.load_torch(path, what="dataset")
    if not isinstance(data, dict) or data.get("format") != FORMAT or data.get("steps") != steps:
        raise WmbenchError(f"dataset {path} is not a {FORMAT} file of {steps} steps; delete it to collect it again")
    return [Episode(**e) for e in data["episodes"]], path


def split(episodes: list[Episode], heldout_fraction: float, where: str) -> tuple[list[Episode], list[Episode]]:
    """Train and held-out episodes: the last episodes, whole, until they hold ``heldout_fraction`` of the steps."""
    total = sum(len(e) for e in episodes)
    count, held = 0, 0
    while held < heldout_fraction * total and count < len(episodes):
        count += 1
        held += len(episodes[-count])
    train, heldout = episodes[: len(episodes) - count], episodes[len(episodes) - count :]
    if not train or not heldout:
        raise WmbenchError(
            f"{where}: {len(episodes)} episode(s) of {total} steps cannot be split into train and held-out episodes "
            f"at held-out fraction {heldout_fraction}; raise world_model_track.dataset_steps or lower env.max_frames_train"
        )
    return train, heldout


def prefix(episodes: list[Episode], steps: int) -> list[Episode]:
    """The first ``steps`` steps of the episodes in order (the last one taken cut short)."""
    out, left = [], steps
    for e in episodes:
        if left <= 0:
            break
        out.append(e if len(e) <= left else Episode(e.frames[:left], e.actions[:left], e.rewards[:left], e.ends[:left]))
        left -= len(out[-1])
    return out
