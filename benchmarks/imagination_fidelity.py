"""How faithful a Catcher run's imagination is, from its last checkpoint: 64 real starts (a random number of
random steps into an episode) and 8 random actions each, replayed open-loop in the world model as the actor-critic's
rollouts are (sampled tokens, rewards and ends), against what the real game did with the same actions.

Prints, per imagined step, how often the imagined reward equals the real one (where the real one is not 0: a
ball scored); the first imagined frame's token accuracy, sampled as imagination does and greedy with the real
tokens as context (the world-model loss's view); how many tokenizer codes each kind of cell (black, ball,
paddle) gets at one grid position (1 would be a local code); and whether the tokenizer draws the ball.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/imagination_fidelity.py RUN_FOLDER [--greedy-frames]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np
import torch
from tokenizer_sees_ball import ball_errors  # beside this script

from wmbench import checkpoints
from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.imagination import DreamEnv
from wmbench.envs.toy import BALL, GRID, PADDLE, Catcher
from wmbench.plugins import registry

STARTS, HORIZON = 64, 8


def real_segments(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Start frames, actions ``[N, H]``, rewards ``[N, H]`` and the frames after the first action."""
    rng = np.random.default_rng(1)
    starts, actions, rewards, after = [], [], [], []
    for n in range(STARTS):
        game = Catcher(size, 100 + n)
        obs, _ = game.reset()
        for _ in range(int(rng.integers(0, 20))):
            obs, *_ = game.step(int(rng.integers(3)))
        starts.append(obs)
        actions.append(rng.integers(3, size=HORIZON))
        steps = [game.step(int(a)) for a in actions[-1]]
        rewards.append([s[1] for s in steps])
        after.append(steps[0][0])
    return tuple(np.stack(x) for x in (starts, actions, rewards, after))  # type: ignore[return-value]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--greedy-frames", action="store_true", help="imagine the most likely tokens (greedy_frames)")
    args = parser.parse_args()
    reg = registry()
    state = checkpoints.load(args.run / "checkpoints" / "last.pt")
    config = cfg.from_dict(json.loads(state["config"]), reg)
    agent = build_agent(config, reg, 3)
    checkpoints.load_agent_state(agent, state["agent"], args.run)
    agent.eval()
    print(f"{args.run}: epoch {state['epoch']}")
    starts, actions, rewards, after = real_segments(config.env.size)
    x, acts = to_frames(starts, torch.device("cpu")), torch.tensor(actions)
    generator = torch.Generator().manual_seed(0)
    wm, dream = agent.world_model, DreamEnv(agent.tokenizer, agent.world_model, generator, args.greedy_frames)
    with torch.no_grad(), wm.transformer.rollout():
        dream.reset(x)
        imagined = []
        for k in range(HORIZON):
            _, r, _ = dream.step(acts[:, k], decode=False, observe=k < HORIZON - 1)
            imagined.append(r.numpy())
        imagined_rewards = np.stack(imagined, 1)
        real_tokens = agent.tokenizer.encode(to_frames(after, torch.device("cpu")))
        dream.reset(x)
        dream.step(acts[:, 0], decode=False)
        sampled = (dream.obs_tokens == real_tokens).float().mean(1)
        dream.reset(x)
        hidden = wm(acts[:, :1], dream.cache)[:, -1]
        greedy = []
        for k in range(wm.tokens_per_frame):
            greedy.append(wm.head_observations(hidden).argmax(-1))
            hidden = wm(real_tokens[:, k : k + 1], dream.cache)[:, -1]
        teacher_forced = (torch.stack(greedy, 1) == real_tokens).float().mean()
    for k in range(HORIZON):
        scored = rewards[:, k] != 0
        match = (imagined_rewards[scored, k] == rewards[scored, k]).mean()
        print(
            f"imagined step {k}: a ball scored in {scored.mean():.2f} of real starts, imagined reward right in {match:.2f}"
        )
    scored0 = torch.tensor(rewards[:, 0] != 0)
    print(
        f"first imagined frame, token accuracy: {sampled[~scored0].mean():.2f} (no score at the first step), "
        f"{sampled[scored0].mean():.2f} (a score: a new ball at random); greedy with real context {teacher_forced:.2f}"
    )
    with torch.no_grad():
        tokens = agent.tokenizer.encode(x).view(STARTS, GRID, GRID).numpy()
    cell = config.env.size // GRID
    codes: dict[str, Counter] = {"black": Counter(), "ball": Counter(), "paddle": Counter()}
    for frame, grid in zip(starts, tokens):
        for r in range(GRID):
            for c in range(GRID):
                pixel = tuple(frame[r * cell + cell // 2, c * cell + cell // 2])
                kind = "ball" if pixel == BALL else "paddle" if pixel == PADDLE else "black"
                codes[kind][(r, c, int(grid[r, c]))] += 1
    for kind, counts in codes.items():
        positions = {(r, c) for r, c, _ in counts}
        print(f"{kind} cells: {len(counts) / len(positions):.1f} codes per grid position")
    shared = set(codes["ball"]) & set(codes["black"])
    print(f"ball codes also used for a black cell at the same position: {len(shared)} of {len(codes['ball'])}")
    print(
        f"the ball's cell in the tokenizer's reconstructions, mean abs error by row (1: ball not drawn): {ball_errors(agent.tokenizer, config.env.size)}"
    )


if __name__ == "__main__":
    main()
