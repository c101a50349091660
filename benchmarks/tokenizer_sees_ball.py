"""Does the learning preset's tokenizer (the smoke VQ autoencoder) draw Catcher's falling ball, and after how many
steps? It trains alone, as the trainer trains it (batch, learning rate, clip of the preset), on 2,000 frames of
random play, and every 100 steps prints its reconstruction loss and the error inside the ball's cell per grid row
(1: the ball is not drawn; the bottom row holds the paddle too).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/tokenizer_sees_ball.py [--steps 800] [--seed 0] [--set KEY=VALUE]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.optim import optimizer_step
from wmbench.envs.toy import GRID, Catcher
from wmbench.plugins import registry


def ball_errors(tokenizer, size: int) -> list[float]:
    """Mean abs error of the reconstruction inside the ball's cell, per grid row (over its 4 columns)."""
    game, cell, errors = Catcher(size, 0), size // GRID, []
    game.reset()
    for row in range(GRID):
        observations = []
        for column in range(GRID):
            game.row, game.column, game.paddle = row, column, (column + 2) % GRID
            observations.append(game._obs())
        x = to_frames(observations, torch.device("cpu"))
        with torch.no_grad():
            error = (tokenizer.reconstruct(x) - x).abs()
        cells = [error[c, :, row * cell : (row + 1) * cell, c * cell : (c + 1) * cell].mean() for c in range(GRID)]
        errors.append(round(float(torch.stack(cells).mean()), 2))
    return errors


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="learning")
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], help="a config override, as wmbench run's --set")
    args = parser.parse_args()
    reg = registry()
    config = cfg.resolve(args.preset, "Catcher", args.seed, "vqvae", "scratch", args.set, reg)
    t = config.training.tokenizer
    torch.manual_seed(args.seed)
    tokenizer = build_agent(config, reg, 3).tokenizer
    game, rng, observations = Catcher(config.env.size, args.seed), np.random.default_rng(args.seed), []
    obs, _ = game.reset()
    for _ in range(2000):
        observations.append(obs)
        obs, _, end, *_ = game.step(int(rng.integers(3)))
        if end:
            obs, _ = game.reset()
    frames = to_frames(observations, torch.device("cpu"))
    parameters = [p for p in tokenizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(parameters, lr=t.lr)
    for step in range(1, args.steps + 1):
        losses = tokenizer.loss(frames[torch.randint(0, len(frames), (t.batch_size,))])
        optimizer_step(optimizer, losses["total"], parameters, t.grad_clip)
        if step % 100 == 0:
            errors = ball_errors(tokenizer, config.env.size)
            print(f"step {step}: reconstruction {losses['reconstruction'].item():.3f}, ball cell error by row {errors}")


if __name__ == "__main__":
    main()
