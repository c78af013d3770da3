"""Random search: independent draws from the space's grammar, within the task's caps."""
from __future__ import annotations

from typing import TYPE_CHECKING

import random

from llmnas_local.dsl.sampler import sample_within
from llmnas_local.proposers.base import BaseProposer, Proposal

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


class RandomProposer(BaseProposer):
    """Each proposal is an independent random derivation of the space's grammar, redrawn until it fits the task's
    caps where the space has a cost model (cnn: :func:`~llmnas_local.dsl.sampler.sample_within`), so that proposals
    are not spent on models the search would reject; on nb201 the plain draws."""

    name = "random"

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        return [Proposal(sample_within(history.space, history.constraints, rng)) for _ in range(n)]
