"""Random search: uniform draws from the space's grammar."""
from __future__ import annotations

from typing import TYPE_CHECKING

import random

from llmnas_local.proposers.base import BaseProposer, Proposal

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


class RandomProposer(BaseProposer):
    """Each proposal is an independent random derivation of the space's grammar."""

    name = "random"

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        return [Proposal(history.space.sample(rng)) for _ in range(n)]
