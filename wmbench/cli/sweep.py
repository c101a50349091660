"""``wmbench sweep``: every cell of a benchmark file (the runner is :mod:`wmbench.sweep`)."""

from wmbench.sweep import sweep

__all__ = ["sweep"]
