"""The learning check (benchmarks/learning.toml): the full IRIS loop (tokenizer, world model, actor-critic in
imagination) at the ``learning`` preset takes the toy suite's Catcher from random play to clearly better, on each
of 3 seeds. About 9 minutes a seed on one thread of a 2-core Xeon alone (results/learning/README.md), so it is
left out of the default run and of CI: ``python -m pytest -m learning``."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from wmbench.envs.toy_suite import reference_scores

MARGIN = 3.0
"""Return above random play's (-5) that each seed must pass (a normalised 0.2). Measured at this preset
(results/learning/): final returns 6.8 to 9.2 above random on seeds 0 to 2; a mean of 64 random episodes has a
standard error of about 0.34, so 3 is far from chance and well under every measured gain."""


@pytest.mark.slow
@pytest.mark.learning
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_agent_learns_catcher(tmp_path, seed):
    out = tmp_path / "run"
    command = ["run", "--game", "Catcher", "--preset", "learning", "--seed", str(seed), "--out", str(out)]
    result = subprocess.run(
        [sys.executable, "-m", "wmbench", *command],
        capture_output=True,
        text=True,
        timeout=2400,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    random, _ = reference_scores("Catcher")
    assert summary["eval_return_mean"] > random + MARGIN, summary["eval_returns"]
