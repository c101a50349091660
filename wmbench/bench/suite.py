"""Throughput suite files (``benchmarks/throughput*.toml``): a game, a device and the setups to measure."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench.errors import WmbenchError, did_you_mean

SUITE_KEYS = ("name", "description", "game", "batch", "repeats", "device", "set", "setups")
SETUP_KEYS = ("backbone", "tokenizer", "preset", "set", "repeats", "batch")


@dataclass(frozen=True)
class Setup:
    backbone: str
    tokenizer: str
    preset: str
    overrides: tuple[str, ...]
    repeats: int
    batch: int


def load_suite(path: Path) -> tuple[str, str, list[Setup]]:
    """A suite file's game, device and setups (see ``benchmarks/throughput.toml``); every key checked."""
    data = files.read_toml(path, "suite file")
    where = f"suite file {path}"
    _check_keys(data, SUITE_KEYS, where)
    common = _overrides(data, where)
    raw = data.get("setups")
    if not isinstance(raw, list) or not raw or not all(isinstance(s, dict) for s in raw):
        raise WmbenchError(f"{where}: 'setups' must be a non-empty array of tables ([[setups]] with a backbone)")
    setups = []
    for i, entry in enumerate(raw):
        at = f"{where}, setups[{i}]"
        _check_keys(entry, SETUP_KEYS, at)
        merged = {
            "tokenizer": "vqvae",
            "preset": "smoke",
            "repeats": 5,
            "batch": 8,
            **{k: data[k] for k in ("repeats", "batch") if k in data},
            **entry,
        }
        for key, kind, name in (("backbone", str, "a string"), ("tokenizer", str, "a string"), ("preset", str, "a string"),
                                ("repeats", int, "an integer"), ("batch", int, "an integer")):  # fmt: skip
            if (
                not isinstance(merged.get(key), kind)
                or isinstance(merged[key], bool)
                or (kind is int and merged[key] < 1)
            ):
                raise WmbenchError(
                    f"{at}: {key!r} must be {name}{' above zero' * (kind is int)}, got {merged.get(key)!r}"
                )
        overrides = (*common, *_overrides(entry, at))  # the suite's, then the setup's own
        setups.append(
            Setup(
                merged["backbone"], merged["tokenizer"], merged["preset"], overrides, merged["repeats"], merged["batch"]
            )
        )
    return data.get("game", "Breakout"), data.get("device", "cpu"), setups


def _overrides(table: dict[str, Any], where: str) -> tuple[str, ...]:
    """A table's ``set`` list of KEY=VALUE overrides (none if absent)."""
    given = table.get("set", [])
    if not isinstance(given, list) or not all(isinstance(s, str) for s in given):
        raise WmbenchError(f"{where}: 'set' must be a list of KEY=VALUE strings, got {given!r}")
    return tuple(given)


def _check_keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise WmbenchError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
            )
