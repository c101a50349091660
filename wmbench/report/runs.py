"""The run folders a report reads: which folders, their checked summaries and metrics, and how setups are named.

The folder layout and the summary schema are :mod:`wmbench.rundir`'s; this module adds what a report needs on top:
that the game is known to an installed env suite, the ``wmbench bench`` CSVs found beside the runs, and a label per
setup (:func:`method_labels`).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench.bench.results import COLUMNS
from wmbench.config import flatten
from wmbench.errors import WmbenchError
from wmbench.plugins import registry
from wmbench.rundir import RunDir

#: Config keys that never tell two setups apart (they vary within one setup, or name it already).
NOT_SETUP = {"game", "seed", "device", "bf16", "preset", "tokenizer.name", "backbone.name"}


@dataclass(frozen=True)
class Run:
    """One finished run: its folder, its summary.json, its metrics.jsonl lines and its config.json."""

    path: Path
    summary: dict[str, Any]
    metrics: list[dict[str, Any]]
    config: dict[str, Any]

    @property
    def track(self) -> str:
        return self.summary.get("track", "agent")


def find_bench_csvs(paths: Sequence[Path]) -> list[Path]:
    """The ``throughput.csv`` files of ``wmbench bench`` below the paths (a report's own throughput.csv, beside
    its report.md, is not one)."""
    found = [
        c
        for p in map(Path, paths)
        if p.is_dir()
        for c in p.rglob("throughput.csv")
        if not (c.parent / "report.md").exists()
    ]
    return sorted({c.resolve() for c in found})


def load_run(folder: Path) -> Run:
    """Read and check one run folder; a missing file or field, or an unknown game, is a WmbenchError naming it."""
    run = RunDir(folder)
    summary = run.read_summary()
    if summary["game"] not in registry().games:
        raise WmbenchError(
            f"run folder {folder}: summary.json field 'game' is {summary['game']!r}, not an Atari 100k game "
            "nor a game of another installed env suite (wmbench list games)"
        )
    return Run(Path(folder), summary, run.read_metrics(strict=True), run.read_config() if run.config.is_file() else {})


def load_runs(folders: Sequence[Path]) -> tuple[list[Run], list[str]]:
    """Every run that reads whole, and the one-line problem of each folder that does not (a torn metrics line, a
    corrupt config.json, a summary of another schema...), which is left out."""
    runs, problems = [], []
    for folder in folders:
        try:
            runs.append(load_run(Path(folder)))
        except WmbenchError as exc:
            problems.append(str(exc))
    return runs, problems


def read_bench_csvs(paths: Sequence[Path]):
    """The rows of every throughput CSV of ``wmbench bench``, with a ``source`` column; None when there are none."""
    import pandas as pd

    frames = []
    for path in map(Path, paths):
        try:
            frame = pd.read_csv(path, keep_default_na=False)
        except (OSError, ValueError) as exc:
            raise WmbenchError(f"throughput CSV {path} cannot be read ({exc})") from exc
        if list(frame.columns) != list(COLUMNS) or frame.empty:
            raise WmbenchError(
                f"throughput CSV {path} is not a wmbench bench CSV with rows (columns {list(frame.columns)})"
            )
        frames.append(frame.assign(source=str(path)))
    return pd.concat(frames, ignore_index=True) if frames else None


def method_labels(runs: Sequence[Run]) -> list[str]:
    """The backbone of each run, with ``/tokenizer`` and ``@preset`` added when the runs mix several, and
    ``[option=value, ...]`` for the config options that differ between runs of the same label (the LLM
    backbone pretrained and its random-weight control, say; a key that only some configs have is a change of
    wmbench version, not of setup, and is left out)."""
    tokenizers = {r.summary.get("tokenizer") for r in runs}
    presets = {r.summary.get("preset") for r in runs}
    labels = []
    for r in runs:
        label = r.summary["backbone"]
        if len(tokenizers) > 1:
            label += f"/{r.summary.get('tokenizer')}"
        if len(presets) > 1:
            label += f"@{r.summary.get('preset')}"
        labels.append(label)
    flat = [flatten(r.config) for r in runs]
    for label in set(labels):
        members = [i for i, lab in enumerate(labels) if lab == label]
        keys = sorted(set.intersection(*(set(flat[i]) for i in members)) - NOT_SETUP)
        differing = [k for k in keys if len({json.dumps(flat[i].get(k)) for i in members}) > 1]
        for i in members:
            if differing:
                labels[i] = (
                    label + "[" + ", ".join(f"{k.split('.')[-1]}={_option(flat[i].get(k))}" for k in differing) + "]"
                )
    return labels


def _option(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else "–" if value is None else str(value)
