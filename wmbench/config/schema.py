"""The run configuration's schema: frozen dataclasses whose defaults are the IRIS paper's, a docstring per field.

A preset (``wmbench/presets/*.toml``) overrides these defaults (:mod:`wmbench.config.resolve`); the tokenizer's and
the backbone's options belong to the chosen plugin, whose own options dataclass the resolver builds. This module
imports nothing of wmbench.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class EnvConfig:
    """The Atari environment and the paper's wrappers."""

    size: int = 64
    """Frames are resized to size x size RGB."""
    frame_skip: int = 4
    """Agent steps repeat the action this many frames, observing the max over the last two."""
    noop_max: int = 30
    """Up to this many no-ops at reset in training (evaluation uses 1)."""
    done_on_life_loss: bool = True
    """In training, losing a life ends the episode."""
    max_frames_train: int = 20_000
    """Training episodes are cut after this many emulator frames."""
    max_frames_test: int = 108_000
    """Evaluation episodes are cut after this many emulator frames."""
    resize_each_frame: bool = True
    """IRIS's order: every emulator frame is resized to size x size (PIL bilinear), then the last two frames of a
    skip are max-pooled. False: max-pool at full resolution, then resize once with cv2 INTER_AREA (baselines)."""


@dataclass(frozen=True)
class WorldModelConfig:
    """The world model's sequence layout, and the width and depth a backbone is asked to have."""

    max_blocks: int = 20
    """Frames (blocks of tokens_per_frame + 1 tokens) the transformer attends over."""
    num_layers: int = 10
    """Transformer layers (backbones built from scratch)."""
    num_heads: int = 4
    """Attention heads (backbones built from scratch)."""
    embed_dim: int = 256
    """Width of the world model's token embeddings and heads."""
    dropout: float = 0.1
    """Dropout on embeddings, attention and residuals."""
    parallel: bool = False
    """Predict the K tokens of the next frame at once, from K learned queries after the action (REM's parallel
    observation prediction, not IRIS's token-by-token), so that an imagined frame costs one backbone call instead of
    K + 1. Needs a backbone that takes an attention mask (``takes_mask``: scratch, llm-* but Mamba, vit, clip)."""


@dataclass(frozen=True)
class ActorCriticConfig:
    """The policy and value network that reads reconstructed frames."""

    lstm_dim: int = 512
    """Hidden size of the LSTM cell."""
    channels: tuple[int, ...] = (32, 32, 64, 64)
    """Channels of the conv + max-pool layers."""


@dataclass(frozen=True)
class CollectConfig:
    """Gathering real experience."""

    steps_per_epoch: int = 200
    """Environment steps collected per epoch."""
    stop_after_epoch: int = 500
    """No collection after this epoch."""
    epsilon: float = 0.01
    """Probability of a uniformly random action."""
    temperature: float = 1.0
    """Policy temperature while collecting."""


@dataclass(frozen=True)
class TokenizerTrainConfig:
    """Training the tokenizer."""

    batch_size: int = 256
    start_after_epochs: int = 5
    stop_after_epoch: int = 1_000_000
    """No tokenizer training after this epoch: its codes stop moving under the world model. The default never
    stops, as IRIS."""
    steps_per_epoch: int = 200
    lr: float = 1e-4
    grad_clip: float = 10.0


@dataclass(frozen=True)
class WorldModelTrainConfig:
    """Training the world model."""

    batch_size: int = 64
    start_after_epochs: int = 25
    steps_per_epoch: int = 200
    lr: float = 1e-4
    weight_decay: float = 0.01
    grad_clip: float = 10.0


@dataclass(frozen=True)
class ActorCriticTrainConfig:
    """Training the actor-critic in imagination."""

    batch_size: int = 64
    start_after_epochs: int = 50
    steps_per_epoch: int = 200
    lr: float = 1e-4
    grad_clip: float = 10.0
    burn_in: int = 20
    """Real frames (their reconstructions) fed to the LSTM, without gradients, before imagining; the world model
    starts from the last real frame alone."""
    horizon: int = 20
    """Imagined steps per trajectory."""
    gamma: float = 0.995
    lambda_: float = 0.95
    entropy_weight: float = 0.001
    greedy_frames: bool = False
    """Imagined frames of the world model's most likely tokens instead of sampled ones (rewards and ends stay
    sampled). False: IRIS, which samples every token."""
    fixed_shape: bool = False
    """Imagine with fixed shapes (the same steps, tokens and samples): a preallocated cache attended over whole under
    a mask, its position on the device, sampling without host synchronisation; on CUDA each kind of step is captured
    in a CUDA graph and replayed, which removes the launch overhead that bounds imagination on a GPU. Needs a backbone
    that declares ``fixed_shape`` (scratch, the llm-* models but Mamba)."""


