"""The scratch transformer passes the conformance kit and matches the reference's parameter count."""

import torch

from wmbench.engine.backbone import BackboneShape
from wmbench.testing import check_backbone, tiny_shape
from wmbench_scratch.transformer import ScratchTransformer


def test_scratch_conforms():
    def make():
        torch.manual_seed(1)
        return ScratchTransformer(tiny_shape())

    check_backbone(make, trainable=True, masked=True, fixed=True)


def test_scratch_parameter_count_at_paper_size():
    shape = BackboneShape(embed_dim=256, num_layers=10, num_heads=4, dropout=0.1, max_blocks=20, tokens_per_block=17)
    model = ScratchTransformer(shape)
    # Reference: 10 blocks of 789,760, ln_f 512, and the 340 x 256 position table the reference keeps in the world model.
    assert sum(p.numel() for p in model.parameters()) == 10 * 789_760 + 512 + 340 * 256
