"""The llm-* backbones use their cache (and are refused when they cannot), refuse what they do not support in one
line, and take the options a researcher sets: LoRA variants and targets, a learning rate of their own, dtype,
attention kernel, gradient checkpointing, 8-bit weights; frozen mode without dropout, adapter-only checkpoints,
reused embeddings on trained rows, weights placed by ``device_map``, and rollouts on merged, packed weights with a
key/value cache written in place."""

from __future__ import annotations

import io
import json
import sys

import pytest
import torch

from wmbench.engine.probe import ProbeFailure, probe, probe_backbone
from wmbench.errors import WmbenchError
from wmbench.testing import check_backbone, tiny_shape

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
bnb = pytest.importorskip("bitsandbytes")

from wmbench_llm import LLMOptions  # noqa: E402
from wmbench_llm.backbone import HFCache  # noqa: E402
from wmbench_llm.inference import PackedLinear, PreallocatedLayer, inference_linear  # noqa: E402
from wmbench_llm.loading import build_backbone  # noqa: E402

LLAMA = {"model_type": "llama", "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 64, "max_position_embeddings": 64}  # fmt: skip


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def folder_with(tmp_path, name: str, weights: bool = False, **config):
    """A model folder: config.json only (for pretrained=false), or a saved randomly initialised model."""
    folder = tmp_path / name
    if weights:
        torch.manual_seed(0)
        transformers.AutoModel.from_config(transformers.AutoConfig.for_model(**config)).save_pretrained(folder)
    else:
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps(config))
    return str(folder)


def build(model, mode="frozen", **options):
    return build_backbone(LLMOptions(model=model, **options), mode, tiny_shape())


def randomise_adapters(backbone):
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0.0, 0.05)
    return backbone


# The cache, proven in use ----------------------------------------------------------------------------------------


def test_the_cache_keyword_is_the_one_the_forward_takes():
    backbone = build("tiny-llama", pretrained=False)
    assert backbone.describe()["cache_keyword"] == "cache"  # transformers 5: past_key_values is a deprecated alias
    probe(backbone)


def test_a_cache_that_stops_growing_fails_at_once():
    """A model that drops the keyword it is given (as every model does with unknown keywords) keeps an empty
    cache: the first cached call says so, and the probe refuses the backbone."""
    backbone = build("tiny-llama", pretrained=False).eval()
    backbone._keyword = "past_key_value"  # swallowed by the model's **kwargs
    with pytest.raises(WmbenchError, match="did not use its cache: it holds 0 tokens after 3 were fed"):
        backbone(torch.randn(2, 3, 64), backbone.new_cache(2))
    with pytest.raises(
        WmbenchError, match="failed the build-time probe: WmbenchError: tiny-llama did not use its cache"
    ):
        probe_backbone(backbone, "llm-frozen", "wmbench")


def test_rwkv_is_refused_in_one_line(tmp_path, monkeypatch):
    """RWKV takes no cache keyword (it swallows any): refused at build; and were it passed one, by the probe."""
    rwkv = folder_with(tmp_path, "rwkv", model_type="rwkv", hidden_size=32, num_hidden_layers=2, vocab_size=64,
                       context_length=64, attention_hidden_size=32, intermediate_size=64)  # fmt: skip
    with pytest.raises(WmbenchError, match=r"\(rwkv\) takes no transformers cache .*: supported are decoder-only") as e:
        build(rwkv, pretrained=False)
    assert "\n" not in str(e.value)
    monkeypatch.setattr("wmbench_llm.loading.cache_keyword", lambda model, name: "cache")
    backbone = build(rwkv, pretrained=False)
    with pytest.raises(WmbenchError, match="failed the build-time probe: .* did not use its cache: it holds 0") as e:
        probe_backbone(backbone, "llm-frozen", "wmbench")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("model_type", ["roberta", "xlm-roberta", "camembert", "data2vec-text"])
