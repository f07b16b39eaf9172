"""Shared fixtures: where the real data lives, and a private cache folder per test session. How tests compare
numbers (every tolerance says where it comes from): tests/README.md."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent
SHARED_DATA = Path(os.environ.get("SSL_CTX_DATA", REPO.parent / "shared" / "data"))

torch.set_num_threads(min(2, torch.get_num_threads()))


def real_data_available(archive: str) -> bool:
    return (SHARED_DATA / archive).exists()


@pytest.fixture(scope="session")
def real_data_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for end-to-end tests: the shared data folder and one cache shared by the whole session."""
    if not SHARED_DATA.exists():
        pytest.fail(f"real data folder {SHARED_DATA} is missing; set SSL_CTX_DATA to the folder with the archives")
    cache = Path(os.environ.get("SSL_CTX_TEST_CACHE") or tmp_path_factory.mktemp("cache"))
    return {"SSL_CTX_DATA": str(SHARED_DATA), "SSL_CTX_CACHE": str(cache)}


@pytest.fixture
def real_data(real_data_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for key, value in real_data_env.items():
        monkeypatch.setenv(key, value)
    return real_data_env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty data folder and a private cache under ``tmp_path``, set as SSL_CTX_DATA / SSL_CTX_CACHE."""
    (tmp_path / "data").mkdir()
    monkeypatch.setenv("SSL_CTX_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("SSL_CTX_CACHE", str(tmp_path / "cache"))
    return tmp_path
