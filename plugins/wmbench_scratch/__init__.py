"""Built-in plugin ``scratch``: the IRIS GPT transformer, trained from scratch."""

from __future__ import annotations

from wmbench.hookspecs import hookimpl


def build(options, shape):
    from wmbench_scratch.transformer import ScratchTransformer

    return ScratchTransformer(shape)


@hookimpl
def wmbench_register_backbones(register):
    register("scratch", build, summary="IRIS GPT (pre-LayerNorm, learned positions) trained from scratch")
