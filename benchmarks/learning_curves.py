"""Learning curves of finished or running runs: test return (``eval/return``) and training-episode return
(``collect/return``) per epoch, per run folder, as a CSV and a PNG, with the game's random (and optimal or human)
reference returns drawn as lines.

    .venv/bin/python benchmarks/learning_curves.py RUN [RUN ...] --out results/learning/catcher
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

from wmbench.plugins import registry

KEYS = ("eval/return", "collect/return")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, nargs="+")
    parser.add_argument("--out", type=Path, required=True, help="path stem: writes STEM.csv and STEM.png")
    args = parser.parse_args()
    rows = []
    for folder in args.runs:
        config = json.loads((folder / "config.json").read_text())
        for line in (folder / "metrics.jsonl").read_text().splitlines():
            m = json.loads(line)
            for key in KEYS:
                if key in m:
                    rows.append(
                        {
                            "run": folder.name,
                            "game": config["game"],
                            "seed": config["seed"],
                            "epoch": m["epoch"],
                            "env_steps": m["env_steps"],
                            "metric": key,
                            "value": m[key],
                        }
                    )
        summary = folder / "summary.json"
        if summary.exists():
            s = json.loads(summary.read_text())
            rows.append(
                {
                    "run": folder.name,
                    "game": s["game"],
                    "seed": s["seed"],
                    "epoch": s["epochs"],
                    "env_steps": s["env_steps"],
                    "metric": "final/return",
                    "value": s["eval_return_mean"],
                }
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    game = registry().game(rows[0]["game"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, key in zip(axes, KEYS):
        for run in dict.fromkeys(r["run"] for r in rows):
            points = [(r["env_steps"], r["value"]) for r in rows if r["run"] == run and r["metric"] == key]
            final = [(r["env_steps"], r["value"]) for r in rows if r["run"] == run and r["metric"] == "final/return"]
            line = ax.plot(*zip(*points), marker=".", label=run)[0] if points else None
            if final and key == "eval/return":
                ax.plot(*zip(*final), marker="*", markersize=12, color=line.get_color() if line else None)
        scores = game.suite.reference_scores(game.name) if game.suite.reference_scores else None
        if scores:
            for value, name in zip(scores, ("random", "optimal" if game.suite.name == "toy" else "human")):
                ax.axhline(value, color="grey", linestyle="--", linewidth=1)
                ax.annotate(name, (0, value), fontsize=8, color="grey", va="bottom")
        what = "test episodes (star: final evaluation)" if key == "eval/return" else "training episodes"
        ax.set_title(f"{game.name}: {what}")
        ax.set_xlabel("env steps")
        ax.set_ylabel("return")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out.with_suffix(".png"), dpi=100)


if __name__ == "__main__":
    main()
