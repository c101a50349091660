"""wmbench plugin ``wandb``: each epoch's metrics logged to Weights & Biases (step = epoch), the config, and the
final summary. Files go under ``<run>/wandb/``; ``WANDB_MODE=offline`` works without the network (upload later
with ``wandb sync``), ``WANDB_PROJECT`` names the project (default ``wmbench``). A resumed run continues the
same W&B run (its id is kept in ``<run>/wandb/wmbench-run-id``)."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from wmbench.hookspecs import hookimpl
from wmbench_loggers import numbers

_runs: dict[Path, object] = {}
"""The W&B run of each wmbench run in progress, by run folder."""


@hookimpl
def wmbench_run_started(run, config):
    import wandb

    from wmbench import config as cfg
    from wmbench.files import write_bytes

    id_file = run.path / "wandb" / "wmbench-run-id"
    if not id_file.exists():
        write_bytes(id_file, secrets.token_hex(6).encode())
    _runs[run.path] = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "wmbench"),
        dir=str(run.path),
        id=id_file.read_text().strip(),
        name=f"{config.game}/{config.backbone.name}/{config.seed}",
        config=cfg.to_dict(config),
        resume="allow",
        reinit="create_new",
        settings=wandb.Settings(silent=True, console="off", disable_git=True, x_disable_stats=True),
    )


@hookimpl
def wmbench_metrics_logged(run, record):
    _runs[run.path].log({k: v for k, v in numbers(record).items() if k != "epoch"}, step=record["epoch"])


@hookimpl
def wmbench_run_finished(run, summary):
    import wandb

    wandb_run = _runs.pop(run.path)
    if summary is not None:
        wandb_run.summary.update(numbers(summary))
    wandb_run.finish()
    wandb.teardown()  # finish() returns before W&B's service has written the run's file; its shutdown waits for it
