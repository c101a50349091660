"""Imagination speed of the llm-* backbones beside their memory-bandwidth bound, in one process.

For each mode the same agent (its LoRA adapters drawn at random, as trained ones are, so that merging carries
them) imagines ``--steps`` steps at batch ``--batch`` from a reset (no decoding: the world model's part), in
alternating rounds, two ways:

- ``plain``: the training modules and transformers' ``DynamicCache`` (the path before any rollout work);
- ``rollout``: ``backbone.rollout()`` and ``backbone.new_cache()`` as the trainer runs them now (LoRA merged,
  4-bit weights dequantised, oneDNN-packed weights, in bfloat16 under ``bf16=true``'s autocast; keys and values
  written in place into a cache allocated once). Entering it (merging, packing) is part of its time.

The bound: the bytes one imagined step must read (every pass streams the weights, and each layer reads the keys
and values of the context so far) over the rate a plain reduction reads a tensor as large as the weights' float32
copy, read before every imagined step so that both see the same load. ``bound_*`` counts the weights a path
streams (the rollout's packed copies), ``stored_bound_*`` the weights as the model stores them. Time is process
CPU time (the host is shared: CPU time leaves out the slices other processes take; wall time is recorded too).

The warm-up round checks the rollout: its imagination (``--check-steps`` steps through its cache) against the
uncached recomputation, one full forward of the training modules over the whole token sequence it was fed (in
the same autocast): the largest difference of hidden states and of the observation tokens' probabilities, and
whether both ways sample the same tokens from the same seeds. Peak memory is the resident set's high-water mark
over the mode (build and timings), less the tensor read for the bound. Writes a JSON record (``--out``) and prints
one line per figure.

    python benchmarks/llm_rollout.py --model smollm2-135m --batch 8 --steps 20 --out results/llm/rollout.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch

from wmbench import config as cfg
from wmbench.bench.measure import _peak_memory_mb, _reset_peak_memory
from wmbench.engine.agent import build_agent
from wmbench.engine.imagination import DreamEnv
from wmbench.files import write_json
from wmbench.plugins import registry
from wmbench_llm.backbone import HFCache
from wmbench_llm.inference import inference_weights

MODES = ("llm-frozen", "llm-lora", "llm-qlora", "llm-lora:backbone.dtype=bfloat16", "llm-lora:bf16=true")
"""A mode is a backbone id, optionally with ``:``-separated overrides of its own."""


def clocks() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def read_seconds(data: torch.Tensor) -> tuple[float, float]:
    """CPU and wall seconds a plain reduction takes to read ``data``."""
    cpu, wall = clocks()
    data.sum()
    cpu2, wall2 = clocks()
    return cpu2 - cpu, wall2 - wall


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


def cache_bytes_read(backbone, batch: int, steps: int, tokens_per_frame: int, itemsize: int) -> int:
    """Bytes of keys and values (of ``itemsize`` bytes each) the passes of ``steps`` imagined steps read, from a
    reset (``tokens_per_frame`` tokens held, the cache rebuilt from one frame when the next step would not fit, as
    :class:`DreamEnv` does)."""
    config = backbone.model.config
    heads = getattr(config, "num_key_value_heads", config.num_attention_heads)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    per_token = 2 * config.num_hidden_layers * batch * heads * head_dim * itemsize
    held, tokens = tokens_per_frame, 0
    for _ in range(steps):
        if held + tokens_per_frame + 1 > backbone.max_tokens:
            held = tokens_per_frame
            tokens += held
        for _ in range(tokens_per_frame + 1):
            held += 1
            tokens += held
    return tokens * per_token


def imagine(dream: DreamEnv, actions: torch.Tensor, frames: torch.Tensor, steps: int, data: torch.Tensor):
    """CPU and wall seconds for ``steps`` imagined steps after a reset (no decoding), and the CPU and wall seconds
    a read of ``data`` took on average, read before each step (so that the steps and the bound see the same load)."""
    dream.reset(frames)
    spent = [0.0, 0.0, 0.0, 0.0]
    for _ in range(steps):
        read = read_seconds(data)
        cpu, wall = clocks()
        dream.step(actions, decode=False)
        cpu2, wall2 = clocks()
        spent = [spent[0] + cpu2 - cpu, spent[1] + wall2 - wall, spent[2] + read[0], spent[3] + read[1]]
    return spent[0], spent[1], spent[2] / steps, spent[3] / steps


def recomputation_gap(dream: DreamEnv, actions, frames, steps: int, autocast) -> dict:
    """Imagine ``steps`` steps in the backbone's rollout, recording every token the world model is fed and the
    hidden states it returns; then one full forward of the training modules, without a cache, over that sequence.
    The largest differences of hidden states (and their largest magnitude) and of the observation probabilities."""
    wm = dream.world_model
    fed, hidden = [], []
    hooks = [wm.register_forward_pre_hook(lambda module, args: fed.append(args[0])),
             wm.register_forward_hook(lambda module, args, out: hidden.append(out))]  # fmt: skip
    try:
        with autocast(), wm.transformer.rollout():
            dream.reset(frames)
            for _ in range(steps):
                dream.step(actions, decode=False)
    finally:
        for hook in hooks:
            hook.remove()
    tokens, cached = torch.cat(fed, 1), torch.cat(hidden, 1).float()
    with autocast():
        full = wm(tokens).float()
        probs = [torch.softmax(wm.head_observations(h).float(), -1) for h in (cached, full)]
    return {"positions": tokens.shape[1], "hidden_max_diff": (cached - full).abs().max().item(),
            "hidden_max_abs": full.abs().max().item(), "obs_prob_max_diff": (probs[0] - probs[1]).abs().max().item()}  # fmt: skip


def randomise_adapters(agent) -> None:
    """LoRA's B matrices drawn at random (they start at zero): the adapters change the function, as trained ones do."""
    generator = torch.Generator().manual_seed(4)
    with torch.no_grad():
        for name, p in agent.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=generator) * 0.01)


