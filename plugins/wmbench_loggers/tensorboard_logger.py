"""wmbench plugin ``tensorboard``: each epoch's metrics as TensorBoard scalars (step = epoch) and the final
summary, in ``<run>/tensorboard/``. A resumed run purges the events of the epochs it redoes."""

from __future__ import annotations

import json
from pathlib import Path

from wmbench.hookspecs import hookimpl
from wmbench_loggers import numbers

_writers: dict[Path, object] = {}
"""The open SummaryWriter of each run in progress, by run folder."""


@hookimpl
def wmbench_run_started(run):
    from torch.utils.tensorboard import SummaryWriter

    done = run.read_metrics()
    last = done[-1]["epoch"] if done else 0
    _writers[run.path] = SummaryWriter(str(run.path / "tensorboard"), purge_step=last + 1 if last else None)


@hookimpl
def wmbench_metrics_logged(run, record):
    writer = _writers[run.path]
    for key, value in numbers(record).items():
        if key != "epoch":
            writer.add_scalar(key, value, global_step=record["epoch"])
    writer.flush()


@hookimpl
def wmbench_run_finished(run, summary):
    writer = _writers.pop(run.path)
    if summary is not None:
        for key, value in numbers(summary).items():
            writer.add_scalar(f"summary/{key}", value, global_step=summary["epochs"])
        writer.add_text("summary", f"```json\n{json.dumps(summary, indent=2)}\n```", global_step=summary["epochs"])
    writer.close()
