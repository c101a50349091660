"""``wmbench bench``: how fast one setup runs, measured in one process beside the simulator it replaces.

Every figure is timed after a warm-up call, ``repeats`` times, and given as the median and quartiles. The
measures (name, unit):

- ``ale_steps_per_s``: the game's train env (IRIS wrappers, random actions), one env on one thread;
- ``imagine_frames_per_s`` and ``imagine_frames_per_s_no_decode``: a :class:`DreamEnv` driven as the trainer
  drives it, from a reset through every step the cache takes before it is rebuilt;
- ``imagine_ms_per_frame_short_context`` / ``_full_context``: the first of those steps (one frame of context,
  17 tokens at the iris preset) and the last (the cache full, 340 tokens at iris), without decoding, per frame;
  ``context_growth`` is their ratio (these three from at least ``repeats`` cycles and 3 seconds of them);
- ``wm_train_tokens_per_s``: forward, backward and AdamW step on ``batch`` segments of ``max_blocks`` frames;
  ``wm_loss``: the world model's loss on that batch at its initial weights (compares dtypes);
- ``tokenizer_encode_frames_per_s``, ``tokenizer_decode_frames_per_s``;
- ``actor_critic_updates_per_s``: burn-in, imagination over the horizon, losses, backward and step;
- ``peak_memory_mb`` (the process's peak resident set during the setup, or CUDA's peak allocation) and ``matmul_gflops`` (a 2048 x 2048
  matrix product in the bench's dtype: what the machine can do, to read the others against);
- with the projection (the default), one step of each training phase as the trainer takes it, at the config's own
  batch sizes (not ``batch``): ``phase_collect_steps_per_s`` (one epoch's collection: the agent acting in the
  train env, into a replay store), ``phase_tokenizer_steps_per_s``, ``phase_wm_steps_per_s``,
  ``phase_ac_steps_per_s`` (updates); and from them ``projected_hours``, the wall time of one whole run of the config
  (:mod:`wmbench.bench.projection`), and ``projected_hours_<phase>``, each phase's share.

Imagination runs as the config says: eager, or with ``training.actor_critic.fixed_shape`` the fixed-shape
:class:`~wmbench.engine.fixed_dream.FixedDreamEnv` (captured in CUDA graphs on CUDA).

``ratio_to_ale`` is frames handled per second over ALE's steps per second (a training token counts as
1 / tokens_per_block frames, an actor-critic update as batch x horizon imagined frames). Rows go to a long
CSV, one per measure with the setup in columns (as timm's benchmark files are); ``--suite`` runs every setup
of a suite file and writes a Markdown table beside the CSV.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench.engine.collector import to_frames
from wmbench.engine.optim import optimizer_step

ALE_STEPS = 500
"""Env steps per timed repeat of the simulator."""
CONTEXT_SECONDS = 3.0
"""Cycles without decoding are repeated for at least this long (50 at most): one step is a noisy sample."""


@dataclass(frozen=True)
class Row:
    measure: str
    unit: str
    times: tuple[float, ...]
    """The figure of each repeat."""
    frames: float = 0.0
    """Frames per unit of the figure, for ``ratio_to_ale`` (0: no ratio)."""

    def quantiles(self) -> tuple[float, float, float]:
        return quartiles(self.times)


def quartiles(values) -> tuple[float, float, float]:
    """Median, 25th and 75th percentiles."""
    values = sorted(values)
    if len(values) == 1:
        return values[0], values[0], values[0]
    p25, p50, p75 = statistics.quantiles(values, n=4, method="inclusive")
    return p50, p25, p75


def write_rounds(path: Path, facts: dict[str, Any], rounds: list[dict[str, float]], ratios: dict) -> None:
    """A side-by-side benchmark's JSON: when and where (``facts``, the time and thread count added), every round's
    figures, and the ratios' ``(median, p25, p75)``."""
    import json

    import torch

    record = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **facts, "threads": torch.get_num_threads(),
              "rounds": rounds, "ratios": {k: {"median": m, "p25": lo, "p75": hi} for k, (m, lo, hi) in ratios.items()}}  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1) + "\n")


def processor(device) -> str:
    """What computes: the GPU's name, or ``lscpu``'s model name (the platform's processor where there is no lscpu)."""
    import platform
    import subprocess

    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor()
    return next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "")