def test_roberta_family_gets_its_positions(tmp_path, model_type):
    """Fed embeddings, RoBERTa-style models ignore the cache length in their positions: the backbone gives them.
    Unpatched, the probe refuses them."""
    folder = folder_with(tmp_path, model_type, weights=True, model_type=model_type, hidden_size=32,
                         num_hidden_layers=2, num_attention_heads=4, intermediate_size=64, vocab_size=64,
                         max_position_embeddings=40, pad_token_id=1)  # fmt: skip
    backbone = build(folder)
    assert backbone.max_tokens == 20 and backbone._position_offset == 2
    probe(backbone)
    backbone._position_offset = None
    with pytest.raises(ProbeFailure, match="cache: chunks of .* differ from the full forward"):
        probe(backbone)
    with pytest.raises(WmbenchError, match="backbone 'llm-frozen' from package 'wmbench' failed .*: cache:") as info:
        probe_backbone(backbone, "llm-frozen", "wmbench")
    assert "\n" not in str(info.value)


def test_roberta_conforms(tmp_path):
    folder = folder_with(tmp_path, "roberta", weights=True, model_type="roberta", hidden_size=32, num_hidden_layers=2,
                         num_attention_heads=4, intermediate_size=64, vocab_size=64, max_position_embeddings=40)  # fmt: skip
    check_backbone(lambda: randomise_adapters(build(folder, "lora")), trainable=True, masked=True)


@pytest.mark.parametrize(
    ("config", "words"),
    [
        ({"model_type": "t5", "d_model": 32, "num_layers": 1, "num_heads": 2, "d_kv": 8, "d_ff": 64, "vocab_size": 64},
         r"is an encoder-decoder model \(t5\): supported are decoder-only"),
        ({"model_type": "opt", "hidden_size": 64, "word_embed_proj_dim": 32, "num_hidden_layers": 1,
          "num_attention_heads": 4, "ffn_dim": 64, "vocab_size": 64, "max_position_embeddings": 64},
         r"\(opt\) takes inputs 32 wide but its hidden states are 64 wide"),
        ({"model_type": "albert", "hidden_size": 64, "embedding_size": 16, "num_hidden_layers": 1,
          "num_attention_heads": 4, "intermediate_size": 64, "vocab_size": 64, "max_position_embeddings": 64},
         r"\(albert\) takes inputs 16 wide but its hidden states are 64 wide"),
        ({"model_type": "my-own-net", "auto_map": {"AutoConfig": "configuration_mine.MyConfig"}},
         "needs its own Python code .*: set backbone.trust_remote_code=true if you trust it"),
    ],
)  # fmt: skip
def test_unsupported_architectures_are_refused_in_one_line(tmp_path, config, words):
    with pytest.raises(WmbenchError, match=words) as info:
        build(folder_with(tmp_path, "m", **config), pretrained=False)
    assert "\n" not in str(info.value)


# What a researcher sets -----------------------------------------------------------------------------------------


def test_lora_options_and_variants():
    lora = build("tiny-llama", "lora", pretrained=False, lora_rank=4, lora_alpha=8, lora_dropout=0.2,
                 lora_targets=("q_proj", "down_proj"))  # fmt: skip
    config = lora.model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.lora_dropout) == (4, 8, 0.2)
    assert lora.describe()["lora"]["targets"] == ["down_proj", "q_proj"]
    assert {n.split(".")[-4] for n, p in lora.named_parameters() if p.requires_grad} == {"q_proj", "down_proj"}
    rs = build("tiny-llama", "lora", pretrained=False, lora_rank=4, lora_alpha=8, lora_variant="rslora")
    assert rs.model.base_model.model.layers[0].self_attn.q_proj.scaling["default"] == pytest.approx(8 / 4**0.5)
    dora = build("tiny-llama", "lora", pretrained=False, lora_variant="dora")
    assert any("lora_magnitude_vector" in n for n, p in dora.named_parameters() if p.requires_grad)
    check_backbone(lambda: randomise_adapters(build("tiny-llama", "lora", pretrained=False, lora_variant="dora")))
    for options, words in [({"lora_variant": "vera"}, "lora_variant must be one of"),
                           ({"lora_targets": ("c_attn",)}, "are not modules of llama"),
                           ({"lora_dropout": 1.0}, "lora_dropout must be in"),
                           ({"llm_lr": 0.0}, "llm_lr must be above zero")]:  # fmt: skip
        with pytest.raises(WmbenchError, match=words):
            build("tiny-llama", "lora", pretrained=False, **options)


