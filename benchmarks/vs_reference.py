"""wmbench beside the reference IRIS implementation, in one process, on the same weights, at the paper configuration.

The reference's tokenizer and world model are built from a checkout of IRIS (github.com/eloialonso/iris: its ``src/``
is imported, which needs ``einops`` besides torch; nothing of it is part of wmbench). Its random initial weights
are saved as a reference checkpoint and loaded into wmbench's agent through ``--init``'s own code path
(``checkpoints.load_reference``). The script then checks that both compute the same thing (tokens, decoded frames,
world-model logits and losses) and times them in alternation, ``repeats`` rounds each, the ratio taken per round
(median and quartiles: the machine's speed drifts, a round's two timings share its state):

- ``imagine``: a cycle of ``batch`` imagined environments with decoding, from a reset on real Breakout frames through
  the 19 steps until the cache is full (reference: ``WorldModelEnv``; wmbench: ``DreamEnv``), in frames/s;
- ``imagine ... no_decode``: the same cycle, its steps without decoding (the world model's 17 passes per step);
- ``decode``: the tokenizer decoding ``batch`` frames, in frames/s;
- ``wm_train``: one world-model step (loss, backward, AdamW) on ``batch`` segments of 20 frames, tokens given, in
  tokens/s (the reference's figure, 1,338 ms for 8 x 340 tokens, leaves the encoding out too).

The checks run on the CPU in fp32; the timings on ``--device``. ``--fixed-shape`` (wmbench's imagination with fixed
shapes, captured in CUDA graphs on CUDA) and ``--bf16`` (bf16 autocast for wmbench's imagination and training step)
change wmbench's side only: the reference runs as its code does (fp32, its AdamW unfused).

    .venv/bin/python benchmarks/vs_reference.py --iris PATH [--batch 8] [--repeats 5] [--json OUT]
    python benchmarks/vs_reference.py --iris PATH --device cuda --batch 64 --fixed-shape --bf16 --json OUT
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

from wmbench import checkpoints
from wmbench import config as cfg
from wmbench.bench.measure import Timer, ale_rollout, matmul_gflops, processor
from wmbench.engine.agent import build_agent
from wmbench.engine.collector import to_frames
from wmbench.engine.fixed_dream import FixedDreamEnv
from wmbench.engine.imagination import DreamEnv
from wmbench.engine.optim import optimizer_step
from wmbench.engine.trainer import world_model_optimizer
from wmbench.plugins import registry


def reference_models(iris: Path, config, num_actions: int, tokens_per_frame: int):
    """The reference's tokenizer and world model at ``config``'s sizes, from the IRIS checkout ``iris``."""
    importable_reference(iris)
    from src.models.tokenizer import Decoder, Encoder, EncoderDecoderConfig, Tokenizer
    from src.models.transformer import TransformerConfig
    from src.models.world_model import WorldModel

    t, w = config.tokenizer.options, config.world_model
    nets = EncoderDecoderConfig(resolution=config.env.size, in_channels=3, z_channels=t.z_channels, ch=t.ch,
                                ch_mult=list(t.ch_mult), num_res_blocks=t.num_res_blocks,
                                attn_resolutions=list(t.attn_resolutions), out_ch=3, dropout=t.dropout)  # fmt: skip
    tokenizer = Tokenizer(t.vocab_size, t.embed_dim, Encoder(nets), Decoder(nets), with_lpips=False)
    transformer = TransformerConfig(tokens_per_block=tokens_per_frame + 1, max_blocks=w.max_blocks,
                                    attention="causal", num_layers=w.num_layers, num_heads=w.num_heads,
                                    embed_dim=w.embed_dim, embed_pdrop=w.dropout, resid_pdrop=w.dropout,
                                    attn_pdrop=w.dropout)  # fmt: skip
    return tokenizer, WorldModel(t.vocab_size, num_actions, transformer)


def importable_reference(iris: Path) -> None:
    """Make the IRIS checkout importable: as ``src.*`` and by the reference's own top-level names (its modules
    import ``from dataset import Batch``). Its ``envs`` package imports the old ``gym``, used here for nothing but
    the base classes its wrappers subclass: where gym is not installed (it does not build here), a module holding
    empty classes of those names stands in, so that the reference's actor-critic can be imported."""
    for path in (iris / "src", iris):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    try:
        import gym  # noqa: F401
    except ImportError:
        names = ("Env", "Wrapper", "ObservationWrapper", "RewardWrapper", "ActionWrapper")
        sys.modules["gym"] = types.SimpleNamespace(**{name: type(name, (), {}) for name in names})


