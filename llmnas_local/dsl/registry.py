"""The registry that names search spaces: ``get_space("cnn")``, ``list_spaces()``, ``@register_space("mine")``."""
from __future__ import annotations

from typing import Callable

from llmnas_local.dsl.base import BaseSpace

_SPACES: dict[str, Callable[[], BaseSpace]] = {}


def register_space(name: str) -> Callable[[type[BaseSpace]], type[BaseSpace]]:
    """Class decorator: ``@register_space("mine")``."""

    def deco(cls: type[BaseSpace]) -> type[BaseSpace]:
        cls.name = name
        _SPACES[name] = cls
        return cls

    return deco


def list_spaces() -> list[str]:
    _load_builtin()
    return sorted(_SPACES)


def get_space(name: str) -> BaseSpace:
    _load_builtin()
    if name not in _SPACES:
        raise KeyError(f"unknown search space {name!r}; known: {', '.join(sorted(_SPACES))}")
    return _SPACES[name]()


def _load_builtin() -> None:
    from llmnas_local.dsl.cnn import CnnSpace
    from llmnas_local.dsl.nb201 import Nb201CellSpace, Nb201Space

    for cls in (CnnSpace, Nb201Space, Nb201CellSpace):
        _SPACES.setdefault(cls.name, cls)
