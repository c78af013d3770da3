"""Proposers: policies that read the history and propose architectures. Registered by name."""
from __future__ import annotations

from typing import Any, Callable

from llmnas_local.llm.models import EMBEDDED
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


def create_llm_proposer(llm: str = "transformers", model: str | None = EMBEDDED, *, backend=None,
                        base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                        **config: Any) -> BaseProposer:
    """The LLM proposer on a backend: ``llm`` is "transformers", "vllm" or "openai" (with ``base_url``); ``model`` a
    registry name or a local folder. ``config`` holds :class:`LLMProposerConfig` fields. ``backend=``: a
    :class:`~llmnas_local.llm.BackendSpec` (instead of the four backend arguments), or a loaded backend to share
    between proposers (benchmarks; ``model`` then names it)."""
    from llmnas_local.proposers.llm import LLMProposer, LLMProposerConfig, check_backend

    cfg = LLMProposerConfig(**config)            # reject bad settings before loading a model
    backend, name = _backend(backend, llm, model, base_url, backend_settings,
                             check=lambda backend_class: check_backend(cfg, backend_class))
    return LLMProposer(backend, cfg, model_name=name)


def create_llm_evolution_proposer(llm: str = "transformers", model: str | None = EMBEDDED, *, backend=None,
                                  base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                                  **config: Any) -> BaseProposer:
    """Regularized evolution with the LLM as its mutation operator (``llm-evo``); arguments as
    :func:`create_llm_proposer`, ``config`` holds :class:`LLMEvolutionConfig` fields."""
    from llmnas_local.proposers.llm_evolution import LLMEvolutionConfig, LLMEvolutionProposer

    cfg = LLMEvolutionConfig(**config)
    backend, name = _backend(backend, llm, model, base_url, backend_settings)
    return LLMEvolutionProposer(backend, cfg, model_name=name)


def create_llm_edit_proposer(llm: str = "transformers", model: str | None = EMBEDDED, *, backend=None,
                             base_url: str | None = None, backend_settings: dict[str, Any] | None = None,
                             **config: Any) -> BaseProposer:
    """Regularized evolution whose edits the model chooses (``llm-edit``); arguments as
    :func:`create_llm_proposer`, ``config`` holds :class:`LLMEditConfig` fields."""
    from llmnas_local.proposers.llm_edit import LLMEditConfig, LLMEditProposer, check_backend

    cfg = LLMEditConfig(**config)                # reject bad settings before loading a model
    backend, name = _backend(backend, llm, model, base_url, backend_settings,
                             check=lambda backend_class: check_backend(cfg, backend_class))
    return LLMEditProposer(backend, cfg, model_name=name)


def _backend(backend, llm: str, model: str | None, base_url: str | None, backend_settings: dict[str, Any] | None,
             check: Callable[[type], None] | None = None):
    """(the proposer's backend, the model's name as the user gave it): a loaded backend as given (shared), else the
    one its spec creates (``backend`` if a BackendSpec, else the spec of the four arguments)."""
    from llmnas_local.llm import BackendSpec

    if backend is not None and not isinstance(backend, BackendSpec):
        return backend, model if model is not None else str(backend.model)
    spec = backend if backend is not None else BackendSpec(llm, model, base_url, backend_settings or {})
    if check is not None:
        check(spec.backend_class)
    created = spec.create()
    return created, spec.model if spec.model is not None else str(created.model)


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
