"""Frame rate of ``wmbench play --mode dream`` (keys in, the world model imagines) at the smoke preset, for
several backbones in one process, timed in alternating rounds so that a noisy machine hits them alike.

    python benchmarks/play_fps.py [--steps 30] [--rounds 3] [--smollm]

Each frame is one imagined step (K + 1 backbone calls), its decoding, and the composed view: what the window
shows per frame, without the window's own pacing. Weights are untrained (speed does not depend on them).
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.play.controls import Controls
from wmbench.play.player import Player
from wmbench.play.recording import Recorder
from wmbench.play.session import DreamSession
from wmbench.plugins import registry

BACKBONES = {
    "scratch": ("scratch", []),
    "tiny-llama (pretrained=false)": ("llm-full", ["backbone.model=tiny-llama", "backbone.pretrained=false"]),
}
SMOLLM = {"smollm2-135m (pretrained)": ("llm-full", ["backbone.model=smollm2-135m"])}


def player(backbone: str, overrides: list[str], seed: int) -> Player:
    reg = registry()
    config = cfg.resolve("smoke", "Pong", seed, "vqvae", backbone, overrides, reg)
    game = reg.game("Pong")
    agent = build_agent(config, reg, game.num_actions())
    env = game.make_env(config.env, train=False, seed=seed)
    names = env.unwrapped.get_action_meanings()
    session = DreamSession(agent, names, torch.device("cpu"), seed, env, True, config.eval.temperature, 0)
    return Player(session, Controls(names), Recorder(Path("unused"), "dream", 15), False, 15)  # never records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smollm", action="store_true", help="Also SmolLM2-135M from WMBENCH_CACHE.")
    args = parser.parse_args()
    chosen = {**BACKBONES, **(SMOLLM if args.smollm else {})}
    players = {name: player(b, o, 0) for name, (b, o) in chosen.items()}
    keys = [{"right"}, {"space"}, {"left"}, set()]
    times: dict[str, list[float]] = {name: [] for name in players}
    for _ in range(args.rounds):
        for name, p in players.items():
            start = time.perf_counter()
            for i in range(args.steps):
                p.tick([], keys[i % len(keys)])
            times[name].append(args.steps / (time.perf_counter() - start))
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next(
        (line.split(":", 1)[1].strip() for line in cpu.splitlines() if line.startswith("Model name")),
        platform.processor(),
    )
    print(f"{model}; torch threads {torch.get_num_threads()}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")
    base = float(np.median(times["scratch"]))
    for name, rates in times.items():
        median = float(np.median(rates))
        print(
            f"{name:32s} {median:6.1f} fps (rounds: {', '.join(f'{r:.1f}' for r in rates)})  {median / base:.2f}x scratch"
        )


if __name__ == "__main__":
    main()
