"""LLM backends behind one interface, and the local model registry.

    from llmnas_local.llm import Constraint, create_backend
    with create_backend("transformers", model="smollm2") as llm:        # or "vllm", or "openai" + base_url=
        gens = llm.generate([messages], Constraint(grammar=EBNF), n=4, max_tokens=128, seed=0)

Importing this package is cheap: torch, transformers and xgrammar load when a backend is created.
"""
from __future__ import annotations

from typing import Any

from llmnas_local.llm.base import (FINISH_LENGTH, FINISH_STOP, BackendError, BaseBackend, Completion, Constraint,
                                   Generation)
from llmnas_local.llm.models import (ModelInfo, ensure_embedded_model, get_model_info, list_models, models_dir,
                                     prepare_smollm2, resolve_model)
from llmnas_local.llm.openai_backend import OpenAIBackend
from llmnas_local.llm.transformers_backend import TransformersBackend
from llmnas_local.llm.vllm_server import VllmServerBackend

BACKENDS = {"transformers": TransformersBackend, "vllm": VllmServerBackend, "openai": OpenAIBackend}
# Registry settings each backend takes (the rest of [<model>.settings] is for the others).
_BACKEND_SETTINGS = {"transformers": ("dtype",), "vllm": ("max_model_len", "gpu_memory_utilization", "dtype"),
                     "openai": ()}
_GENERATION_DEFAULTS = ("temperature", "top_p")


def create_backend(kind: str, model: str | None = None, **settings: Any) -> BaseBackend:
    """A backend by kind: "transformers" (in-process), "vllm" (managed server) or "openai" (running server, needs
    ``base_url=``). ``model``: a registry name or a local folder (for "openai", the served model name; default: the
    first one the server lists). Registry settings of the model are the defaults; ``settings`` override them."""
    if kind not in BACKENDS:
        raise BackendError(f"unknown backend {kind!r} (choose from {', '.join(BACKENDS)})")
    if model is None and kind != "openai":
        model = "smollm2"
    info = get_model_info(model) if model is not None else None
    if info is not None:
        merged = {k: v for k, v in info.settings.items() if k in _BACKEND_SETTINGS[kind]}
        defaults = {k: info.settings[k] for k in _GENERATION_DEFAULTS if k in info.settings}
        merged.update(settings)
        merged["defaults"] = {**defaults, **(settings.get("defaults") or {})}
        settings = merged
    if kind == "openai":
        if "base_url" not in settings:
            raise BackendError("--llm openai needs the URL of a running server: --llm-url http://127.0.0.1:PORT")
        return OpenAIBackend(settings.pop("base_url"), model, **settings)
    return BACKENDS[kind](model, **settings)


__all__ = ["BACKENDS", "FINISH_LENGTH", "FINISH_STOP", "BackendError", "BaseBackend", "Completion", "Constraint",
           "Generation", "ModelInfo", "OpenAIBackend", "TransformersBackend", "VllmServerBackend", "create_backend",
           "ensure_embedded_model", "get_model_info", "list_models", "models_dir", "prepare_smollm2", "resolve_model"]
