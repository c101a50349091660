"""The benchmark file (``benchmarks/*.toml``), the one format of every track: its matrix of cells (games x backbones
x tokenizers x seeds), checked whole before anything runs, and what each track's cell runs (:data:`TRACKS`).

A benchmark file::

    name = "smoke"
    track = "agent"                  # agent | world-model | throughput
    preset = "smoke"
    games = ["Pong", "Breakout"]
    seeds = [0]                      # optional, default [0]; the throughput track has no seeds
    tokenizers = ["vqvae"]           # optional, default ["vqvae"]
    device = "cpu"                   # optional: --device of every cell
    batch = 16                       # optional, throughput only: --batch of wmbench bench (default 8)
    repeats = 3                      # optional, throughput only: --repeats of wmbench bench (default 5)
    set = ["training.epochs=4"]      # optional: --set overrides of every cell

    [[backbones]]
    name = "llm-lora"
    label = "llm-lora-random"        # optional (default: the name); names the cells (reports name a setup by
                                     # its backbone and the options that tell it apart from the others)
    set = ["backbone.model=tiny-llama", "backbone.pretrained=false"]   # optional, after the file's own set
    preset = "iris"                  # optional: the entry's own preset, tokenizers, and (throughput) batch and
    tokenizers = ["vqvae"]           # repeats, in place of the file's: a throughput suite's setups differ in these

The runner that runs the cells is :mod:`wmbench.sweep`; ``wmbench bench --suite FILE`` measures every cell of a
throughput file in one process.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from wmbench import files
from wmbench.errors import WmbenchError, did_you_mean
from wmbench.rundir import TRACK_AGENT, TRACK_WORLD_MODEL, RunDir

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
    "repeats",
    "set",
    "backbones",
    "executor",
)
BACKBONE_KEYS = ("name", "label", "set", "preset", "tokenizers", "batch", "repeats")
LABEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def _no_check(config: Any) -> None:
    pass


def _world_model_settings(config: Any) -> None:
    from wmbench.tracks.world_model import check_settings

    check_settings(config)


@dataclass(frozen=True)
class Track:
    """What a cell of a track runs, and how the sweep tells it finished."""

    command: str
    """The ``wmbench`` command of a cell."""
    result: Callable[[Path], Path]
    """The file in a cell's folder whose presence means the cell finished."""
    per_seed: bool
    """Cells per seed (a throughput measure has no seed)."""
    resumable: bool
    """The command takes ``--resume FOLDER`` and continues from the folder's checkpoint."""
    output: str
    """The command's option naming where it writes: ``--out`` (a run folder) or ``--csv`` (a bench CSV)."""
    measures: bool = False
    """Its cells are ``wmbench bench`` measures: the file may set ``batch`` and ``repeats``, and ``wmbench bench
    --suite`` takes it."""
    check: Callable[[Any], None] = _no_check
    """Refuses a cell's resolved config that the track cannot run, before anything runs."""


def _summary(folder: Path) -> Path:
    return RunDir(folder).summary


def _bench_csv(folder: Path) -> Path:
    return folder / "throughput.csv"


TRACKS: dict[str, Track] = {
    TRACK_AGENT: Track("run", _summary, per_seed=True, resumable=True, output="--out"),
    TRACK_WORLD_MODEL: Track("world-model", _summary, per_seed=True, resumable=True, output="--out",
                             check=_world_model_settings),
    "throughput": Track("bench", _bench_csv, per_seed=False, resumable=False, output="--csv", measures=True),
}  # fmt: skip


@dataclass(frozen=True)
class BackboneSpec:
    """A ``[[backbones]]`` entry; its unset preset, tokenizers, batch and repeats are the file's."""

    name: str
    label: str
    overrides: tuple[str, ...] = ()
    preset: str | None = None
    tokenizers: tuple[str, ...] | None = None
    batch: int | None = None
    repeats: int | None = None


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
    repeats: int | None = None
    description: str = ""
    executor: dict[str, Any] = field(default_factory=dict, hash=False)
    """The ``[executor]`` table: ``name`` (local, slurm, ray) and that executor's options."""

    def definition(self) -> dict[str, Any]:
        """What the benchmark runs, as JSON (path, description and executor left out: they change no cell)."""
        data = asdict(self)
        for key in ("path", "description", "executor"):
            data.pop(key)
        # Keys newer than the first sweeps are left out while unset, so that those sweeps' folders still match.
        if data["repeats"] is None:
            del data["repeats"]
        data["backbones"] = [{k: v for k, v in b.items() if v is not None} for b in data["backbones"]]
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
    preset: str
    overrides: tuple[str, ...] = ()
    batch: int | None = None
    """Throughput only: ``--batch`` (None: the bench's default)."""
    repeats: int | None = None
    """Throughput only: ``--repeats`` (None: the bench's default)."""


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


def _throughput_number(data: dict[str, Any], key: str, track: str, where: str) -> int | None:
    """``batch`` or ``repeats``: a positive integer, of the throughput track only (None when absent)."""
    value = data.get(key)
    if value is not None and (
        not TRACKS[track].measures or not isinstance(value, int) or isinstance(value, bool) or value < 1
    ):
        raise WmbenchError(f"{where}: {key!r} is a positive integer of the throughput track only, got {value!r}")
    return value


def _preset(value: Any, where: str) -> str:
    from wmbench.config import preset_names
    from wmbench.errors import unknown

    if not isinstance(value, str):
        raise WmbenchError(f"{where}: 'preset' must be a string, got {value!r}")
    if value not in preset_names():
        raise WmbenchError(f"{where}: {unknown('preset', value, preset_names())}")
    return value


