import os

import pytest
import torch

# Small models on 2 cores: one intra-op thread per test process avoids OpenMP stalls when cores are shared.
torch.set_num_threads(int(os.environ.get("WMBENCH_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def registry():
    from wmbench.plugins import registry

    return registry()


@pytest.fixture
def smoke_config(registry):
    from wmbench import config as cfg

    return cfg.resolve("smoke", "Pong", 0, "vqvae", "scratch", [], registry)
