"""Reference-format checkpoints (IRIS's ``checkpoints/last.pt``) load into the iris preset tensor for tensor,
built here from the layout file in ../shared/reference; and ``wmbench eval`` on run folders and checkpoints."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from wmbench import checkpoints
from wmbench import config as cfg
from wmbench.engine.agent import build_agent
from wmbench.errors import WmbenchError

LAYOUT = Path(__file__).resolve().parents[2] / "shared" / "reference" / "iris" / "state_dict_layout.tsv"


def reference_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A reference-format state dict with every key and shape of the layout file, filled with seeded values."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for line in LAYOUT.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        part, key, shape = line.split("\t")
        size = tuple(int(x) for x in shape.strip("()").split(",") if x.strip())
        if key.endswith("attn.mask"):
            state[f"{part}.{key}"] = torch.tril(torch.ones(size))
        elif key.endswith(".indices"):
            state[f"{part}.{key}"] = torch.arange(size[0])
        else:
            state[f"{part}.{key}"] = torch.randn(size, generator=generator) * 0.05
    return state


@pytest.fixture(scope="module")
def iris_agent(registry):
    config = cfg.resolve("iris", "Breakout", 0, "vqvae", "scratch", [], registry)
    return lambda: build_agent(config, registry, 4)


def manual_actor_critic(state: dict[str, torch.Tensor], frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """IRIS's actor-critic step from a zero LSTM state, written out from the checkpoint's tensors."""
    x = frames * 2 - 1
    for i in range(1, 5):
        x = F.relu(
            F.max_pool2d(
                F.conv2d(x, state[f"actor_critic.conv{i}.weight"], state[f"actor_critic.conv{i}.bias"], padding=1), 2
            )
        )
    x = x.flatten(1)
    gates = (
        x @ state["actor_critic.lstm.weight_ih"].T
        + state["actor_critic.lstm.bias_ih"]
        + state["actor_critic.lstm.bias_hh"]
    )
    i, f, g, o = gates.chunk(4, dim=1)
    c = torch.sigmoid(i) * torch.tanh(g)  # the forget gate acts on a zero cell state
    h = torch.sigmoid(o) * torch.tanh(c)
    logits = h @ state["actor_critic.actor_linear.weight"].T + state["actor_critic.actor_linear.bias"]
    value = h @ state["actor_critic.critic_linear.weight"].T + state["actor_critic.critic_linear.bias"]
    return logits, value.squeeze(-1)


def test_layout_file_lands_tensor_for_tensor(iris_agent, tmp_path):
    state = reference_state()
    path = tmp_path / "last.pt"
    torch.save(state, path)
    agent = iris_agent()
    checkpoints.load_reference(agent, path)
    own = agent.state_dict()
    loaded = 0
    for key, value in state.items():
        if checkpoints.REFERENCE_IGNORED.match(key):
            continue
        assert torch.equal(own[checkpoints.REFERENCE_RENAMED.get(key, key)], value), key
        loaded += 1
    assert loaded == len(own)  # every tensor of the agent came from the file

    frames = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    agent.eval()
    with torch.no_grad():
        agent.actor_critic.reset(2)
        logits, values = agent.actor_critic(frames)
        expected = manual_actor_critic(state, frames)
    torch.testing.assert_close((logits, values), expected)

    with torch.no_grad():  # one perturbed weight in the file changes what the loaded agent computes
        tokens = agent.tokenizer.encode(frames)
        wm = agent.world_model(tokens[:, :4])
    state["world_model.transformer.blocks.9.mlp.2.weight"][0, 0] += 0.5
    state["tokenizer.encoder.conv_in.weight"][0, 0, 0, 0] += 0.5
    torch.save(state, path)
    again = iris_agent()
    checkpoints.load_reference(again, path)
    again.eval()
    with torch.no_grad():
        assert not torch.allclose(again.world_model(tokens[:, :4]), wm)
        assert not torch.equal(again.tokenizer.encoder(frames), agent.tokenizer.encoder(frames))


def test_parts_and_mismatches(iris_agent, tmp_path, registry):
    state = reference_state()
    tokenizer_only = tmp_path / "tokenizer.pt"
    torch.save({k: v for k, v in state.items() if k.startswith("tokenizer.")}, tokenizer_only)
    agent = iris_agent()
    before = {k: v.clone() for k, v in agent.state_dict().items()}
    checkpoints.load_reference(agent, tokenizer_only, ("tokenizer",))
    after = agent.state_dict()
    assert all(torch.equal(after[k], before[k]) != k.startswith("tokenizer.") for k in after)
    with pytest.raises(WmbenchError, match="holds no world_model, actor_critic weights"):
        checkpoints.load_reference(iris_agent(), tokenizer_only)
    with pytest.raises(WmbenchError, match="unknown checkpoint part"):
        checkpoints.load_reference(iris_agent(), tokenizer_only, ("tokeniser",))
    pong = build_agent(cfg.resolve("iris", "Pong", 0, "vqvae", "scratch", [], registry), registry, 6)
    full = tmp_path / "full.pt"
    torch.save(state, full)
    with pytest.raises(
        WmbenchError, match=r"actor_critic.actor_linear.weight has shape \(4, 512\), the agent \(6, 512\)"
    ):
        checkpoints.load_reference(pong, full)


def wmbench(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "wmbench", *args], capture_output=True, text=True, cwd=cwd, timeout=600
    )


def test_describe_and_eval_with_init(tmp_path):
    path = tmp_path / "iris.pt"
    torch.save(reference_state(), path)
    result = wmbench(
        "describe",
        "--preset",
        "iris",
        "--game",
        "Breakout",
        "--init",
        str(path),
        "--init-parts",
        "tokenizer,world_model",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert f"loaded tokenizer, world_model from {path}" in result.stdout
    result = wmbench("describe", "--preset", "smoke", "--game", "Breakout", "--init", str(path), cwd=tmp_path)
    assert result.returncode == 2 and "does not fit this agent" in result.stderr
    result = wmbench(
        "eval",
        "--init",
        str(path),
        "--game",
        "Breakout",
        "--episodes",
        "2",
        "--envs",
        "2",
        "--set",
        "env.max_frames_test=200",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    (written,) = (tmp_path / "evals" / "iris").glob("*.json")
    record = json.loads(written.read_text())
    assert record["init"] == str(path) and len(record["returns"]) == 2 and record["protocol"]["temperature"] == 0.5


def test_eval_run_folder_and_checkpoint_file(tmp_path, registry):
    from wmbench.engine.trainer import Trainer
    from wmbench.rundir import RunDir

    overrides = [
        "training.epochs=1",
        "training.collect.steps_per_epoch=20",
        "training.media_every=0",
        "eval.final_episodes=1",
        "eval.num_envs=1",
        "env.max_frames_test=300",
    ]
    config = cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", overrides, registry)
    run = RunDir(tmp_path / "run")
    run.create(cfg.to_dict(config))
    Trainer(config, run, registry, log=lambda *_: None).fit()

    result = wmbench("eval", str(run.path), "--episodes", "3", "--envs", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    (written,) = (run.path / "evals").glob("*.json")
    record = json.loads(written.read_text())
    assert len(record["returns"]) == 3 and record["epoch"] == 1 and record["game"] == "Pong"
    assert record["return_mean"] == pytest.approx(sum(record["returns"]) / 3)
    assert record["human_normalised_score"] == pytest.approx((record["return_mean"] + 20.7) / (14.6 + 20.7))

    result = wmbench(
        "eval", str(run.last_checkpoint), "--episodes", "3", "--envs", "2", "--out", "elsewhere", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    (again,) = (tmp_path / "elsewhere").glob("*.json")
    assert json.loads(again.read_text())["returns"] == record["returns"]  # same seed, same protocol

    for args, message in (
        ([], "one of them"),
        ([str(tmp_path)], "not a run folder"),
        (["--init", str(run.last_checkpoint), "--game", "Pong"], "is a wmbench checkpoint"),
        (["--init", str(run.last_checkpoint)], "--init needs --game"),
        ([str(run.path), "--episodes", "0"], "0 is not in the range x>=1"),
    ):
        result = wmbench("eval", *args, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            args,
            result.stderr,
        )
