"""The logger plugins: off by default, switched on by the run's ``loggers``; metrics.jsonl stays the truth."""

from __future__ import annotations

import json

import pytest
from plugin_site import TINY

from wmbench import config as cfg
from wmbench.rundir import RunDir


def _run(registry, path, loggers):
    from wmbench.engine.trainer import Trainer

    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [*TINY, f"loggers={json.dumps(loggers)}"], registry)
    run = RunDir(path)
    trainer = Trainer(config, run, registry, log=lambda line: None)
    run.create(cfg.to_dict(config))
    return run, trainer.fit()


def test_loggers_are_off_by_default(registry, smoke_config):
    assert smoke_config.loggers == () and cfg.resolve("iris", "Pong", 0, "vqvae", "scratch", [], registry).loggers == ()


def test_tensorboard_scalars_equal_metrics_jsonl(registry, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run, summary = _run(registry, tmp_path / "run", ["tensorboard"])
    assert json.loads(run.config.read_text())["loggers"] == ["tensorboard"]  # kept for --resume
    events = EventAccumulator(str(run.path / "tensorboard")).Reload()
    records = run.read_metrics()
    expected = {k for r in records for k in r if k not in ("epoch", "time")}
    assert expected and expected <= set(events.Tags()["scalars"])
    for key in expected:
        logged = {e.step: e.value for e in events.Scalars(key)}
        assert logged == pytest.approx({r["epoch"]: r[key] for r in records if key in r}, rel=1e-6), key
    (final,) = events.Scalars("summary/eval_return_mean")
    assert (final.step, final.value) == (2, pytest.approx(summary["eval_return_mean"]))


@pytest.mark.slow
def test_wandb_offline_writes_its_run_under_the_run_folder(registry, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_PROJECT", "wmbench-tests")
    run, _ = _run(registry, tmp_path / "run", ["wandb"])
    run_id = (run.path / "wandb" / "wmbench-run-id").read_text()
    (folder,) = (run.path / "wandb").glob(f"offline-run-*-{run_id}")
    log = (folder / f"run-{run_id}.wandb").read_bytes()  # W&B's record log: values are stored as JSON text
    for record in run.read_metrics():
        for key, value in record.items():
            if key not in ("epoch", "time"):
                assert key.encode() in log and json.dumps(value).encode() in log, key
    summary = json.loads(run.summary.read_text())
    assert b"eval_return_mean" in log and json.dumps(summary["eval_return_mean"]).encode() in log
