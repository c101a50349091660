"""The build-time backbone probe: leaks in eval or train mode and caches that differ or do not grow are refused,
also for a backbone from a third-party package run through ``wmbench run``."""

from __future__ import annotations

import json

import pytest
import torch
from plugin_site import TINY, add_package, wmbench
from torch import nn

from wmbench.engine.probe import ProbeFailure, probe, probe_backbone
from wmbench.errors import WmbenchError

PEEKING = '''
"""An outsider's backbone that mixes the mean of the whole sequence into every position: it sees the future."""
from dataclasses import dataclass

import torch
from torch import nn

from wmbench.engine.backbone import Backbone
from wmbench.hookspecs import hookimpl


@dataclass(frozen=True)
class PeekOptions:
    width: int = 16
    """Width."""


class PeekCache:
    def __init__(self, seen=None):
        self.seen = seen

    @property
    def num_tokens(self):
        return 0 if self.seen is None else self.seen.size(1)

    def select(self, index):
        return PeekCache(self.seen[index])


class Peek(Backbone):
    def __init__(self, width, max_tokens):
        super().__init__()
        self.d_model, self.max_tokens = width, max_tokens
        self.proj = nn.Linear(width, width)

    def new_cache(self, batch_size):
        return PeekCache()

    def forward(self, embeds, cache=None):
        if cache is not None:
            cache.seen = embeds if cache.seen is None else torch.cat([cache.seen, embeds], 1)
        return self.proj(embeds) + embeds.mean(1, keepdim=True)


def build(options, shape):
    return Peek(shape.embed_dim, shape.max_tokens)


@hookimpl
def wmbench_register_backbones(register):
    register("peek", build, options=PeekOptions, summary="sees the future")
'''


class _Base(nn.Module):
    """A causal per-token backbone with a cache that counts tokens; subclasses break one property each."""

    def __init__(self, width: int = 8, max_tokens: int = 20):
        super().__init__()
        self.d_model, self.max_tokens = width, max_tokens
        self.proj = nn.Linear(width, width)

    def new_cache(self, batch_size):
        return _Count()

    def forward(self, embeds, cache=None):
        if cache is not None:
            cache.n += embeds.size(1)
        return self.proj(embeds).cumsum(1)  # causal, but needs the past: a cache that forgets it differs


class _Count:
    def __init__(self):
        self.n = 0

    @property
    def num_tokens(self):
        return self.n

    def select(self, index):
        return self


def _backbone(cls):
    from wmbench.engine.backbone import Backbone

    return type(cls.__name__, (cls, Backbone), {})()


class _Forgets(_Base):
    """Counts tokens but keeps no context: a chunked forward differs from the full one."""


class _Stuck(_Base):
    """A cache that never grows (a model that silently drops the cache keyword)."""

    def forward(self, embeds, cache=None):
        return self.proj(embeds)


class _BatchNormOverTime(_Base):
    """Causal in eval mode; in train mode batch statistics over the whole sequence leak the future."""

    def __init__(self):
        super().__init__()
        self.norm = nn.BatchNorm1d(self.d_model)

    def forward(self, embeds, cache=None):
        if cache is not None:
            cache.n += embeds.size(1)
        return self.norm(self.proj(embeds).transpose(1, 2)).transpose(1, 2)


def test_scratch_backbone_passes_and_is_left_as_it_was():
    from wmbench.testing import tiny_shape
    from wmbench_scratch import build

    backbone = build(None, tiny_shape()).train()
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    state = torch.random.get_rng_state()
    probe(backbone)
    assert backbone.training and torch.equal(torch.random.get_rng_state(), state)
    assert all(torch.equal(v, before[k]) for k, v in backbone.state_dict().items())


@pytest.mark.parametrize(
    ("cls", "words"),
    [
        (_Forgets, "cache: chunks of [1, 4, 3] differ from the full forward"),
        (_Stuck, "cache: holds 0 tokens after 1 were fed"),
        (_BatchNormOverTime, "causality in train mode"),
    ],
)
def test_probe_names_the_property(cls, words):
    backbone = _backbone(cls)
    with pytest.raises(ProbeFailure, match=words.replace("[", r"\[").replace("]", r"\]")):
        probe(backbone)
    with pytest.raises(WmbenchError, match="backbone 'x' from package 'pkg' failed the build-time probe: ") as info:
        probe_backbone(backbone, "x", "pkg")
    assert "\n" not in str(info.value)


def test_batchnorm_running_statistics_survive_the_probe():
    backbone = _backbone(_BatchNormOverTime).eval()
    with pytest.raises(ProbeFailure):
        probe(backbone)
    assert torch.equal(backbone.norm.running_mean, torch.zeros(8)) and not backbone.training


@pytest.mark.slow
def test_run_refuses_a_third_party_backbone_that_sees_the_future(tmp_path):
    site = add_package(tmp_path / "site", "wmbench-peek", "0.3", {"peek": "wmbench_peek"}, {"wmbench_peek": PEEKING})
    args = ("run", "-p", "smoke", "-g", "Pong", "-b", "peek", *[a for o in TINY for a in ("--set", o)])
    done = wmbench(*args, "--out", str(tmp_path / "refused"), site=site)
    assert done.returncode == 2, done.stderr
    line = done.stderr.strip()
    assert "\n" not in line and line.startswith("wmbench: error: backbone 'peek' from package 'wmbench-peek'"), line
    assert "causality in eval mode" in line
    assert not (tmp_path / "refused" / "summary.json").exists()

    done = wmbench(*args, "--set", "probe=false", "--out", str(tmp_path / "skipped"), site=site)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "skipped" / "summary.json").read_text())["probe"] is False
