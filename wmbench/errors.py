"""The one error type the CLI turns into a single line and exit code 2."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable

DEBUG_ENV = "WMBENCH_DEBUG"
"""Set (``WMBENCH_DEBUG=1``, or ``wmbench --debug``): one-line errors and plugin problems come with their traceback."""


class WmbenchError(Exception):
    """A problem with the user's input: shown as one line, never as a traceback."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the closest choice, or '' when nothing is close."""
    choices = list(choices)
    lowered = {c.lower(): c for c in choices}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def unknown(kind: str, name: str, choices: Iterable[str]) -> WmbenchError:
    """The error for an unknown name of some kind, with a suggestion and the choices."""
    choices = sorted(choices)
    hint = did_you_mean(name, choices)
    shown = ", ".join(choices[:30]) + (", ..." if len(choices) > 30 else "")
    return WmbenchError(f"unknown {kind} {name!r}{hint}; choose from: {shown}")


def debugging() -> bool:
    """Whether errors should come with their traceback (:data:`DEBUG_ENV`)."""
    return os.environ.get(DEBUG_ENV, "") not in ("", "0")


def os_error_line(exc: OSError) -> str:
    """An I/O error as one line: ``PATH: No space left on device``."""
    what = exc.strerror or str(exc)
    return f"{exc.filename}: {what}" if exc.filename else what
