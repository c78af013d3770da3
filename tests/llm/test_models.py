import json

import pytest

from llmnas_local.llm import BackendError, list_models, resolve_model
from llmnas_local.llm import models

EXPECTED = {"smollm2", "qwen2.5-7b-instruct", "qwen2.5-coder-7b-instruct", "deepseek-coder-6.7b-instruct",
            "llama-3.1-8b-instruct"}


def test_registry_entries_are_complete():
    registry = models.load_registry()
    assert EXPECTED <= set(registry)
    for name, entry in registry.items():
        assert entry["hf_repo"] and entry["folder"] and entry["chat_template"], name
        s = entry["settings"]
        assert s["max_model_len"] > 0 and 0 < s["gpu_memory_utilization"] <= 1, name
        assert s["dtype"] in ("float32", "bfloat16", "float16") and 0 < s["temperature"] and 0 < s["top_p"] <= 1, name
    assert registry["smollm2"]["source_gguf"].endswith(".gguf")


def test_missing_weights_say_where_to_put_them(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNAS_MODELS_DIR", str(tmp_path))           # no registry there: the checkout's is used
    infos = {m.name: m for m in list_models()}
    assert not infos["qwen2.5-7b-instruct"].present
    with pytest.raises(BackendError) as e:
        resolve_model("qwen2.5-7b-instruct")
    msg = str(e.value)
    assert str(tmp_path / "Qwen2.5-7B-Instruct") in msg and "Qwen/Qwen2.5-7B-Instruct" in msg and "\n" not in msg
    with pytest.raises(BackendError, match="unknown model"):
        resolve_model("gpt-17")


def test_resolve_local_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNAS_MODELS_DIR", str(tmp_path))
    with pytest.raises(BackendError, match="not a model folder"):
        resolve_model(tmp_path)
    (tmp_path / "Qwen2.5-7B-Instruct").mkdir()
    (tmp_path / "Qwen2.5-7B-Instruct" / "config.json").write_text("{}")
    (tmp_path / "Qwen2.5-7B-Instruct" / "model.safetensors").write_bytes(b"")
    assert resolve_model("qwen2.5-7b-instruct") == tmp_path / "Qwen2.5-7B-Instruct"
    assert resolve_model(str(tmp_path / "Qwen2.5-7B-Instruct")) == (tmp_path / "Qwen2.5-7B-Instruct").resolve()
    assert {m.name: m.present for m in list_models()}["qwen2.5-7b-instruct"]


@pytest.mark.slow
def test_embedded_model_is_prepared(smollm2_dir):
    assert resolve_model("smollm2") == smollm2_dir
    config = json.loads((smollm2_dir / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    tok = json.loads((smollm2_dir / "tokenizer_config.json").read_text())
    assert "<|im_start|>" in tok["chat_template"]
    assert not list(smollm2_dir.parent.glob(f".{smollm2_dir.name}.tmp-*"))   # atomic: no leftovers
