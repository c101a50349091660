"""The kit catches the two defects of the earlier LLM fork, a non-causal mask and a cache that forgets, names a
cache left in another dtype than its module, and catches a declared mask capability that ignores the mask or
positions or does not drop."""

import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from wmbench.testing import check_backbone, tiny_shape
from wmbench_scratch import transformer as scratch


class Bidirectional(scratch.ScratchTransformer):
    """Attention with the causal mask zeroed, as the fork patched it."""

    def forward(self, embeds, cache=None):
        original = F.scaled_dot_product_attention

        def no_mask(q, k, v, attn_mask=None, is_causal=False, **kw):
            return original(q, k, v, **kw)

        scratch.F.scaled_dot_product_attention = no_mask
        try:
            return super().forward(embeds, cache)
        finally:
            scratch.F.scaled_dot_product_attention = original


class Forgetful(scratch.ScratchTransformer):
    """A cache that only advances a counter: the past is noise, as in the fork's imagination."""

    def forward(self, embeds, cache=None):
        if cache is not None:
            for keys, values in zip(cache.keys, cache.values):
                keys.normal_()
                values.normal_()
        return super().forward(embeds, cache)


class Float32Cache(scratch.ScratchTransformer):
    """A cache allocated in float32 whatever the module's dtype."""

    def new_cache(self, batch_size):
        cache = super().new_cache(batch_size)
        return scratch.KVCache([k.float() for k in cache.keys], [v.float() for v in cache.values])


class Maskless(scratch.ScratchTransformer):
    """Declares the capability but attends causally whatever mask it is given."""

    def forward(self, embeds, cache=None, *, mask=None, positions=None):
        return super().forward(embeds, cache, positions=positions)


class Unmoved(scratch.ScratchTransformer):
    """Declares the capability but ignores the positions it is given."""

    def forward(self, embeds, cache=None, *, mask=None, positions=None):
        return super().forward(embeds, cache, mask=mask)


class Undroppable(scratch.ScratchTransformer):
    """A cache whose drop() forgets nothing."""

    def new_cache(self, batch_size):
        cache = super().new_cache(batch_size)
        cache.drop = lambda n: None
        return cache


class Peeking(scratch.ScratchTransformer):
    """A fixed-shape cache attended over whole without its mask: empty and stale entries leak in."""

    def new_fixed_cache(self, batch_size, dtype=None):
        cache = super().new_fixed_cache(batch_size, dtype)
        cache.sees = lambda positions: torch.ones(len(positions), self.max_tokens, dtype=torch.bool)
        return cache


class Uncleared(scratch.ScratchTransformer):
    """A fixed-shape cache whose clear() forgets nothing."""

    def new_fixed_cache(self, batch_size, dtype=None):
        cache = super().new_fixed_cache(batch_size, dtype)
        cache.clear = lambda: None
        return cache


def _make(cls):
    def make():
        torch.manual_seed(0)
        return cls(tiny_shape())

    return make


def test_kit_rejects_a_bidirectional_backbone():
    with pytest.raises(AssertionError, match="causality"):
        check_backbone(_make(Bidirectional))


def test_kit_rejects_a_fake_cache():
    with pytest.raises(AssertionError, match="cache"):
        check_backbone(_make(Forgetful))


def test_kit_names_a_cache_left_in_another_dtype():
    with pytest.raises(
        AssertionError, match=r"cache after .to\(torch.bfloat16\): new_cache\(\) must follow the module"
    ):
        check_backbone(_make(Float32Cache))


@pytest.mark.parametrize(
    ("cls", "property"),
    [(Maskless, "mask: tokens that see no inserted token"), (Unmoved, "mask: "), (Undroppable, "drop: ")],
)
def test_kit_rejects_a_faked_mask_capability(cls, property):
    with pytest.raises(AssertionError, match=property):
        check_backbone(_make(cls), length=12)  # room for inserted tokens at positions of their own (Unmoved's)
    with pytest.raises(AssertionError, match="expected takes_mask=False"):
        check_backbone(_make(scratch.ScratchTransformer), masked=False)


@pytest.mark.parametrize(
    ("cls", "property"), [(Peeking, "fixed-shape cache: chunks"), (Uncleared, "tokens after clear")]
)
def test_kit_rejects_a_faked_fixed_shape_cache(cls, property):
    with pytest.raises(AssertionError, match=property):
        check_backbone(_make(cls))
    with pytest.raises(AssertionError, match="expected fixed_shape=False"):
        check_backbone(_make(scratch.ScratchTransformer), fixed=False)


def test_importing_wmbench_and_its_plugins_stays_light():
    code = (
        "import sys, wmbench, wmbench.cli, wmbench.config; from wmbench.plugins import registry; registry(); "
        "heavy = [m for m in ('transformers', 'timm', 'bitsandbytes', 'peft', 'pandas', 'seaborn') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
