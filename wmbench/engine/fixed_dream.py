"""Imagination with fixed shapes, captured in CUDA graphs on CUDA.

IRIS-style imagination is bound by kernel launches on a GPU: a step is K + 1 small backbone passes. What keeps the
eager :class:`~wmbench.engine.imagination.DreamEnv` out of CUDA graphs is a cache whose length changes every call.
:class:`FixedDreamEnv` computes the same steps (the same world-model calls and samples, so the same tokens, rewards
and ends from the same weights and generator) on buffers that never change shape or address: the backbone's
:class:`~wmbench.engine.backbone.FixedCache` (attended over whole under a mask, its position on the device), and the
frame's tokens, the actions, rewards, ends and decoded frames in preallocated tensors. Sampling reads nothing back to
the host (:func:`~wmbench.engine.imagination.sample`), and when to rebuild the cache is known on the host without
asking the device: the cache holds the same number of tokens at every step whatever was sampled. So each kind of step
(the rebuild from the current frame, a step with or without decoding, a rollout's last step) is one fixed sequence of
kernels, captured at its first call and replayed after.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from wmbench.engine.backbone import FixedCache
from wmbench.engine.imagination import DreamEnv
from wmbench.engine.tokenizer import Tokenizer
from wmbench.engine.world_model import WorldModel


class FixedDreamEnv(DreamEnv):
    """A :class:`DreamEnv` of fixed shapes; ``capture`` (default: on CUDA) replays its steps from CUDA graphs.

    Graphs read the weights where they lie: they stay valid while the world model's weights are updated in place,
    not when modules are swapped (capture inside the backbone's ``rollout()`` and drop the env when it ends). A
    change of batch size, dtype or autocast state allocates new buffers and captures again.

    ``whole`` (default: when capturing): attend over the whole cache, as graphs must. Uncaptured (on a CPU), the
    cache is told how many tokens it will hold after each step (its ``bound``), and attention reads only those: a
    CPU bound by memory traffic then pays for what is filled, as the eager env does, not for the whole cache."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        world_model: WorldModel,
        generator: torch.Generator | None = None,
        greedy_frames: bool = False,
        capture: bool | None = None,
        whole: bool | None = None,
    ):
        super().__init__(tokenizer, world_model, generator, greedy_frames)
        device = next(world_model.parameters()).device
        self.capture = device.type == "cuda" if capture is None else capture
        if self.capture and device.type != "cuda":
            raise ValueError("CUDA graphs capture imagination on a CUDA device only")
        self.whole = self.capture if whole is None else whole
        if self.capture and not self.whole:
            raise ValueError("captured steps attend over the whole cache")
        self.device = device
        self.cache: FixedCache
        self.held: int | None = None
        """Tokens the cache holds, counted on the host; None after a rollout's last step (reset first)."""
        self._layout: tuple | None = None
        self._graphs: dict[str, torch.cuda.CUDAGraph] = {}
        self._steps: dict[str, Callable[[], None]] = {
            "refresh": self._refill,
            "observe": lambda: self._advance(observe=True, decode=False),
            "decode": lambda: self._advance(observe=True, decode=True),
            "last": lambda: self._advance(observe=False, decode=False),
        }

    @torch.no_grad()
    def reset(self, frames: torch.Tensor) -> torch.Tensor:
        tokens = self.tokenizer.encode(frames)
        first = self.tokenizer.decode(tokens)
        self._allocate(tokens, first)
        self.obs_tokens.copy_(tokens)
        self._run("refresh")
        return first

    @torch.no_grad()
    def step(
        self,
        actions: torch.Tensor,
        decode: bool = True,
        observe: bool = True,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        if self.held is None:
            raise RuntimeError("the env stepped after a rollout's last step: reset it first")
        if self.held + self.growth > self.world_model.transformer.max_tokens:
            self._run("refresh")
        self._actions.copy_(actions)
        self._run(("decode" if decode else "observe") if observe else "last")
        frames = self._frames.clone() if observe and decode else None
        return frames, self._rewards.clone(), self._ends.clone()

    # The fixed-shape steps: they read and write the buffers alone. -------------------------------------------

    def _refill(self) -> None:
        """The rebuild: the cache emptied in place, then fed the current frame (nothing with parallel prediction)."""
        self.cache.clear()
        if not self.world_model.parallel:
            self.world_model(self.obs_tokens, self.cache)

    def _advance(self, observe: bool, decode: bool) -> None:
        rewards, ends, tokens = self._imagine(self._actions, observe)
        self._rewards.copy_(rewards)
        self._ends.copy_(ends)
        if tokens is not None:
            self.obs_tokens.copy_(tokens)
            if decode:
                self._frames.copy_(self.tokenizer.decode(self.obs_tokens))

    def _held_after(self, name: str) -> int | None:
        """What the cache holds after a step of kind ``name``: known on the host, whatever was sampled."""
        wm = self.world_model
        if name == "refresh":
            return 0 if wm.parallel else wm.tokens_per_frame
        if name == "last" or self.held is None:
            return None
        return self.held + wm.tokens_per_block

    def _bound(self, name: str) -> int | None:
        """The most tokens the cache holds during a step of kind ``name`` (parallel prediction's queries included),
        or None to attend over all of it."""
        if self.whole:
            return None
        if name == "refresh":
            return self.world_model.tokens_per_frame
        assert self.held is not None
        return self.held + self.growth

    # Buffers and graphs --------------------------------------------------------------------------------------

    def _allocate(self, tokens: torch.Tensor, frames: torch.Tensor) -> None:
        """Buffers for ``tokens``' batch and ``frames``' dtype under the autocast state in force; kept (with their
        graphs) while these stay the same."""
        kind = self.device.type
        autocast = torch.is_autocast_enabled(kind)
        dtype = torch.get_autocast_dtype(kind) if autocast else None
        layout = (tokens.shape, frames.dtype, autocast, dtype)
        if layout == self._layout:
            return
        b = tokens.size(0)
        self._graphs.clear()
        self.cache = self.world_model.transformer.new_fixed_cache(b, dtype)
        self.obs_tokens = torch.empty_like(tokens)
        self._actions = torch.zeros(b, dtype=torch.long, device=self.device)
        self._rewards = torch.zeros(b, device=self.device)
        self._ends = torch.zeros(b, dtype=torch.bool, device=self.device)
        self._frames = torch.empty_like(frames)
        self._layout = layout

    def _run(self, name: str) -> None:
        """One step of kind ``name``: run, or (capturing) replayed from its graph, captured at its first call."""
        self.cache.bound = self._bound(name)
        if not self.capture:
            self._steps[name]()
        else:
            if name not in self._graphs:
                self._graphs[name] = self._capture(self._steps[name])
            self._graphs[name].replay()
        self.held = self._held_after(name)

    def _capture(self, step: Callable[[], None]) -> torch.cuda.CUDAGraph:
        """``step`` captured in a CUDA graph, after a warm-up run on a side stream (lazy initialisations must not
        happen during capture) whose changes to the state (the tokens the cache holds, the frame's tokens, the
        generator) are undone, so that capturing changes nothing (a rebuild needs no undoing: it starts afresh)."""
        generator = self.generator
        if generator is None:
            generator = torch.cuda.default_generators[self.device.index or torch.cuda.current_device()]
        held, tokens, rng = self.cache.num_tokens, self.obs_tokens.clone(), generator.get_state()
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream), _uncached_autocast(self.device.type):
            step()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        fed = self.cache.num_tokens - held
        if fed > 0:
            self.cache.drop(fed)  # what it wrote past the position is hidden, and overwritten later
        self.obs_tokens.copy_(tokens)
        generator.set_state(rng)
        graph = torch.cuda.CUDAGraph()
        if self.generator is not None:  # the default generator is registered with every capture already
            graph.register_generator_state(self.generator)
        with torch.cuda.graph(graph), _uncached_autocast(self.device.type):
            step()
        return graph


def _uncached_autocast(device_type: str) -> torch.autocast:
    """The autocast state in force, without its cache of cast weights: a graph must cast the weights itself, as a
    cast cached outside it is freed when the outer autocast region ends."""
    enabled = torch.is_autocast_enabled(device_type)
    return torch.autocast(device_type, torch.get_autocast_dtype(device_type), enabled=enabled, cache_enabled=False)