@dataclass(frozen=True)
class TrainingConfig:
    """The epoch schedule."""

    epochs: int = 600
    sampling_weights: tuple[float, ...] = ()
    """Episode sampling weights per recency bucket, oldest first. Empty (the default, and IRIS's): every stored
    episode equally likely. Recency weights such as ``[0.125, 0.125, 0.25, 0.5]`` are an option, not the paper's:
    the reference's weights only applied while it held no more episodes than weights, then were removed."""
    collect: CollectConfig = field(default_factory=CollectConfig)
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    world_model: WorldModelTrainConfig = field(default_factory=WorldModelTrainConfig)
    actor_critic: ActorCriticTrainConfig = field(default_factory=ActorCriticTrainConfig)
    checkpoint_every: int = 1
    """Epochs between checkpoints."""
    media_every: int = 10
    """Epochs between media in ``media/``: a reconstruction grid and train, test and imagined episode videos
    (0: never). The last epoch always writes them."""


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation with the test wrappers."""

    every: int = 5
    """Epochs between evaluations (0: only at the end)."""
    episodes: int = 16
    num_envs: int = 8
    temperature: float = 0.5
    final_episodes: int = 100
    """Episodes of the final evaluation."""


@dataclass(frozen=True)
class WorldModelTrackConfig:
    """The world-model track: the world model alone, on a fixed dataset of real transitions and a frozen tokenizer.

    Each budget (frames of training data) is a fresh run of at most ``steps`` optimiser steps, the same for every
    backbone; the state with the lowest validation loss is kept and measured on the held-out episodes."""

    dataset_steps: int = 100_000
    """Real transitions collected once per game and seed, an equal share by each policy of ``policies``; split by
    whole episodes into train, validation and held-out parts."""
    policies: tuple[str, ...] = ("random", "sticky", "scripted")
    """Behaviour policies of the dataset: random (uniform), sticky (a random action held for a while) and scripted
    (a per-game script from the emulator's RAM, epsilon-greedy)."""
    ood_steps: int = 0
    """Transitions of the greedy script, a policy outside the mix, held out as an out-of-distribution set (0: none)."""
    validation_fraction: float = 0.1
    """Share of each policy's steps (whole episodes) kept for validation: early stopping and the learning rate."""
    heldout_fraction: float = 0.1
    """Share of each policy's steps held out (whole episodes, the last ones collected)."""
    budgets: tuple[int, ...] = (10_000, 20_000, 40_000, 80_000)
    """Train frames each run may use: the first ``budget`` steps of the train part, the policies interleaved."""
    steps: int = 4000
    """World-model optimiser steps of a run (at most), validated every training.world_model.steps_per_epoch."""
    patience: int = 0
    """Validations without improvement after which a run stops early (0: never); the best state is kept either way."""
    lrs: tuple[float, ...] = ()
    """Candidate learning rates, chosen by validation loss at the largest budget (empty: training.world_model.lr)."""
    tokenizer_steps: int = 5000
    """Steps of the frozen tokenizer, trained once per game, seed and tokenizer setup on the whole train part and
    shared by every backbone (training.tokenizer's batch size, learning rate and clipping)."""
    input_scale: str = "engine"
    """Initial scale of the world model's own input tables: engine (std 0.02, as IRIS) or backbone (the RMS of the
    backbone's own token table, where it has one: a pretrained LLM's inputs then look like its own embeddings)."""
    eval_segments: int = 64
    """Validation windows of world_model.max_blocks frames (spread over the validation part); held-out and
    out-of-distribution figures use every step of their episodes."""
    rollout_starts: int = 128
    """Held-out starts of imagined rollouts (the held-out actions drive them)."""
    rollout_samples: int = 4
    """Imagined rollouts per start (the world model samples)."""
    rollout_burn_in: int = 4
    """Real frames fed as context before imagining."""
    rollout_steps: tuple[int, ...] = (1, 5, 10)
    """Imagined steps after which frame MSE, PSNR and token accuracy against the real frames are recorded."""


@dataclass(frozen=True)
class PluginChoice:
    """A chosen plugin and its resolved options (a frozen dataclass the plugin defines)."""

    name: str
    options: Any


@dataclass(frozen=True)
class RunConfig:
    """Everything that defines a run."""

    preset: str
    game: str
    seed: int
    tokenizer: PluginChoice
    backbone: PluginChoice
    env: EnvConfig = field(default_factory=EnvConfig)
    world_model: WorldModelConfig = field(default_factory=WorldModelConfig)
    actor_critic: ActorCriticConfig = field(default_factory=ActorCriticConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    world_model_track: WorldModelTrackConfig = field(default_factory=WorldModelTrackConfig)
    device: str = "auto"
    """cpu, cuda or auto."""
    bf16: bool = False
    """bf16 autocast for the forward passes."""
    init: str | None = None
    """A reference IRIS checkpoint whose ``init_parts`` the run starts from (``run --init``)."""
    init_parts: tuple[str, ...] = ("tokenizer", "world_model", "actor_critic")
    loggers: tuple[str, ...] = ()
    """Plugins whose run-observer hooks see this run, such as the built-in loggers ``tensorboard`` and ``wandb``."""
    probe: bool = True
    """Probe the backbone before training (causality in eval and train mode, cache equal to a full forward)."""


PLUGIN_SECTIONS = ("tokenizer", "backbone")