class Timer:
    """Times calls on a device (synchronising CUDA around them)."""

    def __init__(self, device):
        import torch

        self.sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def __call__(self, fn: Callable[[], Any]) -> float:
        self.sync()
        start = time.perf_counter()
        fn()
        self.sync()
        return time.perf_counter() - start

    def repeat(self, fn: Callable[[], Any], repeats: int) -> list[float]:
        """Seconds of ``repeats`` calls after one warm-up call."""
        self(fn)
        return [self(fn) for _ in range(repeats)]


def ale_rollout(config, steps: int, seed: int) -> tuple[float, dict[str, Any]]:
    """Seconds for ``steps`` random-action steps of the game's train env, and what it saw (``[N, ...]`` numpy)."""
    import numpy as np

    from wmbench.plugins import registry

    env = registry().game(config.game).make_env(config.env, True, seed)
    rng = np.random.default_rng(seed)
    actions = rng.integers(env.action_space.n, size=steps)
    seen: dict[str, list] = {"frames": [], "actions": [], "rewards": [], "ends": []}
    obs, _ = env.reset()
    start = time.perf_counter()
    for a in actions:
        seen["frames"].append(obs)
        obs, reward, terminated, truncated, _ = env.step(int(a))
        seen["actions"].append(a)
        seen["rewards"].append(reward)
        seen["ends"].append(terminated)
        if terminated or truncated:
            obs, _ = env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return seconds, {k: np.stack(v) if k == "frames" else np.array(v) for k, v in seen.items()}


def measure(
    config, batch: int, repeats: int, log: Callable[[str], None] = lambda _: None, projection: bool = True
) -> list[Row]:
    """Every measure of one setup (a resolved run config), on its device and dtype; ``projection``: also the
    phases at the config's batch sizes and the projected wall time of a run."""
    import torch

    from wmbench.engine.agent import build_agent
    from wmbench.engine.fixed_dream import FixedDreamEnv
    from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine
    from wmbench.engine.trainer import resolve_device, world_model_optimizer
    from wmbench.plugins import registry

    device = resolve_device(config.device)
    timer = Timer(device)
    rows = []
    _reset_peak_memory(device)

    log("ALE")
    t = config.training.actor_critic
    blocks = config.world_model.max_blocks
    steps = max(ALE_STEPS, batch * max(blocks, t.burn_in + 1))
    _, seen = ale_rollout(config, steps, config.seed)  # the warm-up, and real frames for the other measures
    seconds = [ale_rollout(config, steps, config.seed + 1 + i)[0] for i in range(repeats)]
    rows.append(Row("ale_steps_per_s", "steps/s", tuple(steps / s for s in seconds), 1.0))

    torch.manual_seed(config.seed)
    agent = build_agent(config, registry(), registry().game(config.game).num_actions()).to(device)
    tokenizer, wm, ac = agent.tokenizer, agent.world_model, agent.actor_critic
    generator = torch.Generator(device=device).manual_seed(config.seed)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    frames = to_frames(seen["frames"], device)
    k, tpb = tokenizer.tokens_per_frame, wm.tokens_per_block

    def segments(length: int, rows: int = batch) -> dict[str, torch.Tensor]:
        """``rows`` consecutive stretches of the rollout, ``[rows, length, ...]`` (the rollout repeated if short)."""
        index = torch.arange(rows * length) % len(seen["actions"])
        out = {
            key: torch.as_tensor(seen[key])[index].to(device).view(rows, length)
            for key in ("actions", "rewards", "ends")
        }
        out["actions"] = out["actions"].long()
        out["frames"] = frames[index.to(device)].view(rows, length, *frames.shape[1:])
        out["mask"] = torch.ones(rows, length, dtype=torch.bool, device=device)
        return out

    log("tokenizer")
    tokenizer.eval()
    first = frames[:batch]
    with torch.no_grad(), autocast:
        tokens = tokenizer.encode(first)
        encode = timer.repeat(lambda: tokenizer.encode(first), repeats)
        decode = timer.repeat(lambda: tokenizer.decode(tokens), repeats)
    rows.append(Row("tokenizer_encode_frames_per_s", "frames/s", tuple(batch / s for s in encode), 1.0))
    rows.append(Row("tokenizer_decode_frames_per_s", "frames/s", tuple(batch / s for s in decode), 1.0))

    log("imagination")
    wm.eval()
    dream = (FixedDreamEnv if t.fixed_shape else DreamEnv)(tokenizer, wm, generator)
    cycle = cycle_steps(wm)
    actions = torch.from_numpy(seen["actions"][:batch]).long().to(device)

    with autocast:
        dream.reset(first)
        dream.step(actions, True)  # warm-up
        with_decode = [sum(imagine_cycle(dream, first, actions, True, timer)) for _ in range(repeats)]
        without, start = [], time.perf_counter()
        while len(without) < repeats or (time.perf_counter() - start < CONTEXT_SECONDS and len(without) < 50):
            without.append(imagine_cycle(dream, first, actions, False, timer))
    rows.append(Row("imagine_frames_per_s", "frames/s", tuple(batch * cycle / s for s in with_decode), 1.0))
    rows.append(Row("imagine_frames_per_s_no_decode", "frames/s", tuple(batch * cycle / sum(c) for c in without), 1.0))
    rows.append(Row("imagine_ms_per_frame_short_context", "ms/frame", tuple(1000 * c[0] / batch for c in without)))
    rows.append(Row("imagine_ms_per_frame_full_context", "ms/frame", tuple(1000 * c[-1] / batch for c in without)))
    rows.append(Row("context_growth", "ratio", tuple(c[-1] / c[0] for c in without)))

    log("world-model training")
    wm.train()
    optimizer = world_model_optimizer(wm, config.training.world_model.lr, config.training.world_model.weight_decay)
    data = segments(blocks)
    with torch.no_grad():  # fp32 tokens under either dtype, so that wm_loss compares the world model's arithmetic
        obs_tokens = tokenizer.encode(data["frames"].flatten(0, 1)).view(batch, blocks, k)
    losses = []

    def train_world_model() -> None:
        with autocast:
            loss = wm.losses(obs_tokens, data["actions"], data["rewards"], data["ends"], data["mask"]).total
        losses.append(loss.detach())  # read after the timing: reading it here would make the host wait
        optimizer_step(optimizer, loss, wm.parameters(), config.training.world_model.grad_clip)

    train = timer.repeat(train_world_model, repeats)
    rows.append(Row("wm_train_tokens_per_s", "tokens/s", tuple(batch * blocks * tpb / s for s in train), 1 / tpb))
    rows.append(Row("wm_loss", "nats", (losses[0].item(),)))

    log("actor-critic")
    wm.eval()
    ac.train()
    optimizer = torch.optim.Adam([p for p in ac.parameters() if p.requires_grad], lr=t.lr)
    data = segments(t.burn_in + 1)

    def train_actor_critic() -> None:
        with autocast:
            rollout = imagine(ac, dream, data["frames"], data["mask"], t.horizon)
            loss = actor_critic_losses(rollout, t.gamma, t.lambda_, t.entropy_weight)["total"]
        optimizer_step(optimizer, loss, ac.parameters(), t.grad_clip)

    updates = timer.repeat(train_actor_critic, repeats)
    rows.append(Row("actor_critic_updates_per_s", "updates/s", tuple(1 / s for s in updates), batch * t.horizon))

    rows.append(Row("peak_memory_mb", "MB", (_peak_memory_mb(device),)))
    rows.append(
        Row("matmul_gflops", "GFLOP/s", tuple(matmul_gflops(device, config.bf16, timer) for _ in range(repeats)))
    )
    if projection:
        log("training phases at the config's batch sizes")
        rows += phase_rows(config, agent, segments, obs_tokens, timer, repeats, generator)
    return rows


