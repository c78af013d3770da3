"""LLM backends behind one interface, and the local model registry.

    from llmnas_local.llm import EMBEDDED, Constraint, create_backend
    with create_backend("transformers", model=EMBEDDED) as llm:        # or "vllm", or "openai" + base_url=
        gens = llm.generate([messages], Constraint(grammar=EBNF), n=4, max_tokens=128, seed=0)

A :class:`BackendSpec` names a backend as one value (kind, model, base URL, settings); equal specs share a backend.
Importing this package is cheap: torch, transformers and xgrammar load when a backend is created.
"""
from __future__ import annotations

from llmnas_local.llm.backends import BACKENDS, BackendSpec, create_backend
from llmnas_local.llm.base import (FINISH_LENGTH, FINISH_STOP, BackendError, BaseBackend, Completion, Constraint,
                                   Generation)
from llmnas_local.llm.models import (EMBEDDED, ModelInfo, ensure_embedded_model, get_model_info, list_models,
                                     models_dir, prepare_smollm2, resolve_model)
from llmnas_local.llm.openai_backend import OpenAIBackend
from llmnas_local.llm.transformers_backend import TransformersBackend
from llmnas_local.llm.vllm_server import VllmServerBackend

__all__ = ["BACKENDS", "EMBEDDED", "FINISH_LENGTH", "FINISH_STOP", "BackendError", "BackendSpec", "BaseBackend",
           "Completion", "Constraint", "Generation", "ModelInfo", "OpenAIBackend", "TransformersBackend",
           "VllmServerBackend", "create_backend", "ensure_embedded_model", "get_model_info", "list_models",
           "models_dir", "prepare_smollm2", "resolve_model"]
