"""Atomic file writes: a reader (or a crash) sees the old file or the new one, never a torn one.

A write that fails (a full disk, an I/O error, a read-only folder) leaves the old file as it was, no temporary file
behind, and raises an ``OSError`` naming the file meant (not the temporary one), which the CLI shows as one line.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from wmbench.errors import WmbenchError


def cache_root() -> Path:
    """Where wmbench keeps what it fetches or builds once (models, datasets): ``$WMBENCH_CACHE``, default
    ``~/.cache/wmbench``."""
    return Path(os.environ.get("WMBENCH_CACHE") or Path.home() / ".cache" / "wmbench").expanduser()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside ``path``, flush it to disk, then rename it over ``path``."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise failed_write(path, exc) from exc
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise failed_write(path, exc) from exc
        raise


def failed_write(path: Path, exc: OSError) -> OSError:
    """The error of a failed write, naming the file meant: ``[Errno 28] No space left on device: 'PATH'``."""
    return OSError(exc.errno, exc.strerror or str(exc), str(path))


def read_toml(path: Path, what: str) -> dict[str, Any]:
    """A TOML file's tables, or a WmbenchError naming ``what`` the file is (missing, or not TOML)."""
    import tomllib

    if not Path(path).is_file():
        raise WmbenchError(f"{what} {path} does not exist")
    try:
        return tomllib.loads(Path(path).read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise WmbenchError(f"{what} {path} is not valid TOML ({exc})") from exc


def write_json(path: Path, data: Any) -> None:
    write_bytes(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())


def save_torch(path: Path, obj: Any) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    write_bytes(path, buffer.getvalue())


def load_torch(path: Path, map_location: str = "cpu", what: str = "checkpoint") -> Any:
    """Load tensors only (``weights_only=True``); a missing, truncated or foreign file is a WmbenchError naming
    ``what`` it is (a checkpoint, a replay file, a dataset)."""
    import torch

    if not Path(path).is_file():
        raise WmbenchError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "GLOBAL" in str(exc):  # torch's weights_only refusal of a class or function the file names
            raise WmbenchError(
                f"refusing {what} {path}: it holds pickled Python objects, which wmbench never loads (weights_only)"
            ) from exc
        raise WmbenchError(
            f"cannot load {what} {path}: truncated or not a torch checkpoint (not a pickle of tensors)"
        ) from exc
    except Exception as exc:  # truncation and files that are not torch checkpoints land here
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0].split(". ")[0]
        raise WmbenchError(f"cannot load {what} {path}: truncated or not a torch checkpoint ({first[:120]})") from exc
