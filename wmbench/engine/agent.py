"""The agent: tokenizer, world model and actor-critic, built from a run config through the plugin registry."""

from __future__ import annotations

import torch
from torch import nn

from wmbench.config import RunConfig
from wmbench.engine.actor_critic import ActorCritic
from wmbench.engine.backbone import Backbone, BackboneShape
from wmbench.engine.imagination import sample
from wmbench.engine.probe import probe_backbone
from wmbench.engine.tokenizer import Tokenizer
from wmbench.engine.world_model import WorldModel
from wmbench.errors import WmbenchError
from wmbench.plugins import Registry

COMPONENTS = ("tokenizer", "world_model", "actor_critic")


class Agent(nn.Module):
    """The three parts; its state dict has the reference's prefixes ``tokenizer.``, ``world_model.``, ``actor_critic.``."""

    def __init__(self, tokenizer: Tokenizer, world_model: WorldModel, actor_critic: ActorCritic):
        super().__init__()
        self.tokenizer, self.world_model, self.actor_critic = tokenizer, world_model, actor_critic

    @torch.no_grad()
    def act(
        self, frames: torch.Tensor, temperature: float, epsilon: float, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Actions for real frames ``[B, 3, H, W]`` in [0, 1]: the policy on their reconstructions."""
        logits, _ = self.actor_critic(self.tokenizer.reconstruct(frames).clamp(0, 1))
        actions = sample(logits / temperature, generator)
        if epsilon > 0:
            explore = torch.rand(actions.shape, generator=generator, device=actions.device) < epsilon
            random_actions = torch.randint(logits.size(-1), actions.shape, generator=generator, device=actions.device)
            actions = torch.where(explore, random_actions, actions)
        return actions

    def parameter_counts(self) -> dict[str, dict[str, int]]:
        """Total and trainable parameters per component."""
        counts = {}
        for name in COMPONENTS:
            module = getattr(self, name)
            counts[name] = {"total": parameter_count(module), "trainable": parameter_count(module, trainable=True)}
        return counts


def parameter_count(module: nn.Module, trainable: bool = False) -> int:
    """Weights counted one per weight, also when quantised (a 4-bit weight packs two per stored byte)."""
    total = 0
    for p in module.parameters():
        if trainable and not p.requires_grad:
            continue
        state = getattr(p, "quant_state", None)  # bitsandbytes Params4bit: the unpacked shape is kept here
        total += int(torch.Size(state.shape).numel()) if state is not None else p.numel()
    return total


def build_agent(config: RunConfig, registry: Registry, num_actions: int) -> Agent:
    """Build the tokenizer and backbone plugins the config names, and the IRIS parts around them."""
    tok_entry = registry.get("tokenizer", config.tokenizer.name)
    tokenizer = tok_entry.build(config.tokenizer.options, config.env.size)
    if not isinstance(tokenizer, Tokenizer):
        raise WmbenchError(f"tokenizer plugin {tok_entry.plugin!r} built a {type(tokenizer).__name__}, not a Tokenizer")
    wm = config.world_model
    shape = BackboneShape(
        wm.embed_dim, wm.num_layers, wm.num_heads, wm.dropout, wm.max_blocks, tokenizer.tokens_per_frame + 1
    )
    bb_entry = registry.get("backbone", config.backbone.name)
    backbone = bb_entry.build(config.backbone.options, shape)
    if not isinstance(backbone, Backbone):
        raise WmbenchError(f"backbone plugin {bb_entry.plugin!r} built a {type(backbone).__name__}, not a Backbone")
    if backbone.max_tokens < 2 * shape.tokens_per_block:
        raise WmbenchError(f"backbone {bb_entry.name!r} takes {backbone.max_tokens} tokens, fewer than two frames")
    package = registry.plugins[bb_entry.plugin].distribution
    if wm.parallel and not backbone.takes_mask:
        raise WmbenchError(
            f"world_model.parallel needs a backbone that takes an attention mask and drops cache entries; "
            f"{bb_entry.name!r} from package {package!r} does not (takes_mask is false)"
        )
    fixed = config.training.actor_critic.fixed_shape
    if fixed and not backbone.fixed_shape:
        raise WmbenchError(
            f"training.actor_critic.fixed_shape needs a backbone with a fixed-shape cache; {bb_entry.name!r} from "
            f"package {package!r} has none (fixed_shape is false)"
        )
    if config.probe:
        probe_backbone(backbone, bb_entry.name, package, masked=wm.parallel, fixed=fixed)
    world_model = WorldModel(backbone, tokenizer.vocab_size, tokenizer.tokens_per_frame, num_actions, wm.parallel)
    actor_critic = ActorCritic(config.actor_critic, num_actions, config.env.size)
    return Agent(tokenizer, world_model, actor_critic)