def phase_rows(config, agent, segments, obs_tokens, timer: Timer, repeats: int, generator) -> list[Row]:
    """One step of each training phase as the trainer takes it, at the config's batch sizes (``segments(length,
    rows)`` gives real segments, ``obs_tokens [b, max_blocks, K]`` their tokens), and the run's projected hours.
    The steps train the agent's weights."""
    import tempfile

    import torch

    from wmbench.bench.projection import PHASES, projected_seconds
    from wmbench.engine.collector import Collector
    from wmbench.engine.fixed_dream import FixedDreamEnv
    from wmbench.engine.imagination import DreamEnv, actor_critic_losses, imagine
    from wmbench.engine.replay import ReplayStore
    from wmbench.engine.trainer import fused, world_model_optimizer
    from wmbench.plugins import registry

    t = config.training
    device = obs_tokens.device
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.bf16)
    seconds: dict[str, list[float]] = {}

    with tempfile.TemporaryDirectory(prefix="wmbench-bench-") as folder, autocast:
        env = registry().game(config.game).make_env(config.env, True, config.seed)
        collector = Collector(env, ReplayStore(Path(folder), t.sampling_weights), agent, device, config.seed)
        c = t.collect

        def collect() -> None:
            collector.collect(c.steps_per_epoch, c.epsilon, c.temperature, t.actor_critic.burn_in, generator)

        seconds["collection"] = [s / c.steps_per_epoch for s in timer.repeat(collect, repeats)]
        env.close()

    def trains(component: str, loss: Callable[[], torch.Tensor], grad_clip: float, optimizer) -> list[float]:
        module = getattr(agent, component)

        def update() -> None:
            with autocast:
                value = loss()
            optimizer_step(optimizer, value, module.parameters(), grad_clip)

        return timer.repeat(update, repeats)

    agent.tokenizer.train()
    tok = t.tokenizer
    frames = segments(1, tok.batch_size)["frames"][:, 0]
    params = [p for p in agent.tokenizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=tok.lr, fused=fused(params))
    seconds["tokenizer"] = trains("tokenizer", lambda: agent.tokenizer.loss(frames)["total"], tok.grad_clip, optimizer)
    agent.tokenizer.eval()

    agent.world_model.train()
    w, blocks = t.world_model, config.world_model.max_blocks
    data = segments(blocks, w.batch_size)
    tokens = obs_tokens[torch.arange(w.batch_size, device=device) % obs_tokens.size(0)]
    optimizer = world_model_optimizer(agent.world_model, w.lr, w.weight_decay)
    seconds["world_model"] = trains(
        "world_model",
        lambda: agent.world_model.losses(tokens, data["actions"], data["rewards"], data["ends"], data["mask"]).total,
        w.grad_clip,
        optimizer,
    )
    agent.world_model.eval()

    agent.actor_critic.train()
    a = t.actor_critic
    data = segments(a.burn_in + 1, a.batch_size)
    params = [p for p in agent.actor_critic.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=a.lr, fused=fused(params))
    with agent.world_model.transformer.rollout():
        dream = (FixedDreamEnv if a.fixed_shape else DreamEnv)(agent.tokenizer, agent.world_model, generator)
        seconds["actor_critic"] = trains(
            "actor_critic",
            lambda: actor_critic_losses(
                imagine(agent.actor_critic, dream, data["frames"], data["mask"], a.horizon),
                a.gamma,
                a.lambda_,
                a.entropy_weight,
            )["total"],
            a.grad_clip,
            optimizer,
        )

    names = {"collection": "collect", "tokenizer": "tokenizer", "world_model": "wm", "actor_critic": "ac"}
    rows = [Row(f"phase_{names[p]}_steps_per_s", "steps/s", tuple(1 / s for s in seconds[p]), float(p == "collection"))
            for p in PHASES]  # fmt: skip
    runs = [projected_seconds(t, {p: seconds[p][i] for p in PHASES}) for i in range(repeats)]
    rows.append(Row("projected_hours", "h", tuple(r["total"] / 3600 for r in runs)))
    rows += [Row(f"projected_hours_{p}", "h", tuple(r[p] / 3600 for r in runs)) for p in PHASES]
    return rows


