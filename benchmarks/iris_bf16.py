"""bf16 autocast against fp32 at the iris preset, side by side in one process: one imagined step (17 backbone passes
and the decoding of ``batch`` 64x64 frames, driven through DreamEnv) and the world model's loss on one batch of
real Breakout segments, on the same weights. The whole bench (``wmbench bench --preset iris --bf16``) takes hours on
a CPU without AVX-512/AMX, where bf16 is emulated; this is the part of it that answers "what does bf16 buy here".

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/iris_bf16.py [--batch 8] [--repeats 2]
"""

from __future__ import annotations

import argparse
import statistics

import torch

from wmbench import config as cfg
from wmbench.bench.measure import Timer, ale_rollout
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.imagination import DreamEnv
from wmbench.plugins import registry


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    b = args.batch
    config = cfg.resolve("iris", "Breakout", 0, "vqvae", "scratch", [], registry())
    blocks = config.world_model.max_blocks
    _, seen = ale_rollout(config, b * blocks, seed=0)
    torch.manual_seed(0)
    agent = build_agent(config, registry(), registry().game(config.game).num_actions()).eval()
    frames = to_frames(seen["frames"], torch.device("cpu"))
    actions = torch.from_numpy(seen["actions"]).long()
    with torch.no_grad():  # the same tokens for both: the loss compares the world model's arithmetic alone
        tokens = agent.tokenizer.encode(frames).view(b, blocks, -1)
    rewards = torch.from_numpy(seen["rewards"]).float().view(b, blocks)
    ends = torch.from_numpy(seen["ends"]).view(b, blocks)
    mask = torch.ones(b, blocks, dtype=torch.bool)
    timer = Timer(torch.device("cpu"))
    for bf16 in (False, True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            dream = DreamEnv(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(0))
            dream.reset(frames[:b])
            step = statistics.median(timer.repeat(lambda dream=dream: dream.step(actions[:b]), args.repeats))
            with torch.no_grad():
                loss = agent.world_model.losses(tokens, actions.view(b, blocks), rewards, ends, mask)
        print(
            f"{'bf16' if bf16 else 'fp32'}: imagined step {step * 1000:,.0f} ms ({b / step:.2f} frames/s with decoding); "
            f"world-model loss {loss.total.item():.5f} (observations {loss.observations.item():.5f})"
        )


if __name__ == "__main__":
    main()
