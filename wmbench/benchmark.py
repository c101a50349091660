"""The benchmark file (``benchmarks/*.toml``), the one format of every track: its matrix of cells (games x backbones
x tokenizers x seeds), checked whole before anything runs, and what each track's cell runs (:data:`TRACKS`).

A benchmark file::

    name = "smoke"
    track = "agent"                  # agent | world-model | throughput
    preset = "smoke"
    games = ["Pong", "Breakout"]
    seeds = [0]
    tokenizers = ["vqvae"]           # optional, default ["vqvae"]
    device = "cpu"                   # optional: --device of every cell
    batch = 16                       # optional, throughput only: --batch of wmbench bench
    set = ["training.epochs=4"]      # optional: --set overrides of every cell

    [[backbones]]
    name = "llm-lora"
    label = "llm-lora-random"        # optional (default: the name); names the cells (reports name a setup by
                                     # its backbone and the options that tell it apart from the others)
    set = ["backbone.model=tiny-llama", "backbone.pretrained=false"]

The runner that runs the cells is :mod:`wmbench.sweep`.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench.errors import WmbenchError, did_you_mean

KEYS = (
    "name",
    "description",
    "track",
    "preset",
    "games",
    "seeds",
    "tokenizers",
    "device",
    "batch",
    "set",
    "backbones",
    "executor",
)
BACKBONE_KEYS = ("name", "label", "set")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


@dataclass(frozen=True)
class Track:
    """What a cell of a track runs, and how the sweep tells it finished."""

    command: str
    """The ``wmbench`` command of a cell."""
    result: str
    """The file in the cell's folder whose presence means the cell finished."""
    per_seed: bool
    """Cells per seed (a throughput measure has no seed)."""
    resumable: bool
    """The command takes ``--resume FOLDER`` and continues from the folder's checkpoint."""
    output: str
    """The command's option naming where it writes: ``--out`` (a run folder) or ``--csv`` (a bench CSV)."""


TRACKS: dict[str, Track] = {
    "agent": Track("run", "summary.json", per_seed=True, resumable=True, output="--out"),
    "world-model": Track("world-model", "summary.json", per_seed=True, resumable=True, output="--out"),
    "throughput": Track("bench", "throughput.csv", per_seed=False, resumable=False, output="--csv"),
}


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    label: str
    overrides: tuple[str, ...] = ()


@dataclass(frozen=True)
class Benchmark:
    """A validated benchmark file."""

    path: Path
    name: str
    track: str
    preset: str
    games: tuple[str, ...]
    seeds: tuple[int, ...]
    tokenizers: tuple[str, ...]
    backbones: tuple[BackboneSpec, ...]
    overrides: tuple[str, ...] = ()
    device: str | None = None
    batch: int | None = None
    description: str = ""
    executor: dict[str, Any] = field(default_factory=dict, hash=False)
    """The ``[executor]`` table: ``name`` (local, slurm, ray) and that executor's options."""

    def definition(self) -> dict[str, Any]:
        """What the benchmark runs, as JSON (path, description and executor left out: they change no cell)."""
        data = asdict(self)
        for key in ("path", "description", "executor"):
            data.pop(key)
        return json.loads(json.dumps(data))


@dataclass(frozen=True)
class Cell:
    """One process of a sweep: a game, a backbone setup, a tokenizer and a seed (no seed for throughput)."""

    id: str
    game: str
    backbone: str
    label: str
    tokenizer: str
    seed: int | None
    overrides: tuple[str, ...] = field(default=())


# Reading benchmark files -----------------------------------------------------------------------------


def _list(data: dict[str, Any], key: str, kind: type, where: str, default: list | None = None) -> list:
    """A list of distinct values of one type: non-empty, except for ``set`` (overrides)."""
    value = data.get(key, default)
    if value is None:
        raise WmbenchError(f"{where}: missing {key!r}")
    if (
        not isinstance(value, list)
        or not all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
        or not (value or key == "set")
    ):
        raise WmbenchError(f"{where}: {key!r} must be a non-empty list of {kind.__name__}s, got {value!r}")
    if len(set(value)) != len(value):
        raise WmbenchError(f"{where}: {key!r} lists an entry twice: {value!r}")
    return value


