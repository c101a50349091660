"""Imagination with fixed shapes beside the eager imagination, side by side in one process on the same weights:
imagined frames/s with and without decoding, and actor-critic updates, in alternating rounds, with ALE's steps/s
each round; the ratios are taken per round (median and quartiles).

Variants: ``eager`` (:class:`DreamEnv`, today's path), ``fixed`` (:class:`FixedDreamEnv` run as it is, without
graphs) and, on CUDA, ``captured`` (its steps replayed from CUDA graphs). Each is driven as the trainer drives it,
inside the backbone's ``rollout()``: a cycle from a reset on real frames until the cache is rebuilt (19 steps at the
iris preset, as ``wmbench bench`` times imagination), and one actor-critic update at ``--batch`` (burn-in,
imagination over the horizon, losses, backward, Adam). The issue's CPU goal, and the GPU ones:

    OMP_NUM_THREADS=2 python benchmarks/fixed_shape.py --preset iris --batch 8 --rounds 5
    python benchmarks/fixed_shape.py --preset iris --batch 64 --device cuda --bf16 --json results/gpu/fixed_iris.json
    python benchmarks/fixed_shape.py --preset fast --batch 64 --device cuda --bf16 --set world_model.parallel=true

``--json PATH`` writes every round's figures, the ratios and the processor's name.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from wmbench import config as cfg
from wmbench.bench.measure import (
    ALE_STEPS,
    Timer,
    ale_rollout,
    cycle_steps,
    imagine_cycle,
    processor,
    quartiles,
    write_rounds,
)
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.fixed_dream import FixedDreamEnv
from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine
from wmbench.engine.optim import optimizer_step
from wmbench.plugins import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="iris")
    parser.add_argument("--backbone", default="scratch")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast for every variant")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args()

    device = torch.device(args.device)
    config = cfg.resolve(args.preset, args.game, 0, "vqvae", args.backbone, args.overrides, registry())
    t = config.training.actor_critic
    steps = max(ALE_STEPS, args.batch * (t.burn_in + 1))
    _, seen = ale_rollout(config, steps, seed=0)  # the warm-up, and real frames to start from
    frames = to_frames(seen["frames"], device)
    first, actions = frames[: args.batch], torch.from_numpy(seen["actions"][: args.batch]).long().to(device)
    segments = frames[: args.batch * (t.burn_in + 1)].view(args.batch, t.burn_in + 1, *frames.shape[1:])
    mask = torch.ones(args.batch, t.burn_in + 1, dtype=torch.bool, device=device)
    torch.manual_seed(0)
    agent = build_agent(config, registry(), registry().game(config.game).num_actions()).to(device).eval()
    timer = Timer(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    variants = {"eager": None, "fixed": False, **({"captured": True} if device.type == "cuda" else {})}
    optimizer = torch.optim.Adam(agent.actor_critic.parameters(), lr=t.lr)

    def update(dream) -> None:
        agent.actor_critic.train()
        with autocast:
            rollout = imagine(agent.actor_critic, dream, segments, mask, t.horizon)
            loss = actor_critic_losses(rollout, t.gamma, t.lambda_, t.entropy_weight)["total"]
        optimizer_step(optimizer, loss, agent.actor_critic.parameters(), t.grad_clip)

    frames_per_cycle = args.batch * cycle_steps(agent.world_model)
    rounds: list[dict[str, float]] = []
    with agent.world_model.transformer.rollout():
        dreams = {}
        for name, capture in variants.items():
            generator = torch.Generator(device=device).manual_seed(0)
            if capture is None:
                dreams[name] = DreamEnv(agent.tokenizer, agent.world_model, generator)
            else:
                dreams[name] = FixedDreamEnv(agent.tokenizer, agent.world_model, generator, capture=capture)
            with autocast:  # warm-up: every kind of step once (and its capture)
                imagine_cycle(dreams[name], first, actions, True, timer)
                imagine_cycle(dreams[name], first, actions, False, timer)
            update(dreams[name])
        for r in range(args.rounds):
            order = list(variants)[r % len(variants) :] + list(variants)[: r % len(variants)]  # who goes first rotates
            figures = {"ale_steps_per_s": steps / ale_rollout(config, steps, seed=1 + r)[0]}
            for name in order:
                with autocast:
                    for decode in (False, True):
                        seconds = sum(imagine_cycle(dreams[name], first, actions, decode, timer))
                        figures[f"{name}{'' if decode else '_no_decode'}"] = frames_per_cycle / seconds
                figures[f"{name}_ac_updates_per_s"] = 1 / timer(lambda name=name: update(dreams[name]))
            rounds.append(figures)
            print(f"round {r + 1}: " + ", ".join(f"{k} {v:,.4g}" for k, v in figures.items()), flush=True)

    ratios = {}
    for name in list(variants)[1:]:
        for key, what in (("_no_decode", "imagination, no decoding"), ("", "imagination, with decoding"),
                          ("_ac_updates_per_s", "actor-critic updates")):  # fmt: skip
            ratios[f"{name} / eager, {what}"] = [f[f"{name}{key}"] / f[f"eager{key}"] for f in rounds]
    best = list(variants)[-1]
    for key, what in (("_no_decode", "no decoding"), ("", "with decoding")):
        ratios[f"{best} / ALE, {what}"] = [f[f"{best}{key}"] / f["ale_steps_per_s"] for f in rounds]
    summary = {k: quartiles(v) for k, v in ratios.items()}
    where = processor(device)
    print(f"{args.backbone} at {args.preset}, batch {args.batch}, {'bf16' if args.bf16 else 'fp32'}, on {where}:")
    for key, (median, p25, p75) in summary.items():
        print(f"  {key}: {median:.2f}x [{p25:.2f}, {p75:.2f}]")
    if args.json:
        facts = {"processor": where, "device": args.device, "torch": torch.__version__,
                 "dtype": "bf16" if args.bf16 else "fp32", "preset": args.preset, "backbone": args.backbone,
                 "game": args.game, "batch": args.batch, "overrides": args.overrides,
                 "frames_per_cycle": frames_per_cycle}  # fmt: skip
        write_rounds(args.json, facts, rounds, summary)


if __name__ == "__main__":
    main()
