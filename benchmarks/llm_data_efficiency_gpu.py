"""The LLM data-efficiency experiment (issue 21) at GPU size: the committed benchmark files
``benchmarks/llm-data-efficiency.toml`` and ``benchmarks/llm-data-efficiency-controls.toml``, each with its own
games and setups but the sizes the CPU version cuts set back (:data:`FULL`: more data, budgets, steps, batch,
context, seeds, measures), written as benchmark files into the output folder (``OUT/<name>-gpu.toml``), run by
``wmbench sweep`` on one GPU (``OUT/<name>``), then reported together by ``wmbench compare`` (``OUT/report``).
Rerunning resumes.

The GPU machine needs no network: install wmbench, copy ``$WMBENCH_CACHE/models`` (``wmbench models fetch
smollm2-135m`` and ``wmbench models fetch minilm-l6`` where there is one) and run::

    python benchmarks/llm_data_efficiency_gpu.py --out sweeps/llm-data-efficiency-gpu [--jobs 2] [--dry-run]

Not run yet: no GPU was at hand when it was written (results/llm-data-efficiency/REPORT.md estimates its cost).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).resolve().parent
FILES = (HERE / "llm-data-efficiency.toml", HERE / "llm-data-efficiency-controls.toml")
SEEDS = [0, 1, 2, 3, 4]
FULL = [
    "world_model.max_blocks=10",
    "training.world_model.batch_size=32",
    "training.world_model.steps_per_epoch=100",
    "world_model_track.dataset_steps=60000",
    "world_model_track.ood_steps=5000",
    "world_model_track.budgets=[1000,3000,10000,30000]",
    "world_model_track.steps=1000",
    "world_model_track.tokenizer_steps=5000",
    "world_model_track.eval_segments=256",
    "world_model_track.rollout_starts=512",
    "world_model_track.rollout_samples=4",
    "world_model_track.rollout_burn_in=4",
    "world_model_track.rollout_steps=[1,3,6]",
]
"""Overrides after a file's own settings: the full size (no setup sets any of these keys)."""


def gpu_benchmark(path: Path) -> str:
    """The TOML text of the benchmark file at ``path`` at GPU size: its games, settings then :data:`FULL`, and its
    setups, on the GPU with :data:`SEEDS`."""
    bench = tomllib.loads(path.read_text())
    lines = [f"{key} = {json.dumps(bench[key])}" for key in ("track", "preset", "games", "tokenizers")]
    lines += [
        f'name = "{bench["name"]}-gpu"',
        f"description = {json.dumps(bench['description'] + ', at GPU size')}",
        'device = "cuda"',
        f"seeds = {json.dumps(SEEDS)}",
        f"set = {json.dumps(bench['set'] + FULL)}",
    ]
    for spec in bench["backbones"]:
        lines += ["", "[[backbones]]", f"name = {json.dumps(spec['name'])}", f"label = {json.dumps(spec['label'])}",
                  f"set = {json.dumps(spec.get('set', []))}"]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description="The LLM data-efficiency experiment at GPU size.")
    parser.add_argument("--out", type=Path, default=Path("sweeps/llm-data-efficiency-gpu"))
    parser.add_argument("--jobs", type=int, default=1, help="cells at once on the GPU")
    parser.add_argument("--dry-run", action="store_true", help="list the cells and commands only")
    args = parser.parse_args()
    wmbench = [sys.executable, "-m", "wmbench"]
    args.out.mkdir(parents=True, exist_ok=True)
    code, folders = 0, []
    for path in FILES:
        name = tomllib.loads(path.read_text())["name"]
        bench = args.out / f"{name}-gpu.toml"
        bench.write_text(gpu_benchmark(path))
        folders.append(str(args.out / name))
        sweep = [*wmbench, "sweep", str(bench), "--out", folders[-1], "--jobs", str(args.jobs)]
        code = max(code, subprocess.call([*sweep, "--dry-run"] if args.dry_run else sweep))
    if code == 0 and not args.dry_run:
        code = subprocess.call([*wmbench, "compare", *folders, "--out", str(args.out / "report")])
    return code


if __name__ == "__main__":
    sys.exit(main())