def test_llm_learning_rate_and_conv1d_weight_decay():
    from wmbench.engine.trainer import world_model_optimizer
    from wmbench.engine.world_model import WorldModel

    backbone = build("tiny-gpt2", "full", pretrained=False, llm_lr=1e-5)
    wm = WorldModel(backbone, vocab_size=16, tokens_per_frame=4, num_actions=3)
    optimiser = world_model_optimizer(wm, lr=1e-3, weight_decay=0.01)
    lr_of = {id(p): (g["lr"], g["weight_decay"]) for g in optimiser.param_groups for p in g["params"]}
    llm = dict(backbone.model.named_parameters())
    assert lr_of[id(llm["h.0.attn.c_attn.weight"])] == (1e-5, 0.01)  # a Conv1D weight: decayed like any linear one
    assert lr_of[id(llm["h.0.ln_1.weight"])] == (1e-5, 0.0)
    assert lr_of[id(wm.head_observations.parameters().__next__())][0] == 1e-3
    assert sum(len(g["params"]) for g in optimiser.param_groups) == len([p for p in wm.parameters() if p.requires_grad])


def test_dtype_attention_kernel_and_gradient_checkpointing():
    half = build("tiny-llama", pretrained=False, dtype="bfloat16")
    assert half.model.layers[0].self_attn.q_proj.weight.dtype == torch.bfloat16
    probe(half)
    x = torch.randn(2, 6, 64)  # a float32 world model's embeddings: in and out in its dtype
    assert half(x).dtype == half(x, half.new_cache(2)).dtype == torch.float32
    half_lora = randomise_adapters(build("tiny-llama", "lora", pretrained=False, dtype="bfloat16")).eval()
    x = torch.randn(2, 6, 64, dtype=torch.bfloat16)
    with torch.no_grad():
        expected = half_lora(x)
        with half_lora.rollout():
            torch.testing.assert_close(half_lora(x), expected, atol=0.05, rtol=0.05)
    eager = build("tiny-llama", pretrained=False, attn_implementation="eager")
    assert eager.model.config._attn_implementation == "eager"
    with pytest.raises(WmbenchError, match="cannot load 'tiny-llama'"):
        build("tiny-llama", pretrained=False, attn_implementation="no-such-kernel")
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(0)
        backbone = build("tiny-llama", "full", pretrained=False, gradient_checkpointing=checkpointing).train()
        assert backbone.model.is_gradient_checkpointing == checkpointing
        backbone(torch.randn(2, 8, 64, generator=torch.Generator().manual_seed(1))).square().mean().backward()
        grads.append(backbone.model.layers[0].mlp.up_proj.weight.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_8bit_weights():
    backbone = build("tiny-llama", "lora", pretrained=False, load_in_8bit=True)
    assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in backbone.modules())
    assert backbone.describe()["quantisation"] == "int8 (LLM.int8)"
    probe(backbone)
    x = torch.randn(2, 6, 64)
    with torch.no_grad(), backbone.eval().rollout():  # 8-bit weights stay as they are: nothing merged into them
        assert any(isinstance(m, bnb.nn.Linear8bitLt) for m in backbone.modules())
        torch.testing.assert_close(backbone(x), backbone.model(inputs_embeds=x).last_hidden_state)
    with pytest.raises(WmbenchError, match="load_in_8bit applies to llm-frozen and llm-lora"):
        build("tiny-llama", "qlora", pretrained=False, load_in_8bit=True)


def test_frozen_mode_runs_without_dropout(tmp_path):
    folder = folder_with(tmp_path, "gpt2", weights=True, model_type="gpt2", n_embd=32, n_layer=1, n_head=4,
                         vocab_size=64, n_positions=64, resid_pdrop=0.3, attn_pdrop=0.3, embd_pdrop=0.3)  # fmt: skip
    frozen, lora = build(folder), build(folder, "lora")
    assert (frozen.model.config.resid_pdrop, frozen.model.config.attn_pdrop) == (0.0, 0.0)
    assert lora.model.config.resid_pdrop == 0.3
    x = torch.randn(2, 8, 32)
    frozen.train()
    torch.testing.assert_close(frozen(x), frozen(x))


