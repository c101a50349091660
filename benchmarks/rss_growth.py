"""Memory over a long run: the smoke preset trained for 60 epochs (collection stops after epoch 8, as the preset
says), the resident set size recorded after every epoch through a run observer (the public plugin path), and the
growth from epoch 10 to the last epoch. A leak shows as a steady climb once the replay store has stopped growing.

    OMP_NUM_THREADS=1 python benchmarks/rss_growth.py [--epochs 60] [--game Pong] [--csv results/reliability/rss.csv]

The run folder goes to a temporary folder, deleted afterwards.
"""

from __future__ import annotations

import argparse
import csv
import platform
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from wmbench import config as cfg
from wmbench.engine.trainer import Trainer
from wmbench.hookspecs import hookimpl
from wmbench.plugins import PluginInfo, Registry, plugin_manager
from wmbench.rundir import RunDir


def rss_mb() -> float:
    """The process's resident set size now (VmRSS), in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class RssRecorder:
    """A run observer: after each epoch's metrics line, the RSS and the bytes the replay store holds."""

    def __init__(self):
        self.rows: list[dict] = []
        self.trainer: Trainer | None = None

    @hookimpl
    def wmbench_metrics_logged(self, record):
        store = self.trainer.store if self.trainer else None
        replay = sum(t.nbytes for e in store.episodes for t in vars(e).values()) / 2**20 if store else float("nan")
        row = {"epoch": record["epoch"], "env_steps": record["env_steps"], "rss_mb": round(rss_mb(), 1)}
        self.rows.append({**row, "replay_mb": round(replay, 2), "time_s": round(time.perf_counter(), 1)})
        print(f"epoch {row['epoch']:>3}  rss {row['rss_mb']:8.1f} MiB  replay {replay:6.2f} MiB", flush=True)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        return next(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name"))
    except (OSError, StopIteration):
        return platform.processor() or "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--from-epoch", type=int, default=10, help="Growth is measured from this epoch to the last.")
    parser.add_argument("--game", default="Pong")
    parser.add_argument("--csv", type=Path, help="Write the per-epoch rows here.")
    args = parser.parse_args()

    torch.set_num_threads(1)
    recorder = RssRecorder()
    manager, plugins = plugin_manager()
    manager.register(recorder, name="rss")
    plugins["rss"] = PluginInfo("rss", "benchmarks", "0")
    reg = Registry(manager, plugins).check()
    overrides = [f"training.epochs={args.epochs}", 'loggers=["rss"]']
    config = cfg.resolve("smoke", args.game, 0, "vqvae", "scratch", overrides, reg)
    with tempfile.TemporaryDirectory() as folder:
        run = RunDir(Path(folder) / "run")
        recorder.trainer = trainer = Trainer(config, run, reg, log=lambda line: None)
        run.create(cfg.to_dict(config))
        start = rss_mb()
        trainer.fit()

    rows = recorder.rows
    by_epoch = {r["epoch"]: r for r in rows}
    first, last = by_epoch[args.from_epoch], rows[-1]
    later = [r for r in rows if r["epoch"] >= args.from_epoch]
    slope = np.polyfit([r["epoch"] for r in later], [r["rss_mb"] for r in later], 1)[0]
    growth = last["rss_mb"] - first["rss_mb"]
    print(f"\nCPU: {cpu_model()}; 1 thread; smoke preset, {args.game}, {args.epochs} epochs")
    print(f"RSS before training {start:.1f} MiB; at epoch {args.from_epoch} {first['rss_mb']:.1f} MiB; "
          f"at epoch {last['epoch']} {last['rss_mb']:.1f} MiB")  # fmt: skip
    print(f"growth from epoch {args.from_epoch} to {last['epoch']}: {growth:+.1f} MiB "
          f"({100 * growth / first['rss_mb']:+.1f}%), least-squares slope {slope:+.3f} MiB/epoch; "
          f"replay store {first['replay_mb']:.2f} -> {last['replay_mb']:.2f} MiB")  # fmt: skip
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)


if __name__ == "__main__":
    main()
