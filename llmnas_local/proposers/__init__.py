"""Proposers: policies that read the history and propose architectures. Registered by name."""
from __future__ import annotations

from typing import Any, Callable

from llmnas_local.proposers.base import BaseProposer, Proposal

_PROPOSERS: dict[str, Callable[..., BaseProposer]] = {}


def register_proposer(name: str, factory: Callable[..., BaseProposer]) -> None:
    _PROPOSERS[name] = factory


def list_proposers() -> list[str]:
    return sorted(_PROPOSERS)


def create_proposer(name: str, **settings: Any) -> BaseProposer:
    if name not in _PROPOSERS:
        raise KeyError(f"unknown proposer {name!r}; known: {', '.join(list_proposers())}")
    return _PROPOSERS[name](**settings)


def create_llm_proposer(llm: str = "transformers", model: str | None = "smollm2", *, backend=None,
                        base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                        **config: Any) -> BaseProposer:
    """The LLM proposer on a backend: ``llm`` is "transformers", "vllm" or "openai" (with ``base_url``); ``model`` a
    registry name or a local folder. ``config`` holds :class:`LLMProposerConfig` fields. Pass ``backend=`` to share
    one loaded model between proposers (benchmarks)."""
    from llmnas_local.proposers.llm import LLMProposer, LLMProposerConfig, check_backend

    cfg = LLMProposerConfig(**config)            # reject bad settings before loading a model
    if backend is None:
        check_backend(cfg, _backend_class(llm))
        backend = _create_backend(llm, model, base_url, backend_settings)
    return LLMProposer(backend, cfg, model_name=model)


def create_llm_evolution_proposer(llm: str = "transformers", model: str | None = "smollm2", *, backend=None,
                                  base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                                  **config: Any) -> BaseProposer:
    """Regularized evolution with the LLM as its mutation operator (``llm-evo``); arguments as
    :func:`create_llm_proposer`, ``config`` holds :class:`LLMEvolutionConfig` fields."""
    from llmnas_local.proposers.llm_evolution import LLMEvolutionConfig, LLMEvolutionProposer

    cfg = LLMEvolutionConfig(**config)
    if backend is None:
        backend = _create_backend(llm, model, base_url, backend_settings)
    return LLMEvolutionProposer(backend, cfg, model_name=model)


def create_llm_edit_proposer(llm: str = "transformers", model: str | None = "smollm2", *, backend=None,
                             base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                             **config: Any) -> BaseProposer:
    """Regularized evolution whose edits the model chooses (``llm-edit``); arguments as
    :func:`create_llm_proposer`, ``config`` holds :class:`LLMEditConfig` fields."""
    from llmnas_local.proposers.llm_edit import LLMEditConfig, LLMEditProposer

    cfg = LLMEditConfig(**config)
    if backend is None:
        backend = _create_backend(llm, model, base_url, backend_settings)
    return LLMEditProposer(backend, cfg, model_name=model)


def _backend_class(llm: str):
    from llmnas_local.llm import BACKENDS, BackendError

    if llm not in BACKENDS:
        raise BackendError(f"unknown backend {llm!r} (choose from {', '.join(BACKENDS)})")
    return BACKENDS[llm]


def _create_backend(llm: str, model: str | None, base_url: str | None, backend_settings: dict[str, Any] | None):
    from llmnas_local.llm import create_backend

    settings = dict(backend_settings or {})
    if base_url is not None:
        settings["base_url"] = base_url
    return create_backend(llm, model=model, **settings)


LLM_PROPOSERS = ("llm", "llm-evo", "llm-edit")     # proposers that take a backend (``backend=``, ``llm=``, ``model=``)


def _register_builtin() -> None:
    from llmnas_local.proposers.evolution import EvolutionProposer
    from llmnas_local.proposers.random_search import RandomProposer

    register_proposer("random", RandomProposer)
    register_proposer("evolution", EvolutionProposer)
    register_proposer("llm", create_llm_proposer)
    register_proposer("llm-evo", create_llm_evolution_proposer)
    register_proposer("llm-edit", create_llm_edit_proposer)


_register_builtin()

__all__ = ["LLM_PROPOSERS", "BaseProposer", "Proposal", "create_proposer", "list_proposers", "register_proposer"]