def test_checkpoints_hold_adapters_and_check_the_base_revision(tmp_path):
    folder = folder_with(tmp_path, "llama", weights=True, **LLAMA)
    backbone = randomise_adapters(build(folder, "lora"))
    state = backbone.state_dict()
    assert {k for k in state if not k.endswith("_extra_state")} == {
        n for n, p in backbone.named_parameters() if p.requires_grad
    }
    assert state["_extra_state"]["revision"].startswith("sha256 ")
    buffer = io.BytesIO()
    torch.save(state, buffer)
    x = torch.randn(2, 8, 32)
    fresh = build(folder, "lora")
    buffer.seek(0)
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        torch.testing.assert_close(fresh.eval()(x), backbone.eval()(x))
    other = folder_with(tmp_path, "other", weights=True, **{**LLAMA, "rms_norm_eps": 1e-5})
    with torch.no_grad():  # other weights: another revision
        build(other, "lora").model.get_base_model().layers[0].mlp.up_proj.weight.add_(1.0)
    elsewhere = build(other, "lora")
    elsewhere._revision = "sha256 0000"
    buffer.seek(0)
    with pytest.raises(
        WmbenchError, match="trained on .* at revision sha256 .*, but .* here is at revision sha256 0000"
    ):
        elsewhere.load_state_dict(torch.load(buffer, weights_only=True))
    full = build("tiny-llama", "full", pretrained=False)  # random weights: the checkpoint holds them all
    assert len(full.state_dict()) == len(full.model.state_dict()) + 1


def test_hub_revision_is_loaded_recorded_and_checked(tmp_path, monkeypatch):
    """backbone.revision picks the hub snapshot (a branch, tag or commit; here from an offline hub cache), the
    backbone records its commit, and a checkpoint of another revision is refused."""
    import huggingface_hub

    repo = tmp_path / "models--someone--tiny"
    for ref, commit, seed in (("main", "a" * 40, 0), ("v2", "b" * 40, 1)):
        torch.manual_seed(seed)
        config = transformers.AutoConfig.for_model(**LLAMA)
        transformers.AutoModel.from_config(config).save_pretrained(repo / "snapshots" / commit)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    built = {rev: build("someone/tiny", "lora", revision=rev) for rev in (None, "v2", "b" * 40)}
    assert {rev: b.revision for rev, b in built.items()} == {None: "a" * 40, "v2": "b" * 40, "b" * 40: "b" * 40}
    up = {rev: b.model.get_base_model().layers[0].mlp.up_proj.weight for rev, b in built.items()}
    assert torch.equal(up["v2"], up["b" * 40]) and not torch.equal(up["v2"], up[None])  # the v2 snapshot's weights
    buffer = io.BytesIO()
    torch.save(built[None].state_dict(), buffer)
    buffer.seek(0)
    with pytest.raises(WmbenchError, match=f"trained on 'someone/tiny' at revision {'a' * 40}, but .* {'b' * 40}"):
        built["v2"].load_state_dict(torch.load(buffer, weights_only=True))


def test_reused_embeddings_skip_special_and_untrained_rows(tmp_path):
    folder = folder_with(tmp_path, "llama", weights=True, **{**LLAMA, "bos_token_id": 0, "eos_token_id": 1,
                                                                "pad_token_id": 2})  # fmt: skip
    backbone = build(folder, embeddings="reuse")
    with torch.no_grad():
        backbone.model.get_input_embeddings().weight[10].zero_()  # a row no token trained
    ids = backbone.observation_embedding(60).ids.tolist()
    assert len(set(ids)) == 60 and not {0, 1, 2, 10} & set(ids)
    with pytest.raises(WmbenchError, match="61 image tokens do not fit the LLM's 60 trained token rows"):
        backbone.observation_embedding(61)


