"""Parallel frame prediction against the sequential world model, side by side in one process: imagined frames/s of
both (with and without decoding), and ALE's steps/s, in alternating rounds; the ratios are taken per round.

Both world models are built from the same seed (the same tokenizer and backbone weights; the parallel one adds its
query embeddings) and driven as the trainer drives them (:class:`DreamEnv` inside the backbone's ``rollout()``, under
bf16 autocast with ``--set bf16=true``), each round one cycle from a reset on real Breakout frames until the cache is
rebuilt (19 steps at the iris preset), as ``wmbench bench`` times imagination. The issue's goals, on this CPU:

    OMP_NUM_THREADS=1 python benchmarks/parallel_imagination.py --preset iris --batch 8 --rounds 5
    OMP_NUM_THREADS=1 python benchmarks/parallel_imagination.py --preset iris --backbone llm-lora --rounds 3 \
        --set backbone.model=smollm2-135m --no-decode
    OMP_NUM_THREADS=1 python benchmarks/parallel_imagination.py --preset fast --batch 64 --rounds 5

(the llm-* backbones run SmolLM2-135M: ``wmbench models fetch smollm2-135m`` first; ``--set backbone.dtype=bfloat16``
loads its weights in bf16). ``--json PATH`` writes every round's figures, the ratios, the CPU's model name and the
host's load.
"""

from __future__ import annotations

import argparse
import contextlib
import os
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
from wmbench.engine.imagination import DreamEnv
from wmbench.plugins import registry

VARIANTS = ("sequential", "parallel")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="iris")
    parser.add_argument("--backbone", default="scratch")
    parser.add_argument("--game", default="Breakout")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="KEY=VALUE, for both")
    parser.add_argument("--no-decode", action="store_true", help="imagination without decoding only")
    parser.add_argument("--json", type=Path, help="write every round's figures here")
    args = parser.parse_args()

    configs = {
        name: cfg.resolve(args.preset, args.game, 0, "vqvae", args.backbone,
                          [*args.overrides, f"world_model.parallel={str(name == 'parallel').lower()}"], registry())
        for name in VARIANTS
    }  # fmt: skip
    config = configs["sequential"]
    steps = max(ALE_STEPS, args.batch)
    _, seen = ale_rollout(config, steps, seed=0)  # the warm-up, and real frames to start from
    first = to_frames(seen["frames"][: args.batch], torch.device("cpu"))
    actions = torch.from_numpy(seen["actions"][: args.batch]).long()
    timer = Timer(torch.device("cpu"))
    dreams = {}
    for name, c in configs.items():
        torch.manual_seed(0)
        agent = build_agent(c, registry(), registry().game(c.game).num_actions()).eval()
        dreams[name] = DreamEnv(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(0))
    frames = args.batch * cycle_steps(dreams["sequential"].world_model)

    def rollout(dream: DreamEnv) -> contextlib.ExitStack:
        """The trainer's context for imagination: its autocast (``--set bf16=true``), the backbone's rollout()."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16))
        stack.enter_context(dream.world_model.transformer.rollout())
        return stack

    def fps(name: str, decode: bool) -> float:
        with rollout(dreams[name]):
            return frames / sum(imagine_cycle(dreams[name], first, actions, decode, timer))

    for name in VARIANTS:  # warm-up: one step each
        with rollout(dreams[name]):
            dreams[name].reset(first)
            dreams[name].step(actions)
    rounds, load_before = [], os.getloadavg()[0]
    for r in range(args.rounds):
        order = VARIANTS if r % 2 == 0 else VARIANTS[::-1]  # alternate who goes first
        figures = {"ale_steps_per_s": steps / ale_rollout(config, steps, seed=1 + r)[0]}
        for decode in (False,) if args.no_decode else (False, True):
            for name in order:
                figures[f"{name}{'' if decode else '_no_decode'}"] = fps(name, decode)
        rounds.append(figures)
        print(f"round {r + 1}: " + ", ".join(f"{k} {v:,.1f}" for k, v in figures.items()), flush=True)

    ratios = {
        "parallel / sequential, no decoding": [f["parallel_no_decode"] / f["sequential_no_decode"] for f in rounds],
        "parallel / ALE, no decoding": [f["parallel_no_decode"] / f["ale_steps_per_s"] for f in rounds],
    }
    if not args.no_decode:
        ratios["parallel / sequential, with decoding"] = [f["parallel"] / f["sequential"] for f in rounds]
        ratios["parallel / ALE, with decoding"] = [f["parallel"] / f["ale_steps_per_s"] for f in rounds]
        ratios["sequential / ALE, with decoding"] = [f["sequential"] / f["ale_steps_per_s"] for f in rounds]
    summary = {k: quartiles(v) for k, v in ratios.items()}
    for key, (median, p25, p75) in summary.items():
        print(f"{key}: {median:.2f}x [{p25:.2f}, {p75:.2f}]")
    if args.json:
        facts = {"cpu": processor(torch.device("cpu")), "load_average": [load_before, os.getloadavg()[0]],
                 "preset": args.preset, "backbone": args.backbone, "game": args.game, "batch": args.batch,
                 "overrides": args.overrides, "frames_per_cycle": frames}  # fmt: skip
        write_rounds(args.json, facts, rounds, summary)


if __name__ == "__main__":
    main()
