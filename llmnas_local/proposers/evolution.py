"""Regularized evolution (Real et al., 2019): tournament selection from an ageing population, one-element mutation.

The population is the last ``population`` completed evaluations of the run, so the proposer keeps no state of its own
and a resumed run continues exactly.
"""
from __future__ import annotations

import random
from typing import Any, TYPE_CHECKING

from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import VAL_ACC

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


class EvolutionProposer(BaseProposer):
    name = "evolution"

    def __init__(self, population: int = 10, tournament: int = 3):
        if not 1 <= tournament <= population:
            raise ValueError(f"tournament ({tournament}) must be between 1 and the population ({population})")
        self.population, self.tournament = population, tournament

    def settings(self) -> dict[str, Any]:
        return {"population": self.population, "tournament": self.tournament}

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        alive = history.completed[-self.population:]
        if len(alive) < self.population:            # warm-up: random members until the population is full
            return [Proposal(history.space.sample(rng)) for _ in range(n)]
        proposals = []
        for _ in range(n):
            contestants = rng.sample(range(len(alive)), self.tournament)
            parent = alive[max(contestants, key=lambda i: alive[i].metrics[VAL_ACC])]
            space = history.space
            child = space.mutate(space.parse(parent.raw), rng)
            proposals.append(Proposal(space.format(child), parent_hash=parent.arch_hash))
        return proposals
