"""From options to a backbone: the config checked for what the llm-* path supports, loading (4-bit, 8-bit or
plain), LoRA and its variants, what trains."""

from __future__ import annotations

import inspect
import tempfile
import warnings
from typing import Any

import torch

from wmbench.errors import WmbenchError
from wmbench.plugins import import_module
from wmbench_llm.options import LLMOptions
from wmbench_llm.sources import Source, hub_error, plain_copy, resolve_source

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
COMPUTE_DTYPES = ("float32", "bfloat16")
EMBEDDINGS = ("project", "reuse")
LORA_VARIANTS = ("lora", "dora", "rslora")
CACHE_KEYWORDS = ("cache", "past_key_values")
"""The keyword a model's forward takes its key/value cache by: ``cache`` in transformers 5 (where
``past_key_values`` is a deprecated alias), ``past_key_values`` before."""
LORA_EXCLUDED = {"mamba": ["out_proj", "dt_proj"], "mamba2": ["out_proj"]}
"""Linear layers that peft cannot adapt in a family (or whose weight the forward reads directly, bypassing an
adapter), left out of ``all-linear``."""
SUPPORTED = (
    "decoder-only transformers (Llama, GPT-2, ...), BERT/RoBERTa-style encoders run as decoders, and state-space "
    "models with a transformers cache (Mamba, Mamba-2)"
)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def load_config(source: Source, trust_remote_code: bool = False):
    """The model's config, set up to run as a causal decoder (``is_decoder`` for BERT-style models)."""
    transformers = import_module("transformers")
    if source.architecture:
        config = transformers.AutoConfig.for_model(**source.architecture)
    else:
        try:
            config = transformers.AutoConfig.from_pretrained(
                source.path, gguf_file=source.gguf_file, revision=source.revision, trust_remote_code=trust_remote_code
            )
        except OSError as exc:
            raise hub_error(source, exc) from exc
        except (ValueError, KeyError) as exc:
            if "trust_remote_code" in str(exc):
                raise WmbenchError(
                    f"{source.path!r} needs its own Python code (remote code): set backbone.trust_remote_code=true "
                    "if you trust it"
                ) from exc
            raise WmbenchError(f"cannot read the config of {source.path!r}: {_first_line(exc)}") from exc
    if getattr(config, "is_encoder_decoder", False):
        raise WmbenchError(
            f"{source.path!r} is an encoder-decoder model ({config.model_type}): supported are {SUPPORTED}"
        )
    if hasattr(config, "is_decoder"):
        config.is_decoder = True
    return config


def without_dropout(config) -> None:
    """Every dropout probability of the config set to zero (frozen mode: the LLM is a fixed function)."""
    for key, value in config.to_dict().items():
        if ("dropout" in key or "pdrop" in key) and isinstance(value, float):
            setattr(config, key, 0.0)


def cache_keyword(model, name: str) -> str:
    """The keyword ``model``'s forward takes its cache by; refuses a model that takes none (RWKV: a model
    silently drops keywords it does not know, and its cache would stay empty)."""
    parameters = inspect.signature(type(model).forward).parameters
    for keyword in CACHE_KEYWORDS:
        if keyword in parameters:
            return keyword
    raise WmbenchError(
        f"{name} ({model.config.model_type}) takes no transformers cache (its forward has no "
        f"{' or '.join(CACHE_KEYWORDS)} argument): supported are {SUPPORTED}"
    )


def check_width(model, name: str) -> None:
    """Refuse a model whose inputs are narrower or wider than its hidden states (OPT-350m, ALBERT)."""
    inputs, hidden = model.get_input_embeddings().embedding_dim, model.config.hidden_size
    if inputs != hidden:
        raise WmbenchError(
            f"{name} ({model.config.model_type}) takes inputs {inputs} wide but its hidden states are {hidden} wide "
            f"(a projection in between): supported are models whose input width is hidden_size"
        )


