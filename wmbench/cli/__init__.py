"""The ``wmbench`` command line (nothing outside this package imports it)."""

from wmbench.cli.app import cli, main

__all__ = ["cli", "main"]
