"""Imagination speed of the llm-* backbones beside their memory-bandwidth bound, in one process.

For each mode (frozen, lora, qlora) the same agent imagines steps at batch ``--batch`` (no decoding: the world
model's part) with the plain training modules and inside ``backbone.rollout()`` (adapters merged, 4-bit weights
dequantised), in alternating rounds. The bound: bytes of weights one backbone pass streams divided by the rate a
batch-``--batch`` matrix product over a weight larger than the caches streams them here (``read_bound``: divided by
the rate of a plain reduction, the memory's own); one imagined step is ``tokens_per_frame + 1`` passes. Writes a JSON record (``--out``) and prints a table.

    python benchmarks/llm_rollout.py --model smollm2-135m --batch 8 --out results/llm/rollout.json
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

import torch

from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.engine.imagination import DreamEnv
from wmbench.files import write_json
from wmbench.plugins import registry

MODES = ("llm-frozen", "llm-lora", "llm-qlora")


def vm(key: str) -> float:
    """A line of /proc/self/status in MiB (VmRSS: resident now, VmHWM: peak)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def bandwidth(batch: int, megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second a batch-``batch`` product with a ``megabytes`` fp32 weight streams (the best of repeats)."""
    weight = torch.randn(megabytes * 2**20 // 4 // 4096, 4096)
    x = torch.randn(batch, 4096)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        x @ weight.T
        best = min(best, time.perf_counter() - start)
    return weight.numel() * 4 / best


def read_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Bytes per second a plain reduction over a ``megabytes`` fp32 tensor reads (the best of repeats)."""
    data = torch.randn(megabytes * 2**20 // 4)
    best = float("inf")
    for _ in range(repeats + 1):
        start = time.perf_counter()
        data.sum()
        best = min(best, time.perf_counter() - start)
    return data.numel() * 4 / best


def streamed_bytes(backbone) -> int:
    """Bytes of weights one forward pass reads: every parameter and buffer but the token table (inputs arrive as
    embeddings), as stored (4-bit weights packed, with their statistics)."""
    table = backbone.model.get_input_embeddings().weight
    total = 0
    for p in list(backbone.parameters()) + list(backbone.buffers()):
        if p is table:
            continue
        total += p.numel() * p.element_size()
        state = getattr(p, "quant_state", None)
        if state is not None:
            total += state.absmax.numel() * state.absmax.element_size()
    return total


def dense_bytes(backbone) -> int:
    with backbone.rollout():
        return streamed_bytes(backbone)


def imagine(dream: DreamEnv, actions: torch.Tensor, frames: torch.Tensor, steps: int) -> float:
    """Seconds for ``steps`` imagined steps after a reset (no decoding)."""
    dream.reset(frames)
    start = time.perf_counter()
    for _ in range(steps):
        dream.step(actions, decode=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="imagined steps per timing")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="1: on a loaded 2-core host more threads only contend")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reg = registry()
    frames = torch.rand(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(6, (args.batch,), generator=torch.Generator().manual_seed(1))
    measured_bandwidth, memory_bandwidth = bandwidth(args.batch), read_bandwidth()
    rows = []
    for mode in args.modes.split(","):
        overrides = [f"backbone.model={args.model}", "world_model.max_blocks=20", *args.set]
        config = cfg.resolve("iris", "Pong", 0, "vqvae", mode, overrides, reg)
        torch.manual_seed(0)
        agent = build_agent(config, reg, num_actions=6).eval()
        backbone, wm = agent.world_model.transformer, agent.world_model
        passes = wm.tokens_per_frame + 1
        dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(2))
        times: dict[str, list[float]] = {"plain": [], "rollout": []}
        with torch.no_grad():
            imagine(dream, actions, frames, 1)  # warm-up
            for _ in range(args.rounds):
                times["plain"].append(imagine(dream, actions, frames, args.steps))
                start = time.perf_counter()
                with backbone.rollout():
                    setup = time.perf_counter() - start
                    times["rollout"].append(imagine(dream, actions, frames, args.steps) + setup)
            peak_rss = vm("VmHWM")
        weights = {"plain": streamed_bytes(backbone), "rollout": dense_bytes(backbone)}
        for variant, seconds in times.items():
            fps = args.batch * args.steps / min(seconds)
            bound = args.batch / (passes * weights[variant] / measured_bandwidth)
            read_bound = args.batch / (passes * weights[variant] / memory_bandwidth)
            rows.append({"mode": mode, "path": variant, "imagined_frames_per_s": round(fps, 3),
                         "weights_mb_per_pass": round(weights[variant] / 2**20, 1),
                         "bound_frames_per_s": round(bound, 3), "bound_over_measured": round(bound / fps, 2),
                         "read_bound_frames_per_s": round(read_bound, 3),
                         "rss_peak_mb_so_far": round(peak_rss)})  # fmt: skip
            print(json.dumps(rows[-1]), flush=True)
        del agent, dream, backbone, wm
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    record = {
        "model": args.model, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "threads": args.threads, "bandwidth_gb_per_s": round(measured_bandwidth / 1e9, 2),
        "read_bandwidth_gb_per_s": round(memory_bandwidth / 1e9, 2),
        "cpu": next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"),
        "platform": platform.platform(), "torch": torch.__version__, "rows": rows,
    }  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, record)


if __name__ == "__main__":
    main()
