"""timm and open_clip models from options: names checked, sizes overridden, weights through each library's loader."""

from __future__ import annotations

import difflib
import hashlib
import logging
from pathlib import Path
from typing import Any

from torch import nn

from wmbench.errors import WmbenchError
from wmbench.plugins import import_module

MODES = ("frozen", "lora", "full")
"""How a pretrained model trains: not at all, through LoRA adapters, or every weight."""


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def _unknown(library: str, name: str, names: list[str]) -> WmbenchError:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    return WmbenchError(f"unknown {library} model {name!r}{hint}")


def _weights_file(weights: str) -> Path:
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WmbenchError(f"weights file not found: {weights}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _facts(library: str, name: str, options, hub: str) -> dict[str, Any]:
    version = import_module(library).__version__
    if options.weights is not None:
        path = _weights_file(options.weights)
        source = f"local file {path} (sha256 {_sha256(path)})"
    else:
        source = hub if options.pretrained else f"random init ({library}'s own)"
    pretrained = options.weights is not None or options.pretrained
    return {"library": f"{library} {version}", "model": name, "pretrained": pretrained, "weights": source}


class _QuietRandomInit(logging.Filter):
    """Drops open_clip's warning that no pretrained weights were loaded, when random weights are what was asked."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("No pretrained weights loaded")


def timm_model(options, **kwargs: Any) -> tuple[nn.Module, dict[str, Any]]:
    """``timm.create_model(options.model, ...)`` with the size overrides, its pretrained weights or a local file."""
    timm = import_module("timm")
    base = options.model.split(".")[0]
    if not timm.is_model(base):
        raise _unknown("timm", base, timm.list_models("vit*"))
    sizes = {"embed_dim": options.width, "depth": options.layers, "num_heads": options.heads}
    kwargs.update({k: v for k, v in sizes.items() if v is not None})
    facts = _facts("timm", options.model, options, f"timm's download of {options.model}")
    pretrained = options.weights is not None or options.pretrained
    if options.weights is not None:
        kwargs["pretrained_cfg_overlay"] = {"file": str(_weights_file(options.weights))}
    try:
        model = timm.create_model(options.model, pretrained=pretrained, **kwargs)
    except Exception as exc:  # timm raises RuntimeError, AssertionError, OSError, hub errors, ...
        what = f"load weights {options.weights or 'from the hub'} into" if pretrained else "build"
        raise WmbenchError(f"cannot {what} timm model {options.model!r}: {_first_line(exc)}") from exc
    return model, facts


def clip_model(options, tower: str, **overrides: Any) -> tuple[nn.Module, dict[str, Any]]:
    """``open_clip.create_model(options.model, ...)`` with ``tower``'s size overrides and the chosen weights."""
    open_clip = import_module("open_clip")
    if options.model not in open_clip.list_models():
        raise _unknown("open_clip", options.model, open_clip.list_models())
    config = open_clip.get_model_config(options.model)
    key = "text_cfg" if tower == "text" else "vision_cfg"
    cfg = dict(config[key], **overrides)
    width = options.width or cfg.get("width")
    sizes = {"width": options.width, "layers": options.layers}
    if options.heads is not None:
        sizes.update({"heads": options.heads} if tower == "text" else {"head_width": width // options.heads})
    cfg.update({k: v for k, v in sizes.items() if v is not None})
    source = None
    tag = options.tag
    if options.weights is not None:
        source = str(_weights_file(options.weights))
    elif options.pretrained:
        tags = open_clip.list_pretrained_tags_by_model(options.model)
        if not tags or (tag is not None and tag not in tags):
            raise WmbenchError(f"open_clip has no pretrained tag {tag!r} for {options.model} (tags: {', '.join(tags)})")
        tag = tag or tags[0]
        source = tag
    facts = _facts("open_clip", options.model, options, f"open_clip's download of {options.model}/{tag}")
    quiet = _QuietRandomInit()
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(options.model, pretrained=source, **{key: cfg})
    except Exception as exc:  # open_clip raises RuntimeError, AssertionError, OSError, hub errors, ...
        what = f"load weights {source} into" if source else "build"
        raise WmbenchError(f"cannot {what} open_clip model {options.model!r}: {_first_line(exc)}") from exc
    finally:
        logging.getLogger().removeFilter(quiet)
    return model, facts
