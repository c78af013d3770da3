"""The proposer contract, in the spirit of Optuna's samplers: read the history, return proposals."""
from __future__ import annotations

import abc
import dataclasses
import random
from typing import Any, TYPE_CHECKING

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView



@dataclasses.dataclass(frozen=True)
class Proposal:
    """A proposed architecture as DSL text, before parsing. ``llm`` carries what an LLM proposer records."""

    text: str
    parent_hash: str | None = None
    llm: dict[str, Any] = dataclasses.field(default_factory=dict)
    propose_s: float = 0.0


class BaseProposer(abc.ABC):
    """Reads a read-only :class:`HistoryView`; never touches the store; draws randomness only from ``rng``.

    ``propose`` may return more or fewer than ``n`` proposals (an LLM call yields several candidates); the loop
    queues them. Duplicates are allowed: the loop answers them from the store.
    """

    name: str = ""

    def settings(self) -> dict[str, Any]:
        """Everything that changes what this proposer does (stored with the run)."""
        return {}

    @abc.abstractmethod
    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]: ...

    def close(self) -> None:
        """Release models and servers."""
