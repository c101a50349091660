"""The bench's result files: the long CSV (one row per measure, the setup in columns) and its Markdown tables."""

from __future__ import annotations

import csv
import io
import time
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench import markdown as md
from wmbench.bench.measure import Row
from wmbench.errors import WmbenchError

COLUMNS = (
    "time", "wmbench_version", "torch_version", "device", "threads", "dtype", "game", "preset", "backbone",
    "tokenizer", "overrides", "batch", "measure", "unit", "median", "p25", "p75", "repeats", "ratio_to_ale",
)  # fmt: skip


def records(config, batch: int, overrides: list[str], rows: list[Row]) -> list[dict[str, Any]]:
    """CSV rows: the setup, then each measure's median, quartiles and ratio to ALE."""
    import torch

    import wmbench
    from wmbench.engine.trainer import resolve_device

    ale = next(r for r in rows if r.measure == "ale_steps_per_s").quantiles()[0]
    setup = {
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "wmbench_version": wmbench.__version__,
        "torch_version": torch.__version__,
        "device": str(resolve_device(config.device)),
        "threads": torch.get_num_threads(),
        "dtype": "bf16" if config.bf16 else "fp32",
        "game": config.game,
        "preset": config.preset,
        "backbone": config.backbone.name,
        "tokenizer": config.tokenizer.name,
        "overrides": " ".join(overrides),
        "batch": batch,
    }
    out = []
    for row in rows:
        median, p25, p75 = row.quantiles()
        ratio = round(median * row.frames / ale, 4) if row.frames else ""
        out.append({**setup, "measure": row.measure, "unit": row.unit, "median": _round(median), "p25": _round(p25),
                    "p75": _round(p75), "repeats": len(row.times), "ratio_to_ale": ratio})  # fmt: skip
    return out


def _round(x: float) -> float:
    return float(f"{x:.4g}")


def append_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Append rows to a bench CSV, rewriting it whole and atomically; a CSV of other columns is refused."""
    text = ""
    if path.exists():
        text = path.read_text()
        header = next(csv.reader(io.StringIO(text)), None)
        if header != list(COLUMNS):
            raise WmbenchError(f"{path} is not a wmbench bench CSV (its columns are {header}); give another --csv")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\n")
    if not text:
        writer.writeheader()
    writer.writerows(rows)
    files.write_bytes(path, (text + buffer.getvalue()).encode())


def markdown_table(path: Path) -> str:
    """The latest figures of every setup in a bench CSV: one row per setup, the main measures in columns."""
    import pandas as pd

    df = pd.read_csv(path, keep_default_na=False, dtype={"overrides": str})
    setup = ["device", "threads", "dtype", "game", "preset", "backbone", "tokenizer", "overrides", "batch"]
    df = df.drop_duplicates([*setup, "measure"], keep="last")  # rows are appended: the last is the latest
    shown = {
        "ale_steps_per_s": "ALE steps/s",
        "imagine_frames_per_s": "imagined frames/s",
        "imagine_frames_per_s_no_decode": "imagined frames/s, no decoding",
        "context_growth": "context growth (ms/frame full / short)",
        "wm_train_tokens_per_s": "WM train tokens/s",
        "tokenizer_encode_frames_per_s": "encode frames/s",
        "tokenizer_decode_frames_per_s": "decode frames/s",
        "actor_critic_updates_per_s": "AC updates/s",
        "peak_memory_mb": "peak MB",
        "wm_loss": "WM loss",
        "projected_hours": "projected run (h)",
    }
    order = pd.MultiIndex.from_frame(df[setup].drop_duplicates())  # setups in the order they were measured
    wide = df.pivot_table(index=setup, columns="measure", values="median", aggfunc="last").reindex(order)
    table = wide.reindex(columns=list(shown)).rename(columns=shown)
    ratios = df[df["measure"] == "imagine_frames_per_s"].set_index(setup)["ratio_to_ale"].astype(float)
    table.insert(0, "imagined / ALE", ratios.reindex(order))
    table = table.reset_index()
    return md.table(table)


def suite_page(suite: Path, setups: list, csv_path: Path) -> str:
    """The Markdown page beside a suite's CSV: its table, and the suite's setups (its cells, with backbone,
    tokenizer, preset, overrides and batch) that have no rows yet."""
    import pandas as pd

    df = pd.read_csv(csv_path, keep_default_na=False)
    measured = set(zip(df["backbone"], df["tokenizer"], df["preset"], df["overrides"].astype(str), df["batch"]))
    missing = [s for s in setups if (s.backbone, s.tokenizer, s.preset, " ".join(s.overrides), s.batch) not in measured]
    lines = [
        "# Throughput\n",
        (
            f"The latest figures of every setup in [{csv_path.name}]({csv_path.name}) (medians; the CSV has quartiles, "
            f"every measure and its ratio to ALE), regenerated by `wmbench bench --suite {suite} --csv {csv_path}`.\n"
        ),
        markdown_table(csv_path),
    ]
    if missing:
        lines.append("Setups of the suite without rows in the CSV (still running, or stopped before them): " + "; ".join(
            f"{s.backbone} at {s.preset}" + (f" ({' '.join(s.overrides)})" if s.overrides else "") + f", batch {s.batch}"
            for s in missing) + ".\n")  # fmt: skip
    return "\n".join(lines)
