"""The managed vLLM server's default memory share: what the model needs (weights, KV cache of a call's sequences,
overhead), leaving the rest of the GPU to the trainings. No server is started."""
from __future__ import annotations

import json

import pytest

from llmnas_local.llm.vllm_server import SHARE_BOUNDS, memory_share

QWEN_7B = {"num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "hidden_size": 3584,
           "torch_dtype": "bfloat16"}


def folder(tmp_path, config: dict, weight_bytes: int):
    (tmp_path / "config.json").write_text(json.dumps(config))
    with open(tmp_path / "model.safetensors", "wb") as f:
        f.truncate(weight_bytes)              # sparse: the size is what counts
    return tmp_path


def test_a_7b_model_takes_a_sixth_of_an_h200(tmp_path):
    m = folder(tmp_path, QWEN_7B, 15_230_000_000)
    kv = 2 * 28 * 4 * 128 * 2 * 8192 * 8                          # K and V, layers, kv heads, head dim, bf16, 8 x 8192
    need = (1.1 * 15_230_000_000 + kv) / 2**30 + 3.0
    assert memory_share(m, 8192, total_gib=140) == pytest.approx(need / 140, abs=1e-3)
    assert 0.15 < memory_share(m, 8192, total_gib=140) < 0.17
    assert memory_share(m, 8192, total_gib=24) == SHARE_BOUNDS[1]          # a 24 GB card has no room to spare
    assert memory_share(m, 8192, "float32", total_gib=140) > memory_share(m, 8192, total_gib=140)


def test_a_small_model_gets_the_floor_and_unknowns_get_vllms_default(tmp_path):
    m = folder(tmp_path, {**QWEN_7B, "num_hidden_layers": 2}, 100_000_000)
    assert memory_share(m, 2048, total_gib=140) == SHARE_BOUNDS[0]
    assert memory_share(m, 2048, device="cpu") == SHARE_BOUNDS[1]       # no GPU to read
    (m / "config.json").write_text("{}")
    assert memory_share(m, 2048, total_gib=140) == SHARE_BOUNDS[1]
