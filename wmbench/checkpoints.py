"""Reading checkpoints: wmbench's own (``checkpoints/last.pt``) and the reference IRIS format, checked against
the agent they are loaded into, so that a foreign, truncated or mismatched file is one clear error.

Both formats hold the agent as one state dict whose keys start with ``tokenizer.``, ``world_model.`` and
``actor_critic.``. A wmbench checkpoint adds optimisers, counters, RNG states and the run's config; a
reference checkpoint is the bare state dict (IRIS's ``checkpoints/last.pt``), with causal-mask and head-index
buffers that wmbench derives instead of storing, and LPIPS weights that belong to no part.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from wmbench.config import flatten
from wmbench.errors import WmbenchError
from wmbench.files import load_torch

FORMAT = "wmbench-checkpoint-1"
PARTS = ("tokenizer", "world_model", "actor_critic")
REFERENCE_IGNORED = re.compile(
    r"^(world_model\.transformer\.blocks\.\d+\.attn\.mask|world_model\.head_\w+\.indices|tokenizer\.lpips\..*)$"
)
"""Reference keys with nothing to load: buffers wmbench derives (causal mask, head positions) and LPIPS."""
REFERENCE_RENAMED = {"world_model.pos_emb.weight": "world_model.transformer.pos_emb.weight"}
"""Reference keys stored under another name here (the scratch backbone owns its position table)."""


def load(path: Path) -> dict[str, Any]:
    """A wmbench checkpoint (``weights_only``), or a WmbenchError saying what the file is instead."""
    state = load_torch(path)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        looks_reference = isinstance(state, dict) and any(str(k).startswith(PARTS) for k in state)
        what = "a reference IRIS state dict (use --init)" if looks_reference else "not a wmbench checkpoint"
        raise WmbenchError(f"checkpoint {path} is {what}")
    return state


def config_of(state: dict[str, Any]) -> dict[str, Any]:
    return json.loads(state["config"])


HOW_IT_RUNS = ("device", "bf16", "loggers", "training.actor_critic.fixed_shape")
"""Config fields a run may change when it resumes: where and how it computes, not what."""


def check_same_run(state: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint written by a run of another config (but for the fields of :data:`HOW_IT_RUNS`)."""
    saved = flatten(config_of(state))
    wanted = flatten(json.loads(json.dumps(config)))
    differ = sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k) and k not in HOW_IT_RUNS)
    if differ:
        shown = ", ".join(f"{k}={saved.get(k)!r} (run: {wanted.get(k)!r})" for k in differ[:3])
        raise WmbenchError(f"checkpoint {path} belongs to another config: {shown}")


def load_agent_state(
    agent: nn.Module, state: dict[str, torch.Tensor], path: Path, parts: tuple[str, ...] = PARTS
) -> None:
    """Load ``parts`` of ``state`` into ``agent``; every key must exist on both sides with the same shape."""
    prefixes = tuple(f"{p}." for p in parts)
    own = {k: v for k, v in agent.state_dict().items() if k.startswith(prefixes)}
    given = {k: v for k, v in state.items() if k.startswith(prefixes)}
    problems = [f"{k} missing" for k in own if k not in given]
    problems += [f"{k} unexpected" for k in given if k not in own]
    problems += [
        f"{k} has shape {tuple(given[k].shape)}, the agent {tuple(v.shape)}"
        for k, v in own.items()
        if k in given and given[k].shape != v.shape
    ]
    if problems:
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise WmbenchError(f"checkpoint {path} does not fit this agent: {'; '.join(problems[:3])}{more}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(given[k])


def load_reference(agent: nn.Module, path: Path, parts: tuple[str, ...] = PARTS) -> None:
    """Load ``parts`` of a reference IRIS checkpoint into ``agent`` (as IRIS's load_tokenizer/load_world_model/
    load_actor_critic flags do). Every key of those parts must fit the agent."""
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        raise WmbenchError(f"unknown checkpoint part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    raw = load_torch(path)
    if not isinstance(raw, dict) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        what = (
            "a wmbench checkpoint (use wmbench eval or run --resume)"
            if isinstance(raw, dict) and raw.get("format") == FORMAT
            else "not a state dict of tensors"
        )
        raise WmbenchError(f"--init {path} is {what}")
    state = {REFERENCE_RENAMED.get(k, k): v for k, v in raw.items() if not REFERENCE_IGNORED.match(k)}
    absent = [p for p in parts if not any(k.startswith(p + ".") for k in state)]
    if absent:
        held = sorted({k.split(".")[0] for k in state})
        raise WmbenchError(
            f"--init {path} holds no {', '.join(absent)} weights (it holds: {', '.join(held) or 'nothing'}); choose parts with --init-parts"
        )
    load_agent_state(agent, state, path, parts)