@pytest.mark.parametrize("mode", ["frozen", "lora", "qlora"])
def test_rollout_weights_compute_the_same_function(mode):
    backbone = randomise_adapters(build("tiny-llama", mode, pretrained=False)).eval()
    x = torch.randn(2, 12, 64)
    with torch.no_grad():
        expected = backbone(x)
        training_modules = dict(backbone.named_modules())
        with backbone.rollout():
            linear = [m for m in backbone.modules() if isinstance(m, torch.nn.Linear)]
            assert linear and all(type(m) is PackedLinear for m in linear)  # merged, dequantised, packed
            assert not any("lora_A" in n for n, _ in backbone.named_modules())
            merged = backbone(x)
            cache = backbone.new_cache(2)
            stepped = torch.cat([backbone(x[:, i : i + 1], cache) for i in range(12)], dim=1)
        assert dict(backbone.named_modules()) == training_modules
        torch.testing.assert_close(merged, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stepped, expected, atol=1e-4, rtol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # bf16=true: weights packed in bfloat16 once, not per call
            expected = backbone(x)
            with backbone.rollout():
                linear = [m for m in backbone.modules() if isinstance(m, torch.nn.Linear)]
                assert all(type(m) is PackedLinear and m.weight.dtype == torch.bfloat16 for m in linear)
                merged = backbone(x)
                cache = backbone.new_cache(2)
                stepped = torch.cat([backbone(x[:, i : i + 3], cache) for i in range(0, 12, 3)], dim=1)
        for got in (merged, stepped):  # bfloat16 products in another order: to bfloat16's precision
            assert got.dtype == torch.float32 and (got - expected).abs().max() < 0.02 * expected.abs().max()
    backbone.train()
    with backbone.rollout():  # train mode: dropout is on, nothing is swapped
        assert dict(backbone.named_modules()) == training_modules


def test_packed_linear_is_the_plain_product():
    layer = torch.nn.Linear(48, 80)
    packed = inference_linear(layer)
    assert type(packed) is PackedLinear and torch.equal(packed.weight, layer.weight)  # readable by code that reads it
    for x in (torch.randn(8, 48), torch.randn(3, 5, 48), torch.randn(2, 1, 48).transpose(0, 1)):
        torch.testing.assert_close(packed(x), layer(x))
    assert inference_linear(layer, pack=False) is None  # a plain layer gains nothing but packing


def test_the_cache_is_written_in_place():
    """Keys and values go into buffers allocated once for max_tokens; a selected copy continues on its own buffers,
    dropped tokens are overwritten in place, a longer sequence gets larger buffers; each equals transformers' own
    growing cache."""
    backbone = build("tiny-llama", pretrained=False).eval()
    x = torch.randn(3, 20, 64)
    with torch.no_grad():
        cache, growing = backbone.new_cache(3), HFCache(transformers.DynamicCache(config=backbone.model.config), 3)
        layer = cache.past.layers[0]
        outputs = [torch.cat([backbone(x[:, i : i + 5], c) for i in range(0, 15, 5)], 1) for c in (cache, growing)]
        torch.testing.assert_close(outputs[0], outputs[1])
        assert layer._keys.shape[2] == backbone.max_tokens == 20 and layer.keys.shape[2] == 15
        assert layer.keys.data_ptr() == layer._keys.data_ptr() and layer.keys._base is layer._keys
        rows = torch.tensor([2, 0])
        pruned = cache.select(rows)
        torch.testing.assert_close(backbone(x[rows, 15:], pruned), backbone(x[rows])[:, 15:])
        assert layer.keys.shape == (3, 2, 15, 16) and pruned.past.layers[0]._keys.shape[0] == 2
        torch.testing.assert_close(backbone(x[:, 15:], cache), backbone(x)[:, 15:])
        buffer = layer._keys
        cache.drop(4)  # parallel prediction drops its queries: the next tokens overwrite them in the same buffers
        assert layer.keys.shape[2] == 16 and layer._keys is buffer
        torch.testing.assert_close(backbone(x[:, 16:], cache), backbone(x)[:, 16:])
        assert layer._keys is buffer and layer.keys.data_ptr() == buffer.data_ptr()
        longer = PreallocatedLayer(4)
        for i in range(3):
            keys, _ = longer.update(x[:2, None, 3 * i : 3 * i + 3], x[:2, None, 3 * i : 3 * i + 3])
        torch.testing.assert_close(keys, x[:2, None, :9])


def test_device_map_places_the_weights():
    backbone = build("tiny-llama", "qlora", pretrained=False, device_map="cpu")
    assert {p.device.type for p in backbone.parameters()} == {"cpu"}
    probe(backbone)
    with pytest.raises(WmbenchError, match="cannot load 'tiny-llama': When passing device_map as a string") as info:
        build("tiny-llama", pretrained=False, device_map="nowhere")
    assert "\n" not in str(info.value)


def test_remote_code_runs_when_asked(tmp_path, monkeypatch):
    """A model folder with its own Python code builds with trust_remote_code=true (and only then)."""
    monkeypatch.setattr(transformers.dynamic_module_utils, "HF_MODULES_CACHE", str(tmp_path / "modules"))
    monkeypatch.setattr(sys, "path", list(sys.path))
    folder = folder_with(tmp_path, "mine", **{**LLAMA, "model_type": "my-own-net", "auto_map": {
        "AutoConfig": "configuration_mine.MyConfig", "AutoModel": "modeling_mine.MyModel"}})  # fmt: skip
    (tmp_path / "mine" / "configuration_mine.py").write_text(
        "from transformers import LlamaConfig\n\n\nclass MyConfig(LlamaConfig):\n    model_type = 'my-own-net'\n"
    )
    (tmp_path / "mine" / "modeling_mine.py").write_text(
        "from transformers import LlamaModel\n\nfrom .configuration_mine import MyConfig\n\n\n"
        "class MyModel(LlamaModel):\n    config_class = MyConfig\n"
    )
    with pytest.raises(WmbenchError, match="needs its own Python code"):
        build(folder, pretrained=False)
    backbone = build(folder, pretrained=False, trust_remote_code=True)
    assert type(backbone.model).__name__ == "MyModel" and backbone.describe()["architecture"] == "my-own-net"
    probe(backbone)


def test_4bit_options():
    single = build("tiny-llama", "qlora", pretrained=False, quant_double=False)
    assert single.describe()["quantisation"] == "nf4, compute float32"
    layer = next(m for m in single.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.quant_state.state2 is None  # no second quantisation of the constants
    double = build("tiny-llama", "qlora", pretrained=False)
    assert next(m for m in double.modules() if isinstance(m, bnb.nn.Linear4bit)).weight.quant_state.state2 is not None


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_4bit_weights_are_quantised_on_the_gpu():
    backbone = build("tiny-llama", "qlora", pretrained=False, device_map="cuda")
    layer = next(m for m in backbone.modules() if isinstance(m, bnb.nn.Linear4bit))
    assert layer.weight.device.type == "cuda" and layer.weight.quant_state.absmax.device.type == "cuda"
    probe(backbone)


# State-space models through their own cache -----------------------------------------------------------------------

MAMBA = {
    "mamba": {"model_type": "mamba", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 64, "state_size": 4},
    "mamba2": {"model_type": "mamba2", "hidden_size": 32, "num_hidden_layers": 2, "vocab_size": 64, "state_size": 8,
               "num_heads": 4, "head_dim": 16, "n_groups": 1, "expand": 2, "chunk_size": 8},
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("arch", list(MAMBA))
def test_mamba_conforms_through_its_own_cache(tmp_path, arch):
    folder = folder_with(tmp_path, arch, weights=True, **MAMBA[arch])
    backbone = build(folder)
    assert backbone.max_tokens == 20 and backbone.describe()["max_positions"] is None
    probe(backbone)
    check_backbone(
        lambda: randomise_adapters(build(folder, "lora")), trainable=True, dtypes=(), atol=1e-3, masked=False
    )
    backbone._keyword = "no_such_cache"  # dropped by the model: the cache stays empty
    with pytest.raises(WmbenchError, match="did not use its cache: it holds 0 tokens after 2 were fed"):
        backbone(torch.randn(1, 2, 32), backbone.new_cache(1))


def test_mamba_refuses_parallel_prediction_in_one_line(tmp_path):
    """A recurrent state cannot drop tokens, nor does Mamba attend through a mask: world_model.parallel is refused."""
    import os
    import subprocess
    import sys

    folder = folder_with(tmp_path, "mamba", **MAMBA["mamba"])
    backbone = build(folder, pretrained=False)
    assert not backbone.takes_mask
    with pytest.raises(ValueError, match="takes no custom mask"):
        backbone(torch.randn(1, 4, 32), mask=torch.ones(4, 4, dtype=torch.bool).tril())
    args = ["describe", "-b", "llm-frozen", "--set", f"backbone.model={folder}", "--set", "backbone.pretrained=false",
            "--set", "world_model.parallel=true"]  # fmt: skip
    result = subprocess.run([sys.executable, "-m", "wmbench", *args], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert "world_model.parallel needs a backbone that takes an attention mask" in result.stderr.splitlines()[-1]
