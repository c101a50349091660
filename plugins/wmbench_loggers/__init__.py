"""Built-in logger plugins, off by default: ``tensorboard`` and ``wandb`` (``--set loggers=["tensorboard"]``).

Each is a plugin of its own (entry points ``tensorboard`` and ``wandb``) built on the run-observer hooks; they
mirror metrics.jsonl, which stays the source of truth. Install their libraries with ``pip install 'wmbench[loggers]'``.
"""


def numbers(record: dict) -> dict[str, float]:
    """The numeric entries of a metrics line or summary (what becomes a scalar)."""
    return {k: v for k, v in record.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
