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


def _register_builtin() -> None:
    from llmnas_local.proposers.evolution import EvolutionProposer
    from llmnas_local.proposers.random_search import RandomProposer

    register_proposer("random", RandomProposer)
    register_proposer("evolution", EvolutionProposer)


_register_builtin()

__all__ = ["BaseProposer", "Proposal", "create_proposer", "list_proposers", "register_proposer"]