def position_offset(model) -> int | None:
    """RoBERTa-family models number positions from ``padding_idx + 1`` and, fed embeddings, ignore the cache: the
    backbone gives them their positions (the offset returned). None for models that count positions themselves."""
    embeddings = getattr(model, "embeddings", None)
    if hasattr(embeddings, "create_position_ids_from_inputs_embeds"):
        return embeddings.padding_idx + 1
    return None


def _quantisation(options: LLMOptions, mode: str):
    if mode != "qlora" and not options.load_in_8bit:
        return None
    transformers = import_module("transformers")
    import_module("bitsandbytes")
    if options.load_in_8bit:
        return transformers.BitsAndBytesConfig(load_in_8bit=True)
    return transformers.BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=options.quant_double,
        bnb_4bit_compute_dtype=DTYPES[options.quant_compute_dtype],
    )


def load_model(source: Source, config, options: LLMOptions, quantization=None):
    """The base model (no LM head) in ``options.dtype``, pretrained or randomly initialised, quantised if asked."""
    transformers = import_module("transformers")
    kwargs: dict[str, Any] = {"dtype": DTYPES[options.dtype], "trust_remote_code": options.trust_remote_code}
    if options.attn_implementation is not None:
        kwargs["attn_implementation"] = options.attn_implementation
    device_map = options.device_map or ("cpu" if quantization is not None else None)
    placed = {**kwargs, "device_map": device_map, "quantization_config": quantization}
    try:
        if options.pretrained and not (quantization is not None and source.gguf_file):
            model = transformers.AutoModel.from_pretrained(
                source.path, config=config, gguf_file=source.gguf_file, revision=source.revision, **placed
            )
        else:
            # Random weights, or quantised from GGUF: bitsandbytes quantises and accelerate places the weights while
            # loading, so through a plain folder.
            if options.pretrained:
                model = load_model(source, config, options)
            else:
                model = transformers.AutoModel.from_config(config, **kwargs)
            if device_map is not None:
                with tempfile.TemporaryDirectory(prefix="wmbench-llm-") as tmp:
                    plain_copy(model).save_pretrained(tmp)
                    model = transformers.AutoModel.from_pretrained(tmp, **placed)
    except OSError as exc:
        raise hub_error(source, exc) from exc
    except (ValueError, ImportError) as exc:  # an unknown attention kernel, a missing optional package, ...
        raise WmbenchError(f"cannot load {options.model!r}: {_first_line(exc)}") from exc
    for layer in model.modules():  # bitsandbytes repacks 4-bit weights for CPU inference on the first no-grad call
        if hasattr(layer, "support_avx512bf16_for_cpu"):  # and keeps that layout in training, where it fails: off
            layer.support_avx512bf16_for_cpu = False
    if getattr(model, "pooler", None) is not None:  # BERT's pooler reads the first token only: not a decoder part
        model.pooler = None
    return model


def lora_targets(model, requested: tuple[str, ...]) -> str | list[str]:
    """``all-linear`` (peft's rule: every linear layer of every block) or the requested module names, checked."""
    if tuple(requested) == ("all-linear",):
        return "all-linear"
    names = {name.rsplit(".", 1)[-1] for name, _ in model.named_modules()}
    missing = sorted(set(requested) - names)
    if not requested or missing:
        raise WmbenchError(
            f"backbone.lora_targets {missing or list(requested)} are not modules of {model.config.model_type} "
            f"(give module names, or all-linear)"
        )
    return list(requested)


def add_lora(model, options: LLMOptions):
    """peft LoRA (or DoRA, rsLoRA) on ``model``; its base weights are frozen. Returns the peft model and the
    (last) names of the modules adapted."""
    peft = import_module("peft")
    targets = lora_targets(model, options.lora_targets)
    config = peft.LoraConfig(
        r=options.lora_rank,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=targets,
        exclude_modules=LORA_EXCLUDED.get(model.config.model_type) if targets == "all-linear" else None,
        fan_in_fan_out=any(type(m).__name__ == "Conv1D" for m in model.modules()),  # GPT-2 stores weights transposed
        use_dora=options.lora_variant == "dora",
        use_rslora=options.lora_variant == "rslora",
    )
    with warnings.catch_warnings():  # peft calls a transformers method deprecated in v5; nothing for users to do
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing", category=FutureWarning)
        try:
            peft_model = peft.get_peft_model(model, config)
        except ValueError as exc:  # a module peft cannot adapt in this family
            raise WmbenchError(f"backbone.lora_targets: {_first_line(exc)}") from exc
    return peft_model, sorted({name.rsplit(".", 1)[-1] for name in peft_model.peft_config["default"].target_modules})