def cycle_steps(wm) -> int:
    """Imagined steps from a reset until the world model's cache is rebuilt (19 at the iris preset)."""
    return (wm.transformer.max_tokens - wm.tokens_per_frame) // wm.tokens_per_block


def imagine_cycle(dream, first, actions, decode: bool, timer: Timer) -> list[float]:
    """Seconds of each step of a :class:`DreamEnv` from a reset on frames ``first`` until its cache is rebuilt, every
    step taking ``actions``."""
    import torch

    dream.reset(first)
    with torch.no_grad():
        dream.world_model(dream.obs_tokens)  # a cache-free pass: the first step finds the weights as warm as later ones
    return [timer(lambda: dream.step(actions, decode)) for _ in range(cycle_steps(dream.world_model))]


def _reset_peak_memory(device) -> None:
    """Start the peak-memory count afresh, so that a suite's setups do not inherit each other's peaks."""
    import torch

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")  # Linux: resets the resident-set high-water mark


def _peak_memory_mb(device) -> float:
    """CUDA's peak allocation, or the process's peak resident set since the reset (Linux; elsewhere since start)."""
    import torch

    from wmbench.engine.trainer import peak_memory_mb

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    with contextlib.suppress(OSError, StopIteration):
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmHWM:")).split()[1]) / 1024
    return peak_memory_mb(device)["cpu_rss_mb"]


def matmul_gflops(device, bf16: bool, timer: Timer, n: int = 2048) -> float:
    """What the machine gives now: GFLOP/s of an ``n`` x ``n`` matrix product in fp32 or bf16."""
    import torch

    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = (torch.randn(n, n, device=device, dtype=dtype) for _ in range(2))
    return 2 * n**3 / min(timer.repeat(lambda: a @ b, 2)) / 1e9