def import_reference_actor_critic(iris: Path):
    """The reference's actor-critic module."""
    importable_reference(iris)
    import models.actor_critic

    return models.actor_critic


def actor_critic_loss_check(iris: Path, agent, config, frames: torch.Tensor, b: int) -> dict[str, float]:
    """One actor-critic loss, wmbench's and the reference's, on the same weights and the same imagined batch.

    wmbench imagines a batch from ``b`` real segments (burn-in + 1 frames) with its own DreamEnv, and computes its
    loss; the reference's ``ActorCritic`` gets the same weights and, through its ``compute_loss``, the same batch:
    its ``imagine`` is replaced by a replay of wmbench's imagined frames, actions, rewards and ends through the
    reference network (burn-in on the same reconstructions, under no_grad, as the reference does).
    """
    from wmbench.engine.imagination import actor_critic_losses, imagine

    reference = import_reference_actor_critic(iris)
    t = config.training.actor_critic
    length = t.burn_in + 1
    b = min(b, frames.size(0) // length)
    segments = frames[: b * length].view(b, length, *frames.shape[1:])
    mask = torch.ones(b, length, dtype=torch.bool)
    ours_ac = agent.actor_critic.train()
    torch.manual_seed(0)
    rollout = imagine(ours_ac, DreamEnv(agent.tokenizer, agent.world_model, torch.Generator().manual_seed(0)),
                      segments, mask, t.horizon)  # fmt: skip
    ours = actor_critic_losses(rollout, t.gamma, t.lambda_, t.entropy_weight)
    ref_ac = reference.ActorCritic(ours_ac.actor_linear.out_features)
    ref_ac.load_state_dict(ours_ac.state_dict())
    with torch.no_grad():
        burn_in = agent.tokenizer.reconstruct(segments[:, :-1].flatten(0, 1)).clamp(0, 1).view_as(segments[:, :-1])

    def replay(batch, tokenizer, world_model, horizon, show_pbar=False):
        ref_ac.reset(b, burn_in, mask[:, :-1])
        outputs = [ref_ac(rollout.frames[:, h].float()) for h in range(horizon)]
        return reference.ImagineOutput(
            observations=rollout.frames.mul(255).byte(), actions=rollout.actions,
            logits_actions=torch.cat([o.logits_actions for o in outputs], dim=1),
            values=torch.cat([o.means_values for o in outputs], dim=1).squeeze(-1),
            rewards=rollout.rewards, ends=rollout.ends.long(),
        )  # fmt: skip

    ref_ac.imagine = replay
    theirs = ref_ac.compute_loss(None, None, None, imagine_horizon=t.horizon, gamma=t.gamma, lambda_=t.lambda_,
                                 entropy_weight=t.entropy_weight)  # fmt: skip
    parts = theirs.intermediate_losses
    return {
        "actor_critic_loss_diff": ours["total"].item() - theirs.loss_total.item(),
        "actor_critic_actions_loss_diff": ours["actions"].item() - parts["loss_actions"],
        "actor_critic_values_loss_diff": ours["values"].item() - parts["loss_values"],
        "actor_critic_entropy_loss_diff": ours["entropy"].item() - parts["loss_entropy"],
    }


@torch.no_grad()
def ref_decode(tokenizer, tokens: torch.Tensor) -> torch.Tensor:
    """Frames in [0, 1] for ``tokens [B, K]``, as the reference's ``WorldModelEnv.decode_obs_tokens`` makes them."""
    side = round(tokens.size(1) ** 0.5)
    z = tokenizer.embedding(tokens).view(tokens.size(0), side, side, -1).permute(0, 3, 1, 2)
    return tokenizer.decode(z, should_postprocess=True).clamp(0, 1)


def positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer above zero, got {text!r}")
    return int(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iris", type=Path, required=True, help="a checkout of the reference IRIS repository")
    parser.add_argument("--batch", type=positive, default=8)
    parser.add_argument("--repeats", type=positive, default=5)
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--checks-only", action="store_true", help="check equal outputs and losses, time nothing")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="where the timings run")
    parser.add_argument("--fixed-shape", action="store_true", help="wmbench imagines with fixed shapes")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on wmbench's side")
    args = parser.parse_args()
    if not (args.iris / "src" / "models" / "world_model.py").is_file():
        sys.exit(f"{args.iris} is not a checkout of IRIS (no src/models/world_model.py)")
    b = args.batch
    config = cfg.resolve("iris", "Breakout", 0, "vqvae", "scratch", [], registry())
    num_actions = registry().game(config.game).num_actions()
    blocks = config.world_model.max_blocks
    _, seen = ale_rollout(config, b * blocks, seed=0)

    agent = build_agent(config, registry(), num_actions)
    k = agent.tokenizer.tokens_per_frame
    torch.manual_seed(0)
    ref_tokenizer, ref_wm = reference_models(args.iris, config, num_actions, k)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reference.pt"
        state = {f"tokenizer.{k}": v for k, v in ref_tokenizer.state_dict().items()}
        state |= {f"world_model.{k}": v for k, v in ref_wm.state_dict().items()}
        state |= {f"actor_critic.{k}": v for k, v in agent.actor_critic.state_dict().items()}
        torch.save(state, path)
        checkpoints.load_reference(agent, path)
    tokenizer, wm = agent.tokenizer.eval(), agent.world_model.eval()
    ref_tokenizer.eval(), ref_wm.eval()

    frames = to_frames(seen["frames"], torch.device("cpu"))
    actions = torch.from_numpy(seen["actions"]).long()
    rewards = torch.from_numpy(seen["rewards"]).float().view(b, blocks)
    ends = torch.from_numpy(seen["ends"]).view(b, blocks)
    mask = torch.ones(b, blocks, dtype=torch.bool)

    # The same function: tokens, frames, logits and losses, on the same inputs.
    checks = {}
    with torch.no_grad():
        tokens = tokenizer.encode(frames).view(b, blocks, -1)
        ref_tokens = ref_tokenizer.encode(frames, should_preprocess=True).tokens.view(b, blocks, -1)
        checks["tokens_equal_fraction"] = (tokens == ref_tokens).float().mean().item()
        first = tokens[:, 0]
        checks["decode_max_abs_diff"] = (tokenizer.decode(first) - ref_decode(ref_tokenizer, first)).abs().max().item()
        sequence = torch.cat([tokens, actions.view(b, blocks, 1)], dim=2).flatten(1)
        ref_out = ref_wm(sequence)
        hidden = wm(sequence)
        checks["hidden_max_abs_diff"] = (hidden - ref_out.output_sequence).abs().max().item()
        ours = wm.losses(tokens, actions.view(b, blocks), rewards, ends, mask)
        batch = {"observations": frames.view(b, blocks, *frames.shape[1:]), "actions": actions.view(b, blocks),
                 "rewards": rewards, "ends": ends.long(), "mask_padding": mask}  # fmt: skip
        given = types.SimpleNamespace(encode=lambda *_, **__: types.SimpleNamespace(tokens=tokens))
        theirs = ref_wm.compute_loss(batch, given)
        checks["loss_diff"] = ours.total.item() - theirs.loss_total.item()
    checks |= actor_critic_loss_check(args.iris, agent, config, frames, b)
    if args.checks_only:
        print(json.dumps(checks))
        return

    # Timings on the device, alternating the two implementations.
    from src.envs.world_model_env import WorldModelEnv

    device = torch.device(args.device)
    agent.to(device), ref_tokenizer.to(device), ref_wm.to(device)
    frames, actions, rewards, ends, mask, tokens = (
        x.to(device) for x in (frames, actions, rewards, ends, mask, tokens)
    )
    first = tokens[:, 0]
    batch = {key: value.to(device) for key, value in batch.items()}
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.bf16)
    ref_env = WorldModelEnv(ref_tokenizer, ref_wm, device)
    generator = torch.Generator(device=device).manual_seed(0)
    dream = (FixedDreamEnv if args.fixed_shape else DreamEnv)(tokenizer, wm, generator)
    cycle = (blocks * (k + 1) - k) // (k + 1)  # steps from a reset until the cache is full
    start_frames, step_actions = frames[:b], actions[:b]

    def ref_imagine(decode: bool = True) -> None:
        ref_env.reset_from_initial_observations(start_frames)
        if not decode:  # the reference has no switch for it: its steps skip the decoding
            ref_env.decode_obs_tokens = lambda: None
        for _ in range(cycle):
            ref_env.step(step_actions)
        vars(ref_env).pop("decode_obs_tokens", None)

    def our_imagine(decode: bool = True) -> None:
        with autocast:
            dream.reset(start_frames)
            for _ in range(cycle):
                dream.step(step_actions, decode)

    lr, decay = config.training.world_model.lr, config.training.world_model.weight_decay
    ref_opt, our_opt = world_model_optimizer(ref_wm, lr, decay, fuse=False), world_model_optimizer(wm, lr, decay)

    def train_step(model, optimizer, loss) -> None:
        """One step as the trainer takes it, in training mode (dropout on)."""
        model.train()
        optimizer_step(optimizer, loss(), model.parameters(), config.training.world_model.grad_clip)
        model.eval()

    def ref_train() -> None:
        train_step(ref_wm, ref_opt, lambda: ref_wm.compute_loss(batch, given).loss_total)

    def our_train() -> None:
        def loss() -> torch.Tensor:
            with autocast:
                return wm.losses(tokens, actions.view(b, blocks), rewards, ends, mask).total

        train_step(wm, our_opt, loss)

    measures = {
        "imagine_frames_per_s": (ref_imagine, our_imagine, b * cycle),
        "imagine_frames_per_s_no_decode": (lambda: ref_imagine(False), lambda: our_imagine(False), b * cycle),
        "decode_frames_per_s": (
            lambda: ref_decode(ref_tokenizer, first),
            torch.no_grad()(lambda: tokenizer.decode(first)),
            b,
        ),
        "wm_train_tokens_per_s": (ref_train, our_train, b * blocks * (k + 1)),
    }
    results = {}
    timer = Timer(device)
    for name, (ref_fn, our_fn, amount) in measures.items():
        times: dict[str, list[float]] = {"reference": [], "wmbench": []}
        ref_fn(), our_fn()  # warm-up
        for i in range(args.repeats):
            pair = [("reference", ref_fn), ("wmbench", our_fn)]
            for who, fn in pair if i % 2 == 0 else pair[::-1]:  # each goes first every other round
                times[who].append(timer(fn))
        ratios = [r / w for r, w in zip(times["reference"], times["wmbench"])]  # per round: wmbench's speed-up
        low, ratio, high = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else ratios * 3
        ref_rate, our_rate = (amount / statistics.median(times[who]) for who in ("reference", "wmbench"))
        results[name] = {
            "reference": ref_rate,
            "wmbench": our_rate,
            "ratio": ratio,
            "ratio_p25": low,
            "ratio_p75": high,
        }
        print(f"{name:<32} reference {ref_rate:>9.2f}   wmbench {our_rate:>9.2f}   "
              f"ratio {ratio:.2f}x [{low:.2f}, {high:.2f}]", flush=True)  # fmt: skip
    out = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "batch": b, "threads": torch.get_num_threads(),
           "repeats": args.repeats, "torch": torch.__version__, "device": args.device, "processor": processor(device),
           "wmbench_fixed_shape": args.fixed_shape, "wmbench_bf16": args.bf16,
           "matmul_gflops": matmul_gflops(device, args.bf16, timer), "checks": checks, "measures": results}  # fmt: skip
    print(json.dumps(checks))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