def _backbone(entry: dict[str, Any], track: str, at: str) -> BackboneSpec:
    """One ``[[backbones]]`` entry, checked."""
    from wmbench.plugins import registry

    _keys(entry, BACKBONE_KEYS, at)
    if not isinstance(entry.get("name"), str):
        raise WmbenchError(f"{at}: 'name' must be a backbone id, got {entry.get('name')!r}")
    try:
        registry().get("backbone", entry["name"])
    except WmbenchError as exc:
        raise WmbenchError(f"{at}: {exc}") from None
    label = entry.get("label", entry["name"])
    if not isinstance(label, str) or not LABEL.match(label):
        raise WmbenchError(f"{at}: 'label' must be letters, digits, '.', '_' or '-', got {label!r}")
    tokenizers = entry.get("tokenizers")
    return BackboneSpec(
        entry["name"],
        label,
        tuple(_list(entry, "set", str, at, default=[])),
        preset=_preset(entry["preset"], at) if "preset" in entry else None,
        tokenizers=None if tokenizers is None else tuple(_list(entry, "tokenizers", str, at)),
        batch=_throughput_number(entry, "batch", track, at),
        repeats=_throughput_number(entry, "repeats", track, at),
    )


def load_benchmark(path: Path) -> Benchmark:
    """Read and fully check a benchmark file: every name, key and value of every cell, before anything runs."""
    from wmbench.errors import unknown
    from wmbench.plugins import registry

    path = Path(path)
    data = files.read_toml(path, "benchmark file")
    where = f"benchmark file {path}"
    _keys(data, KEYS, where)
    for key in ("name", "track"):
        if not isinstance(data.get(key), str):
            raise WmbenchError(f"{where}: {key!r} must be a string, got {data.get(key)!r}")
    track = data["track"]
    if track not in TRACKS:
        raise WmbenchError(f"{where}: {unknown('track', track, TRACKS)}")
    if data.get("device", "auto") not in ("auto", "cpu", "cuda"):
        raise WmbenchError(f"{where}: 'device' must be auto, cpu or cuda, got {data['device']!r}")
    raw = data.get("backbones")
    if not isinstance(raw, list) or not raw or not all(isinstance(b, dict) for b in raw):
        raise WmbenchError(f"{where}: 'backbones' must be a non-empty array of tables ([[backbones]] with a name)")
    bench = Benchmark(
        path=path,
        name=data["name"],
        track=track,
        preset=_preset(data.get("preset"), where),
        games=tuple(_list(data, "games", str, where)),
        seeds=tuple(_list(data, "seeds", int, where, default=[0])),
        tokenizers=tuple(_list(data, "tokenizers", str, where, default=["vqvae"])),
        backbones=tuple(_backbone(entry, track, f"{where}, backbones[{i}]") for i, entry in enumerate(raw)),
        overrides=tuple(_list(data, "set", str, where, default=[])),
        device=data.get("device"),
        batch=_throughput_number(data, "batch", track, where),
        repeats=_throughput_number(data, "repeats", track, where),
        description=str(data.get("description", "")),
        executor=data.get("executor", {}),
    )
    if not isinstance(bench.executor, dict):
        raise WmbenchError(f"{where}: 'executor' must be a table ([executor] with a name and its options)")
    ids = [cell.id for cell in cells(bench)]
    if len(set(ids)) != len(ids):
        labels = ", ".join(s.label for s in bench.backbones)
        raise WmbenchError(f"{where}: two backbones have the same label; give each a distinct 'label' ({labels})")
    for tokenizer in dict.fromkeys(c.tokenizer for c in cells(bench)):
        try:
            registry().get("tokenizer", tokenizer)
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
        for tokenizer in spec.tokenizers or bench.tokenizers:
            try:
                config = cfg.resolve(spec.preset or bench.preset, bench.games[0], bench.seeds[0], tokenizer, spec.name,
                                     [*bench.overrides, *spec.overrides], registry(), extra)  # fmt: skip
                TRACKS[bench.track].check(config)
            except WmbenchError as exc:
                raise WmbenchError(f"{where}, backbones[{i}] ({spec.label}): {exc}") from None


def cells(bench: Benchmark) -> list[Cell]:
    """Every cell, with a readable id that stays the same from one sweep to the next."""
    seeds: tuple[int | None, ...] = bench.seeds if TRACKS[bench.track].per_seed else (None,)
    out = []
    for game in bench.games:
        for spec in bench.backbones:
            for tokenizer in spec.tokenizers or bench.tokenizers:
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
                            preset=spec.preset or bench.preset,
                            overrides=(*bench.overrides, *spec.overrides),
                            batch=spec.batch or bench.batch,
                            repeats=spec.repeats or bench.repeats,
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
        cell.preset,
    ]
    if cell.seed is not None:
        args += ["--seed", str(cell.seed)]
    if bench.device:
        args += ["--device", bench.device]
    if cell.batch:
        args += ["--batch", str(cell.batch)]
    if cell.repeats:
        args += ["--repeats", str(cell.repeats)]
    for item in cell.overrides:
        args += ["--set", item]
    return args + [track.output, str(partial_csv(folder) if track.output == "--csv" else folder)]


def partial_csv(folder: Path) -> Path:
    """Where a throughput cell's bench writes its CSV until the process succeeds."""
    return folder / "throughput.partial.csv"
