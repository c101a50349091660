"""wmbench plugin ``gru``: a multi-layer GRU backbone whose cache is its recurrent state."""

from dataclasses import dataclass

from wmbench.hookspecs import hookimpl


@dataclass(frozen=True)
class GRUOptions:
    """Options of the ``gru`` backbone (``--set backbone.hidden_layers=3``)."""

    hidden_layers: int = 2
    """Stacked GRU layers."""


def build(options, shape):
    from wmbench_gru.backbone import GRUBackbone  # torch is imported only when the backbone is chosen

    return GRUBackbone(shape.embed_dim, options.hidden_layers, shape.max_tokens, shape.dropout)


@hookimpl
def wmbench_register_backbones(register):
    register("gru", build, options=GRUOptions, summary="multi-layer GRU; its cache is the recurrent state")
