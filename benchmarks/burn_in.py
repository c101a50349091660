"""The actor-critic's training step with the burn-in under no_grad (as IRIS, and wmbench now) against the burn-in
with gradients (wmbench before), side by side in one process, in alternating rounds, on the same weights and the
same real segments of a Breakout rollout. Each round times one step (imagination, losses, backward, clip, Adam)
and its backward part (backward, clip, Adam).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/burn_in.py [--preset fast] [--batch 16] [--repeats 5]
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch

from wmbench import config as cfg
from wmbench.bench.measure import ale_rollout
from wmbench.engine.actor_critic import ActorCritic
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine
from wmbench.engine.optim import optimizer_step
from wmbench.plugins import registry


def reset_with_gradients(self, batch_size, burn_in=None, mask=None):
    """The burn-in as wmbench had it: the same steps, with the autograd graph kept."""
    ActorCritic.reset(self, batch_size)
    if burn_in is not None:
        for t in range(burn_in.size(1)):
            self(burn_in[:, t], None if mask is None else mask[:, t])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    config = cfg.resolve(args.preset, "Breakout", 0, "vqvae", "scratch", [], registry())
    t = config.training.actor_critic
    length = t.burn_in + 1
    _, seen = ale_rollout(config, args.batch * length, seed=0)
    torch.manual_seed(0)
    agent = build_agent(config, registry(), registry().game(config.game).num_actions())
    agent.tokenizer.eval()
    agent.world_model.eval()
    ac = agent.actor_critic.train()
    frames = to_frames(seen["frames"], torch.device("cpu"))
    frames = frames.view(args.batch, length, *frames.shape[1:])
    mask = torch.ones(args.batch, length, dtype=torch.bool)
    optimizer = torch.optim.Adam(ac.parameters(), lr=t.lr)
    start = {k: v.clone() for k, v in ac.state_dict().items()}
    modes = {"no_grad burn-in": ac.reset, "burn-in with gradients": types.MethodType(reset_with_gradients, ac)}
    times: dict[str, dict[str, list[float]]] = {name: {"step": [], "backward": []} for name in modes}

    def step(name: str) -> None:
        ac.load_state_dict(start)  # the same weights every time
        ac.reset = modes[name]
        dream = DreamEnv(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(0))
        begin = time.perf_counter()
        rollout = imagine(ac, dream, frames, mask, t.horizon)
        loss = actor_critic_losses(rollout, t.gamma, t.lambda_, t.entropy_weight)["total"]
        middle = time.perf_counter()
        optimizer_step(optimizer, loss, ac.parameters(), t.grad_clip)
        end = time.perf_counter()
        times[name]["step"].append(end - begin)
        times[name]["backward"].append(end - middle)

    for name in modes:
        step(name)  # warm-up
        times[name] = {"step": [], "backward": []}
    for i in range(args.repeats):
        for name in modes if i % 2 == 0 else list(modes)[::-1]:  # each goes first every other round
            step(name)
    print(
        f"preset {args.preset}, batch {args.batch}, burn-in {t.burn_in}, horizon {t.horizon}, "
        f"threads {torch.get_num_threads()}, {args.repeats} rounds"
    )
    for part in ("step", "backward"):
        old, new = times["burn-in with gradients"][part], times["no_grad burn-in"][part]
        ratios = sorted(o / n for o, n in zip(old, new))
        print(
            f"{part}: with gradients through the burn-in {statistics.median(old) * 1000:.0f} ms, under no_grad "
            f"{statistics.median(new) * 1000:.0f} ms: {statistics.median(ratios):.2f}x "
            f"(per-round ratios {ratios[0]:.2f} to {ratios[-1]:.2f})"
        )


if __name__ == "__main__":
    main()
