"""Shared fixtures. Assets are fetched once per machine into $QUANTA_CACHE (the user's cache by default)."""

import os

import pytest
import torch

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch):
    """An empty, private $QUANTA_CACHE for tests that must not see the shared cache."""
    monkeypatch.setenv("QUANTA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"
