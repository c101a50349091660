"""The actor-critic and its losses (wmbench.engine) trained on rollouts of the real Catcher instead of the world
model's: a perfect world model, so this isolates what the actor-critic's own settings (discount, learning rate,
batch, horizon) need before imagination's errors come in. Each update rolls ``--batch`` persistent games for
``--horizon`` steps; every 100 updates, 32 test episodes at temperature 0.5 (the eval's) give the mean return
(random play -5, optimal 10).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/ac_real_game.py --gamma 0.9 [--lr 1e-3] [--updates 500] [--seed 0]
"""

from __future__ import annotations

import argparse

import torch
from torch.distributions import Categorical

from wmbench import config as cfg
from wmbench.engine.actor_critic import ActorCritic
from wmbench.engine.collector import to_frames
from wmbench.engine.imagination import Rollout, actor_critic_losses
from wmbench.engine.optim import optimizer_step
from wmbench.envs.toy import BALLS, GRID, Catcher
from wmbench.plugins import registry


@torch.no_grad()
def test_return(actor_critic: ActorCritic, size: int, episodes: int = 32) -> float:
    games = [Catcher(size, 10_000 + i) for i in range(episodes)]
    observations = [game.reset()[0] for game in games]
    actor_critic.reset(episodes)
    total = 0.0
    for _ in range(BALLS * GRID):
        logits, _ = actor_critic(to_frames(observations, torch.device("cpu")))
        actions = Categorical(logits=logits / 0.5).sample()
        for i, game in enumerate(games):
            observations[i], reward, *_ = game.step(int(actions[i]))
            total += reward
    return total / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="learning", help="the actor-critic's size and training settings")
    parser.add_argument("--gamma", type=float)
    parser.add_argument("--lr", type=float)
    parser.add_argument("--batch", type=int)
    parser.add_argument("--horizon", type=int)
    parser.add_argument("--updates", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = cfg.resolve(args.preset, "Catcher", args.seed, "vqvae", "scratch", [], registry())
    t = config.training.actor_critic
    gamma, lr = args.gamma or t.gamma, args.lr or t.lr
    batch, horizon = args.batch or t.batch_size, args.horizon or t.horizon
    print(f"gamma={gamma} lr={lr} batch={batch} horizon={horizon} seed={args.seed}")
    torch.manual_seed(args.seed)
    actor_critic = ActorCritic(config.actor_critic, 3, config.env.size)
    optimizer = torch.optim.Adam(actor_critic.parameters(), lr=lr)
    games = [Catcher(config.env.size, args.seed * batch + i) for i in range(batch)]
    observations = [game.reset()[0] for game in games]
    for update in range(1, args.updates + 1):
        actor_critic.reset(batch)
        steps: dict[str, list[torch.Tensor]] = {k: [] for k in ("actions", "logits", "values", "rewards", "ends")}
        for _ in range(horizon):
            logits, values = actor_critic(to_frames(observations, torch.device("cpu")))
            actions = Categorical(logits=logits.detach()).sample()
            rewards, ends = [], []
            for i, game in enumerate(games):
                observations[i], reward, end, *_ = game.step(int(actions[i]))
                rewards.append(reward)
                ends.append(end)
                if end:
                    observations[i] = game.reset()[0]
            for key, value in zip(steps, (actions, logits, values, torch.tensor(rewards), torch.tensor(ends))):
                steps[key].append(value)
        stacked = {k: torch.stack(v, 1) for k, v in steps.items()}
        rollout = Rollout(frames=torch.empty(0), **stacked)
        losses = actor_critic_losses(rollout, gamma, t.lambda_, t.entropy_weight)
        optimizer_step(optimizer, losses["total"], list(actor_critic.parameters()), t.grad_clip)
        if update % 100 == 0:
            entropy = -losses["entropy"].item() / t.entropy_weight
            print(
                f"update {update}: entropy {entropy:.3f}, test return {test_return(actor_critic, config.env.size):.2f}"
            )


if __name__ == "__main__":
    main()
