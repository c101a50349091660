"""The gru plugin passes the wmbench conformance kit."""

import pytest
import torch

from wmbench.testing import check_backbone, tiny_shape
from wmbench_gru import GRUOptions, build


@pytest.mark.parametrize("layers", [1, 2])
def test_gru_conforms(layers):
    def make():
        torch.manual_seed(0)  # the kit needs the same weights on every call
        return build(GRUOptions(hidden_layers=layers), tiny_shape())

    check_backbone(make, trainable=True)


def test_registers_through_the_hook():
    import wmbench_gru

    seen = {}
    wmbench_gru.wmbench_register_backbones(lambda name, build, **kw: seen.update({name: (build, kw)}))
    build_fn, kw = seen["gru"]
    assert kw["options"] is GRUOptions and build_fn is build
