"""Regularized evolution (Real et al., 2019): tournament selection from an ageing population, one-element mutation.

The population is the last ``population`` completed evaluations of the run, so the proposer keeps no state of its own
and a resumed run continues exactly. Tournaments rank by the run's objective (``history.objective``: validation
accuracy unless it says otherwise). Where the space has a cost model (cnn), the warm-up's random members and the
children are drawn within the task's caps (:func:`~llmnas_local.dsl.sampler.sample_within`; a child over the caps is
mutated again like a known one), so proposals are not spent on models the search would reject; on nb201 the draws
are as before.
"""
from __future__ import annotations

import random
from typing import Any, TYPE_CHECKING

from llmnas_local.dsl.sampler import sample_within
from llmnas_local.objective import ACCURACY, Objective
from llmnas_local.proposers.base import BaseProposer, Proposal

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


def check_tournament(population: int, tournament: int) -> None:
    """Regularized evolution's settings: a tournament draws from 1 to ``population`` members."""
    if not 1 <= tournament <= population:
        raise ValueError(f"tournament ({tournament}) must be between 1 and the population ({population})")


def tournament_winner(alive, size: int, rng: random.Random, objective: Objective = ACCURACY):
    """The best under ``objective`` (by default validation accuracy) of ``size`` members of ``alive`` drawn with
    replacement (Real et al.'s code); ties: the first drawn."""
    contestants = [alive[rng.randrange(len(alive))] for _ in range(size)]
    return max(contestants, key=objective.key)


class EvolutionProposer(BaseProposer):
    name = "evolution"
    MAX_REDRAWS = 50     # fresh tournaments when a child is already known
    MAX_WALK = 20        # further mutations of the last child after that

    def __init__(self, population: int = 10, tournament: int = 3):
        check_tournament(population, tournament)
        self.population, self.tournament = population, tournament

    def settings(self) -> dict[str, Any]:
        return {"population": self.population, "tournament": self.tournament, "tournament_draw": "with_replacement",
                "known_children": "redraw"}

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        alive = history.completed[-self.population:]
        if len(alive) < self.population:            # warm-up: random members until the population is full
            return [Proposal(sample_within(history.space, history.constraints, rng)) for _ in range(n)]
        return [self.offspring(history, alive, rng) for _ in range(n)]

    def offspring(self, history: HistoryView, alive, rng: random.Random) -> Proposal:
        """Tournament (contestants drawn with replacement, as in Real et al.'s code), then a one-element mutation.
        A child the run already knows, or over the caps, is drawn again, up to ``MAX_REDRAWS`` times; after that the
        walk goes on from the last child (two or more mutations), so a population whose neighbours are all known does
        not stall."""
        space = history.space
        guard = space.prefix_guard(history.constraints)
        for attempt in range(self.MAX_REDRAWS + self.MAX_WALK):
            if attempt < self.MAX_REDRAWS:
                parent = tournament_winner(alive, self.tournament, rng, history.objective)
                spec = space.parse(parent.raw)
            spec = space.mutate(spec, rng)
            if not history.is_known(space.arch_hash(spec)) and (guard is None or guard(space.format(spec))):
                break
        return Proposal(space.format(spec), parent_hash=parent.arch_hash)
