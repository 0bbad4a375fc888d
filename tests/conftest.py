"""Shared fixtures. Assets are fetched once per machine into $QUANTA_CACHE (the user's cache by default)."""

import pytest
import torch

# Tiny models run several times faster on one thread than on two shared cores.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Back to one thread before every test: scikit-learn and UMAP (threadpoolctl) reset OpenMP's thread
    count, which torch shares, to the machine's default when they finish."""
    torch.set_num_threads(1)


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private $QUANTA_CACHE for tests that must not see the shared cache."""
    monkeypatch.setenv("QUANTA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="session")
def smollm2():
    """SmolLM2-135M from the registry asset, loaded once for the whole test session."""
    from quanta_interp import lm

    return lm.load("smollm2")