def _keys(data: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    for key in data:
        if key not in allowed:
            raise WmbenchError(
                f"{where}: unknown key {key!r}{did_you_mean(key, allowed)}; allowed: {', '.join(allowed)}"
            )


def load_benchmark(path: Path) -> Benchmark:
    """Read and fully check a benchmark file: every name, key and value of every cell, before anything runs."""
    from wmbench.config import preset_names
    from wmbench.errors import unknown
    from wmbench.plugins import registry

    path = Path(path)
    data = files.read_toml(path, "benchmark file")
    where = f"benchmark file {path}"
    _keys(data, KEYS, where)
    for key in ("name", "track", "preset"):
        if not isinstance(data.get(key), str):
            raise WmbenchError(f"{where}: {key!r} must be a string, got {data.get(key)!r}")
    if data["track"] not in TRACKS:
        raise WmbenchError(f"{where}: {unknown('track', data['track'], TRACKS)}")
    if data["preset"] not in preset_names():
        raise WmbenchError(f"{where}: {unknown('preset', data['preset'], preset_names())}")
    if "batch" in data and (data["track"] != "throughput" or not isinstance(data["batch"], int) or data["batch"] < 1):
        raise WmbenchError(
            f"{where}: 'batch' is a positive integer of the throughput track only, got {data['batch']!r}"
        )
    if data.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise WmbenchError(f"{where}: 'device' must be auto, cpu or cuda, got {data['device']!r}")
    raw = data.get("backbones")
    if not isinstance(raw, list) or not raw or not all(isinstance(b, dict) for b in raw):
        raise WmbenchError(f"{where}: 'backbones' must be a non-empty array of tables ([[backbones]] with a name)")
    specs = []
    reg = registry()
    for i, entry in enumerate(raw):
        at = f"{where}, backbones[{i}]"
        _keys(entry, BACKBONE_KEYS, at)
        if not isinstance(entry.get("name"), str):
            raise WmbenchError(f"{at}: 'name' must be a backbone id, got {entry.get('name')!r}")
        try:
            reg.get("backbone", entry["name"])
        except WmbenchError as exc:
            raise WmbenchError(f"{at}: {exc}") from None
        label = entry.get("label", entry["name"])
        if not isinstance(label, str) or not LABEL.match(label):
            raise WmbenchError(f"{at}: 'label' must be letters, digits, '.', '_' or '-', got {label!r}")
        specs.append(BackboneSpec(entry["name"], label, tuple(_list(entry, "set", str, at, default=[]))))
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise WmbenchError(
            f"{where}: two backbones have the same label; give each a distinct 'label' ({', '.join(labels)})"
        )
    bench = Benchmark(
        path=path,
        name=data["name"],
        track=data["track"],
        preset=data["preset"],
        games=tuple(_list(data, "games", str, where)),
        seeds=tuple(_list(data, "seeds", int, where, default=[0])),
        tokenizers=tuple(_list(data, "tokenizers", str, where, default=["vqvae"])),
        backbones=tuple(specs),
        overrides=tuple(_list(data, "set", str, where, default=[])),
        device=data.get("device"),
        batch=data.get("batch"),
        description=str(data.get("description", "")),
        executor=data.get("executor", {}),
    )
    if not isinstance(bench.executor, dict):
        raise WmbenchError(f"{where}: 'executor' must be a table ([executor] with a name and its options)")
    for tokenizer in bench.tokenizers:
        try:
            reg.get("tokenizer", tokenizer)
        except WmbenchError as exc:
            raise WmbenchError(f"{where}: {exc}") from None
    _check_cells(bench)
    return bench


def _check_cells(bench: Benchmark) -> None:
    """Resolve every cell's config as its process will (game names, config keys, option values)."""
    from wmbench import config as cfg
    from wmbench.plugins import registry

    where = f"benchmark file {bench.path}"
    for game in bench.games:
        try:
            registry().game(game)
        except WmbenchError as exc:
            raise WmbenchError(f"{where}: {exc}") from None
    extra = {"device": bench.device} if bench.device else {}
    for i, spec in enumerate(bench.backbones):
        for tokenizer in bench.tokenizers:
            try:
                config = cfg.resolve(bench.preset, bench.games[0], bench.seeds[0], tokenizer, spec.name,
                                     [*bench.overrides, *spec.overrides], registry(), extra)  # fmt: skip
                if bench.track == "world-model":
                    from wmbench.tracks.world_model import check_settings

                    check_settings(config)
            except WmbenchError as exc:
                raise WmbenchError(f"{where}, backbones[{i}] ({spec.label}): {exc}") from None


def cells(bench: Benchmark) -> list[Cell]:
    """Every cell, with a readable id that stays the same from one sweep to the next."""
    seeds: tuple[int | None, ...] = bench.seeds if TRACKS[bench.track].per_seed else (None,)
    out = []
    for game in bench.games:
        for spec in bench.backbones:
            for tokenizer in bench.tokenizers:
                for seed in seeds:
                    parts = [game, spec.label, tokenizer] + ([] if seed is None else [f"s{seed}"])
                    out.append(
                        Cell(
                            "-".join(parts),
                            game,
                            spec.name,
                            spec.label,
                            tokenizer,
                            seed,
                            (*bench.overrides, *spec.overrides),
                        )
                    )
    return out


def command(bench: Benchmark, cell: Cell, folder: Path, resume: bool) -> list[str]:
    """The ``wmbench`` arguments of a cell (after ``python -m wmbench``)."""
    track = TRACKS[bench.track]
    name = track.command
    if resume:
        return [name, "--resume", str(folder)]
    args = [
        name,
        "--backbone",
        cell.backbone,
        "--tokenizer",
        cell.tokenizer,
        "--game",
        cell.game,
        "--preset",
        bench.preset,
    ]
    if cell.seed is not None:
        args += ["--seed", str(cell.seed)]
    if bench.device:
        args += ["--device", bench.device]
    if bench.batch:
        args += ["--batch", str(bench.batch)]
    for item in cell.overrides:
        args += ["--set", item]
    return args + [track.output, str(partial_csv(folder) if track.output == "--csv" else folder)]


def partial_csv(folder: Path) -> Path:
    """Where a throughput cell's bench writes its CSV until the process succeeds."""
    return folder / "throughput.partial.csv"