def measure_mode(mode: str, args, frames, actions, reg) -> list[dict]:
    name, *extra = mode.split(":")
    overrides = [f"backbone.model={args.model}", "world_model.max_blocks=20", *extra, *args.set]
    config = cfg.resolve("iris", "Pong", 0, "vqvae", name, overrides, reg)
    _reset_peak_memory(torch.device("cpu"))
    torch.manual_seed(0)
    agent = build_agent(config, reg, num_actions=6).eval()
    randomise_adapters(agent)
    backbone, wm = agent.world_model.transformer, agent.world_model
    dream = DreamEnv(agent.tokenizer, wm, torch.Generator().manual_seed(2))
    new_cache = backbone.new_cache

    def autocast():  # the trainer's: bf16=true runs imagination under bfloat16 autocast
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.bf16)

    with autocast(), backbone.rollout():
        streamed = {"plain": streamed_bytes(backbone), "rollout": streamed_bytes(backbone)}
    streamed["plain"] = stored = streamed_bytes(backbone)
    with inference_weights(backbone.model, pack=False):
        table = backbone.model.get_input_embeddings().weight
        data = torch.randn(sum(p.numel() for p in backbone.parameters() if p is not table))  # weights in float32

    def dynamic_cache(batch_size: int) -> HFCache:
        from transformers import DynamicCache

        return HFCache(DynamicCache(config=backbone.model.config), batch_size)

    variants = {"plain": (contextlib.nullcontext, dynamic_cache), "rollout": (backbone.rollout, new_cache)}
    timings: dict[str, list[tuple[float, float, float, float]]] = {k: [] for k in variants}
    tokens = {}
    with torch.no_grad():
        gap = recomputation_gap(dream, actions, frames, args.check_steps, autocast)
        for round_ in range(args.rounds + 1):  # round 0 warms up, and compares the sampled tokens of both ways
            for variant, (context, cache) in variants.items():
                backbone.new_cache = cache
                dream.generator = torch.Generator().manual_seed(2)
                cpu, wall = clocks()
                with autocast(), context():  # entering (merging, packing) is part of the time
                    setup = tuple(b - a for a, b in zip((cpu, wall), clocks()))
                    spent = imagine(dream, actions, frames, args.check_steps if round_ == 0 else args.steps, data)
                if round_:
                    timings[variant].append((spent[0] + setup[0], spent[1] + setup[1], spent[2], spent[3]))
                else:
                    tokens[variant] = dream.obs_tokens
    backbone.new_cache = new_cache
    peak = _peak_memory_mb(torch.device("cpu")) - data.nbytes / 2**20
    passes = args.steps * (wm.tokens_per_frame + 1)
    itemsize = 2 if config.bf16 else backbone.model.dtype.itemsize  # autocast's products give bfloat16 keys
    cache_read = cache_bytes_read(backbone, args.batch, args.steps, wm.tokens_per_frame, itemsize)
    frames_timed = args.batch * args.steps
    rows = []
    for variant, rounds in timings.items():
        cpu, wall, read_cpu, read_wall = min(rounds)  # the fastest round, with the reads beside its steps
        fps = frames_timed / cpu

        def bound(weights: int, read_cpu: float = read_cpu) -> float:
            return frames_timed / ((passes * weights + cache_read) / data.nbytes * read_cpu)

        rows.append({"mode": mode, "path": variant, "imagined_frames_per_s": round(fps, 3),
                     "imagined_frames_per_s_wall": round(frames_timed / wall, 3),
                     "rounds_frames_per_s": [round(frames_timed / r[0], 3) for r in rounds],
                     "weights_mb_per_pass": round(streamed[variant] / 2**20, 1),
                     "stored_weights_mb_per_pass": round(stored / 2**20, 1),
                     "cache_mb_per_pass": round(cache_read / passes / 2**20, 1),
                     "read_gb_per_s": round(data.nbytes / read_cpu / 1e9, 2),
                     "read_gb_per_s_wall": round(data.nbytes / read_wall / 1e9, 2),
                     "bound_frames_per_s": round(bound(streamed[variant]), 3),
                     "bound_over_measured": round(bound(streamed[variant]) / fps, 2),
                     "stored_bound_frames_per_s": round(bound(stored), 3),
                     "stored_bound_over_measured": round(bound(stored) / fps, 2),
                     "peak_rss_mb": round(peak),
                     "tokens_equal_to_plain": torch.equal(tokens[variant], tokens["plain"])})  # fmt: skip
        if variant == "rollout":
            rows[-1]["against_uncached_recomputation"] = gap
        print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="imagined steps per timing (20: an IRIS rollout)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--check-steps", type=int, default=4, help="imagined steps of the warm-up and the checks")
    parser.add_argument("--threads", type=int, default=1, help="1: on a loaded 2-core host more threads only contend")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more config overrides")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    reg = registry()
    frames = torch.rand(args.batch, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    actions = torch.randint(6, (args.batch,), generator=torch.Generator().manual_seed(1))
    rows = []
    for mode in args.modes.split(","):
        rows += measure_mode(mode, args, frames, actions, reg)
    cpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    record = {
        "model": args.model, "batch": args.batch, "steps": args.steps, "rounds": args.rounds,
        "threads": args.threads, "clock": "process CPU time (wall in *_wall)",
        "cpu": next((line.split(":", 1)[1].strip() for line in cpu.splitlines() if "Model name" in line), "?"),
        "cpu_flags": sorted({f for line in cpu.splitlines() if line.startswith("Flags") for f in line.split()[1:]}
                            & {"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"}),
        "load_average_at_end": [round(v, 1) for v in os.getloadavg()],
        "platform": platform.platform(), "torch": torch.__version__, "rows": rows,
    }  # fmt: skip
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        write_json(args.out, record)


if __name__ == "__main__":
    main()
