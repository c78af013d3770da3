"""The proposer contract, in the spirit of Optuna's samplers: read the history, return proposals."""
from __future__ import annotations

import abc
import dataclasses
import random
from typing import Any, TYPE_CHECKING

from llmnas_local.records import LLMCall

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A proposed architecture as DSL text, before parsing. ``llm``: the model call that wrote it (LLM proposers)."""

    text: str
    parent_hash: str | None = None
    llm: LLMCall | None = None
    propose_s: float = 0.0

    def __post_init__(self) -> None:
        if isinstance(self.llm, dict):        # a proposer that writes the record as a dict (as records were)
            object.__setattr__(self, "llm", LLMCall.from_json(self.llm) if self.llm else None)


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