def _choice(key: str, value: Any, allowed) -> None:
    if value not in allowed:
        raise WmbenchError(f"backbone.{key} must be one of {', '.join(allowed)}, got {value!r}")


def _check_options(options: LLMOptions, mode: str) -> None:
    _choice("embeddings", options.embeddings, EMBEDDINGS)
    _choice("quant_compute_dtype", options.quant_compute_dtype, COMPUTE_DTYPES)
    _choice("dtype", options.dtype, DTYPES)
    _choice("lora_variant", options.lora_variant, LORA_VARIANTS)
    if mode in ("lora", "qlora") and options.lora_rank < 1:
        raise WmbenchError(f"backbone.lora_rank must be at least 1, got {options.lora_rank}")
    if not 0 <= options.lora_dropout < 1:
        raise WmbenchError(f"backbone.lora_dropout must be in [0, 1), got {options.lora_dropout}")
    if options.llm_lr is not None and not options.llm_lr > 0:
        raise WmbenchError(f"backbone.llm_lr must be above zero, got {options.llm_lr}")
    if options.load_in_8bit and mode not in ("frozen", "lora"):
        raise WmbenchError(f"backbone.load_in_8bit applies to llm-frozen and llm-lora, not to llm-{mode}")


def build_backbone(options: LLMOptions, mode: str, shape=None):
    """An :class:`~wmbench_llm.backbone.LLMBackbone` in ``mode`` (frozen, lora, qlora or full)."""
    from wmbench_llm.backbone import LLMBackbone

    _check_options(options, mode)
    source = resolve_source(options.model, options.revision)
    if source.architecture and options.pretrained:
        raise WmbenchError(f"{options.model} is an architecture without weights: set backbone.pretrained=false")
    config = load_config(source, options.trust_remote_code)
    if mode == "frozen":
        without_dropout(config)
    quantization = _quantisation(options, mode)
    model = load_model(source, config, options, quantization)
    check_width(model, options.model)
    keyword = cache_keyword(model, options.model)
    facts: dict[str, Any] = {
        "model": options.model,
        "architecture": config.model_type,
        "mode": mode,
        "pretrained": options.pretrained,
        "dtype": options.dtype,
        "quantisation": "none",
        "lora": None,
        "embeddings": options.embeddings,
        "cache_keyword": keyword,
    }
    if options.load_in_8bit:
        facts["quantisation"] = "int8 (LLM.int8)"
    elif quantization is not None:
        double = ", double quant" if options.quant_double else ""
        facts["quantisation"] = f"nf4{double}, compute {options.quant_compute_dtype}"
    offset = position_offset(model)
    if options.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if mode in ("lora", "qlora"):
        model, targets = add_lora(model, options)
        facts["lora"] = {
            "variant": options.lora_variant,
            "rank": options.lora_rank,
            "alpha": options.lora_alpha,
            "dropout": options.lora_dropout,
            "targets": targets,
        }
    else:
        model.requires_grad_(mode == "full")
    if options.embeddings == "project":  # the token table is not in the path: inputs arrive as embeddings
        model.get_input_embeddings().requires_grad_(False)
    limit = getattr(config, "max_position_embeddings", None)  # None: no positions (state-space models)
    positions = None if limit is None else limit - (offset or 0)
    needed = getattr(shape, "max_tokens", None) or positions or 4096
    if positions is not None and needed > positions:
        raise WmbenchError(f"the world model feeds {needed} tokens but {options.model} takes at most {positions}")
    return LLMBackbone(
        model, max_tokens=needed, facts=facts, source=source, options=options, keyword=keyword, position_offset=offset
    )
