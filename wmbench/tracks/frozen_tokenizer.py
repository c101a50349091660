"""The world-model track's frozen tokenizer: trained once per dataset and tokenizer setup, on the dataset's whole
train part, cached under ``$WMBENCH_CACHE/tokenizers/`` and shared by every backbone, so that every world model of
a game and seed predicts the same tokens. Its weights' sha256 goes into every run's summary, and the report checks
that the runs it compares on a game and seed share it.

The file is written atomically and read with ``weights_only``; a lock beside it makes concurrent cells of a sweep
wait for one training.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wmbench import config as cfg
from wmbench import files
from wmbench.engine.optim import optimizer_step
from wmbench.engine.replay import Episode
from wmbench.engine.tokenizer import Tokenizer
from wmbench.errors import WmbenchError

FORMAT = "wmbench-frozen-tokenizer-1"


def weights_hash(module: torch.nn.Module) -> str:
    """sha256 of a module's state: every tensor's name, dtype, shape and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def tokenizer_path(config: cfg.RunConfig, dataset_file: Path) -> Path:
    """The cache file: the dataset it trains on, the tokenizer and its options, and how it trains."""
    t = config.training.tokenizer
    key = json.dumps({"format": FORMAT, "dataset": dataset_file.name, "size": config.env.size,
                      "tokenizer": dataclasses.asdict(config.tokenizer), "steps": config.world_model_track.tokenizer_steps,
                      "batch_size": t.batch_size, "lr": t.lr, "grad_clip": t.grad_clip}, sort_keys=True, default=str)  # fmt: skip
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return files.cache_root() / "tokenizers" / f"{dataset_file.stem}-{config.tokenizer.name}-{digest}.pt"


def train(tokenizer: Tokenizer, train: list[Episode], config: cfg.RunConfig, device: torch.device, log) -> float:
    """Train ``tokenizer`` on frames drawn uniformly from the train episodes, in float32 whatever ``config.bf16``
    says (it is small, and trained once for every backbone); returns the mean loss of the last tenth of the steps."""
    t, steps = config.training.tokenizer, config.world_model_track.tokenizer_steps
    frames = torch.cat([e.frames for e in train])
    rng = np.random.default_rng(config.seed)
    params = [p for p in tokenizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=t.lr)
    tokenizer.train()
    losses = []
    for step in range(steps):
        batch = frames[rng.integers(0, len(frames), t.batch_size)].to(device).float().div(255)
        loss = tokenizer.loss(batch)["total"]
        optimizer_step(optimizer, loss, params, t.grad_clip)
        losses.append(loss.item())
        if (step + 1) % max(steps // 5, 1) == 0:
            log(f"frozen tokenizer: step {step + 1}/{steps}, loss {np.mean(losses[-max(steps // 10, 1) :]):.4f}")
    return float(np.mean(losses[-max(steps // 10, 1) :]))


def load_or_train(
    tokenizer: Tokenizer, config: cfg.RunConfig, train_part: list[Episode], dataset_file: Path, device, log=print
) -> dict[str, Any]:
    """Load the cached weights into ``tokenizer`` (training and caching them first if there are none), freeze it;
    returns its facts for the summary: file, sha256, steps and final training loss."""
    path = tokenizer_path(config, dataset_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not path.exists():
            log(f"training the frozen tokenizer ({config.world_model_track.tokenizer_steps} steps) into {path}")
            torch.manual_seed(config.seed)
            loss = train(tokenizer, train_part, config, device, log)
            state = {k: v.detach().cpu() for k, v in tokenizer.state_dict().items()}
            files.save_torch(path, {"format": FORMAT, "loss": loss, "state": state, "threads": torch.get_num_threads()})
    data = files.load_torch(path)
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise WmbenchError(f"frozen tokenizer {path} is not a {FORMAT} file; delete it to train it again")
    try:
        tokenizer.load_state_dict(data["state"])
    except RuntimeError as exc:
        raise WmbenchError(f"frozen tokenizer {path} does not fit this tokenizer: {str(exc).splitlines()[0]}") from exc
    tokenizer.requires_grad_(False).eval()
    return {"file": str(path), "sha256": weights_hash(tokenizer), "steps": config.world_model_track.tokenizer_steps,
            "loss": data["loss"], "trained_with_threads": data["threads"]}  # fmt: skip
