"""The accuracy/size Pareto front: the architectures no other one beats on accuracy without being larger."""
from __future__ import annotations

from typing import Callable, Iterable, TypeVar

T = TypeVar("T")


def pareto_front(items: Iterable[T], accuracy: Callable[[T], float], size: Callable[[T], float]) -> list[T]:
    """The items not dominated by another (one at least as accurate and at most as large, better in one of the two),
    smallest first. Of items equal in both, the first is kept."""
    ordered = sorted(items, key=lambda it: (size(it), -accuracy(it)))
    front: list[T] = []
    for it in ordered:
        if not front or accuracy(it) > accuracy(front[-1]):
            front.append(it)
    return front
