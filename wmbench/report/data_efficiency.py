"""The world-model track in a report: held-out figures against frames seen, per backbone setup and game.

Each world-model run's summary.json holds one row per budget (``per_budget``: ``env_steps``, the frames seen,
and ``heldout/...`` figures, see :mod:`wmbench.tracks.world_model`), its ``target_loss`` and the
``frames_to_target`` it reached it at. Here they become a long table, a per-budget table (mean ± std over
seeds), a frames-to-target table and curves.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from wmbench import markdown as md
from wmbench.rundir import OBS_LOSS

#: Figures shown in the Markdown table (all ``heldout/*`` figures go to the CSV), with short headings.
SHOWN = {
    OBS_LOSS: "next-token loss",
    "heldout/accuracy/rewards": "reward acc.",
    "heldout/accuracy/nonzero_rewards": "acc. on rewards ≠ 0",
    "heldout/accuracy/ends": "end acc.",
    "heldout/reconstruction_mse": "recon. MSE",
}


def long_table(runs: Sequence[Any], labels: Sequence[str]):
    """One row per (run, budget): method, game, seed, env_steps (frames seen) and every held-out figure."""
    import pandas as pd

    rows = []
    for label, r in zip(labels, runs):
        for row in r.summary["per_budget"]:
            figures = {k: float(v) for k, v in row.items() if k.startswith("heldout/") and isinstance(v, (int, float))}
            rows.append(
                {
                    "method": label,
                    "game": r.summary["game"],
                    "seed": r.summary["seed"],
                    "env_steps": row["env_steps"],
                    **figures,
                }
            )
    return pd.DataFrame(rows)


def figure_names(long) -> list[str]:
    """The held-out figures present, losses first, then accuracies, rollout errors by k, reconstruction."""
    names = [c for c in long.columns if c.startswith("heldout/")]

    def order(c: str) -> tuple:
        k = int(c.rsplit("@", 1)[1]) if "@" in c else 0
        return (not c.startswith("heldout/loss"), not c.startswith("heldout/accuracy"), "reconstruction" in c, k, c)

    return sorted(names, key=order)


def budget_table(long):
    """Per method, game and budget: mean, std and count over seeds of every held-out figure."""
    names = figure_names(long)
    grouped = long.groupby(["method", "game", "env_steps"], sort=False)
    table = grouped[names].agg(["mean", "std"])
    table.columns = [f"{name} {stat}" for name, stat in table.columns]
    table.insert(0, "seeds", grouped.size())
    return table.reset_index().sort_values(["game", "env_steps", "method"], kind="stable").reset_index(drop=True)


def budget_markdown(table, long):
    """The per-budget table for reading: ``mean ± std`` of the main figures, PSNR of every rollout length."""
    import pandas as pd

    rollouts = [(c, f"{heading}@{c.rsplit('@', 1)[1]}") for prefix, heading in (("heldout/rollout_psnr@", "PSNR dB"),
                ("heldout/rollout_token_accuracy@", "token acc.")) for c in figure_names(long) if c.startswith(prefix)]  # fmt: skip
    shown = pd.DataFrame(
        {"game": table["game"], "frames": table["env_steps"], "method": table["method"], "seeds": table["seeds"]}
    )
    for name, heading in [*SHOWN.items(), *rollouts]:
        if f"{name} mean" in table:
            shown[heading] = [md.estimate(m, s) for m, s in zip(table[f"{name} mean"], table[f"{name} std"])]
    return shown


def target_table(runs: Sequence[Any], labels: Sequence[str]):
    """Per method and game: how many seeds reached the target loss, and the frames they needed (mean ± std)."""
    import pandas as pd

    rows = []
    for label, r in zip(labels, runs):
        s = r.summary
        final = s["per_budget"][-1]
        rows.append({"method": label, "game": s["game"], "seed": s["seed"], "target_loss": float(s["target_loss"]),
                     "frames_to_target": s.get("frames_to_target"), "final_frames": final["env_steps"], "final_loss": float(final[OBS_LOSS])})  # fmt: skip
    df = pd.DataFrame(rows)
    df["frames_to_target"] = pd.to_numeric(df["frames_to_target"], errors="coerce")
    grouped = df.groupby(["method", "game", "target_loss"], sort=False)
    table = grouped.agg(
        seeds=("seed", "count"),
        reached=("frames_to_target", "count"),
        frames_to_target_mean=("frames_to_target", "mean"),
        frames_to_target_std=("frames_to_target", "std"),
        final_frames=("final_frames", "max"),
        final_loss_mean=("final_loss", "mean"),
        final_loss_std=("final_loss", "std"),
    ).reset_index()
    return table.sort_values(["game", "method"], kind="stable").reset_index(drop=True)


def target_markdown(table):
    import pandas as pd

    return pd.DataFrame({
        "game": table["game"],
        "method": table["method"],
        "target loss": table["target_loss"],
        "reached": [f"{r}/{n}" for r, n in zip(table["reached"], table["seeds"])],
        "frames to target": [md.estimate(m, s) if r else "not reached" for m, s, r in
                             zip(table["frames_to_target_mean"], table["frames_to_target_std"], table["reached"])],
        "final loss": [md.estimate(m, s) for m, s in zip(table["final_loss_mean"], table["final_loss_std"])],
    })  # fmt: skip


def curve_long(long, name: str):
    """The long table of one figure in the shape of :func:`wmbench.report.agent.curves`."""
    return long[["method", "game", "seed", "env_steps", name]].rename(columns={name: "value"}).dropna()
