"""Table and number formats shared by the report and the bench: GitHub Markdown tables, scores, intervals."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def table(df) -> str:
    """A GitHub Markdown table of a DataFrame (floats to 3 significant digits, NaN as a dash)."""

    def cell(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "–"
        if isinstance(v, (float, np.floating)):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"  # from 100 up the same digits, never 1e+03
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "| " + " | ".join("---" for _ in df.columns) + " |"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *body]) + "\n"


def score(x: float | None) -> str:
    """A score or return: one decimal from 100 up (with thousands separators), two below; NaN as a dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:,.1f}" if abs(x) >= 100 else f"{x:.2f}"


def mean_std(mean: float, std: float, n: int) -> str:
    """``mean ± std (n=...)`` over seeds; a dash for none, ``(n=1)`` without a spread."""
    if not n:
        return "–"
    if n < 2 or math.isnan(std):
        return f"{score(mean)} (n=1)"
    return f"{score(mean)} ± {score(std)} (n={n})"


def estimate(mean: float | None, std: float | None) -> str:
    """A measured figure to 4 significant digits, ``± std`` to 2 when there is one; NaN as a dash."""
    if mean is None or math.isnan(mean):
        return "–"
    text = f"{mean:.4g}"
    return text if std is None or math.isnan(std) else f"{text} ± {std:.2g}"


def interval(point: float, low: float, high: float) -> str:
    """``point [low, high]`` to 3 decimals, the point alone when there is no interval."""
    return f"{point:.3f}" if math.isnan(low) else f"{point:.3f} [{low:.3f}, {high:.3f}]"
