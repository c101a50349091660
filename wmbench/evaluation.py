"""``wmbench eval``: the paper's test protocol (test wrappers, temperature 0.5, envs in lockstep) on a run
folder, a wmbench checkpoint file, or a reference IRIS checkpoint, recorded as one JSON file per evaluation."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from wmbench import checkpoints
from wmbench import config as cfg
from wmbench.engine.agent import Agent, build_agent
from wmbench.engine.collector import evaluate
from wmbench.engine.trainer import package_versions, resolve_device
from wmbench.files import write_json
from wmbench.plugins import Registry
from wmbench.rundir import RunDir


@dataclass
class Loaded:
    """An agent ready to evaluate, the config it was built from, and where its weights came from."""

    config: cfg.RunConfig
    agent: Agent
    source: dict[str, Any]


def from_checkpoint(path: Path, registry: Registry, run_config: dict[str, Any] | None = None) -> Loaded:
    """The agent of a wmbench checkpoint, built from the config it carries (checked against ``run_config``)."""
    state = checkpoints.load(path)
    saved = checkpoints.config_of(state)
    if run_config is not None:
        checkpoints.check_same_run(state, run_config, path)
    config = cfg.from_dict(saved, registry, where=f"the config in checkpoint {path}")
    agent = build_agent(config, registry, registry.game(config.game).num_actions())
    checkpoints.load_agent_state(agent, state["agent"], path)
    return Loaded(config, agent, {"checkpoint": str(path), "epoch": state["epoch"], "env_steps": state["env_steps"]})


def from_run(folder: Path, registry: Registry) -> Loaded:
    run = RunDir(folder)
    return from_checkpoint(run.last_checkpoint, registry, run.read_config())


def from_reference(path: Path, config: cfg.RunConfig, registry: Registry) -> Loaded:
    agent = build_agent(config, registry, registry.game(config.game).num_actions())
    checkpoints.load_reference(agent, path, config.init_parts)
    return Loaded(config, agent, {"init": str(path), "parts": list(config.init_parts)})


def run_eval(
    loaded: Loaded, registry: Registry, out: Path, episodes: int, num_envs: int, device: str, seed: int, log=print
) -> tuple[Path, dict[str, Any]]:
    """Evaluate and write ``out/<time>-<episodes>ep.json``; returns its path and contents.

    The config's loggers hear of it as of a run in ``out``: started, one metrics line (the ``eval/*`` figures at
    the checkpoint's epoch and env steps) and finished with the evaluation's record.
    """
    c = loaded.config
    observers = registry.observers(c.loggers, RunDir(out), log)
    observers.started(c)
    torch_device = resolve_device(device)
    agent = loaded.agent.to(torch_device)
    game = registry.game(c.game)
    envs = [game.make_env(c.env, train=False, seed=seed + i) for i in range(min(num_envs, episodes))]
    start = time.perf_counter()
    returns = evaluate(agent, envs, episodes, c.eval.temperature, torch_device, seed)
    mean = float(np.mean(returns))
    record = {
        **loaded.source,
        "game": c.game,
        "preset": c.preset,
        "backbone": c.backbone.name,
        "tokenizer": c.tokenizer.name,
        "protocol": {"wrappers": "test", "temperature": c.eval.temperature, "num_envs": len(envs), "seed": seed},
        "episodes": episodes,
        "returns": returns,
        "return_mean": mean,
        "return_std": float(np.std(returns)),
        "human_normalised_score": game.human_normalised(mean),
        "wall_time_s": round(time.perf_counter() - start, 2),
        "device": str(torch_device),
        "packages": package_versions(),
    }
    stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{episodes}ep"
    path = next(p for i in range(1000) if not (p := out / f"{stem}{f'-{i}' if i else ''}.json").exists())
    write_json(path, record)
    epoch = loaded.source.get("epoch", 0)
    observers.metrics_logged({"epoch": epoch, "env_steps": loaded.source.get("env_steps", 0), "wall_time": record["wall_time_s"],
                              "eval/return": mean, "eval/return_std": record["return_std"],
                              "eval/human_normalised_score": record["human_normalised_score"]})  # fmt: skip
    observers.finished({**record, "epochs": epoch})
    return path, record
