"""The grid-edge check of the data-efficiency experiment: its benchmark file pairs with the main file's cells, and
benchmarks/lr_edge.py chooses again on validation only."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from wmbench.benchmark import load_benchmark

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
LRS, BUDGETS = "world_model_track.lrs=", "world_model_track.budgets="


def lr_edge():
    spec = importlib.util.spec_from_file_location("lr_edge", BENCHMARKS / "lr_edge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def but(overrides, prefix):
    return [o for o in overrides if not o.startswith(prefix)]


def rates(overrides):
    (value,) = [o[len(LRS) :] for o in overrides if o.startswith(LRS)]
    return [float(v) for v in value.strip("[]").split(",")]


def test_edge_file_extends_the_main_files_setups_by_one_higher_rate_at_its_largest_budget():
    main = load_benchmark(BENCHMARKS / "llm-data-efficiency.toml")
    edge = load_benchmark(BENCHMARKS / "llm-data-efficiency-lr-edge.toml")
    assert (edge.games, edge.seeds, edge.tokenizers, edge.preset) == (
        main.games,
        main.seeds,
        main.tokenizers,
        main.preset,
    )
    assert but(edge.overrides, BUDGETS) == but(main.overrides, BUDGETS)  # the same datasets and frozen tokenizers
    (budgets,) = [o for o in main.overrides if o.startswith(BUDGETS)]
    assert f"{BUDGETS}[{budgets.rsplit(',', 1)[1]}" in edge.overrides  # the largest budget alone
    setups, module = {b.label: b for b in main.backbones}, lr_edge()
    for b in edge.backbones:
        base = setups[module.base_label(b.label, set(setups))]
        assert b.name == base.name and but(b.overrides, LRS) == but(base.overrides, LRS)
        (extra,) = rates(b.overrides)
        mantissa, exponent = f"{extra:.0e}".split("e")
        assert extra > max(rates(base.overrides)) and b.label == f"{base.label}-{mantissa}e{int(exponent)}"


def summary(lrs_validation, heldout, sha="a"):
    """A world-model summary with its grid's validation losses and the held-out CE at its one budget."""
    lr, validation = min(lrs_validation.items(), key=lambda kv: kv[1])
    search = [{"lr": k, "validation_loss": v} for k, v in lrs_validation.items()] if len(lrs_validation) > 1 else []
    row = {"env_steps": 3600, "lr": lr, "validation_loss": validation, "heldout/loss/observations": heldout}
    return {"budgets": [3600], "lr_search": search, "per_budget": [row], "frozen_tokenizer": {"sha256": sha}}


def test_widened_grid_is_chosen_on_validation_and_moves_only_the_cells_it_wins():
    module = lr_edge()
    main = {("smollm2-full", "Pong", 0): summary({1e-4: 1.0, 3e-4: 0.8}, heldout=0.50),
            ("smollm2-full", "Pong", 1): summary({1e-4: 1.0, 3e-4: 0.8}, heldout=0.60),
            ("smollm2-full-random", "Pong", 0): summary({1e-4: 1.0, 3e-4: 0.9}, heldout=1.00)}  # fmt: skip
    edge = {("smollm2-full-1e-3", "Pong", 0): summary({1e-3: 0.7}, heldout=0.90),  # validation wins, held-out worse
            ("smollm2-full-1e-3", "Pong", 1): summary({1e-3: 0.9}, heldout=0.10),  # validation loses: not taken
            ("smollm2-full-random-1e-3", "Pong", 0): summary({1e-3: 0.95}, heldout=0.20)}  # fmt: skip
    rows = {(r["setup"], r["seed"]): r for r in module.widened(main, edge)}
    assert rows[("smollm2-full", 0)]["takes"] and rows[("smollm2-full", 0)]["heldout_widened"] == 0.90
    assert not rows[("smollm2-full", 1)]["takes"] and rows[("smollm2-full", 1)]["heldout_widened"] == 0.60
    assert rows[("smollm2-full-random", 0)]["heldout_widened"] == 1.00
    text = module.report(main, list(rows.values()))
    assert "| smollm2-full - smollm2-full-random | -0.500 [-0.500, -0.500] | -0.100 [-0.100, -0.100] | 1 / 1 |" in text
    edge[("smollm2-full-1e-3", "Pong", 0)]["frozen_tokenizer"]["sha256"] = "b"
    with pytest.raises(SystemExit, match="frozen tokenizer"):
        module.widened(main, edge)
