"""The LLM as the mutation operator of regularized evolution (as EvoPrompting and LLMatic do): a proposer of its own.

The loop is :class:`~llmnas_local.proposers.evolution.EvolutionProposer`'s -- an ageing population of the last
``population`` completed evaluations, tournament selection, random members until the population is full -- but the
child is written by the model: one call shows it the tournament's winner and asks for ``candidates`` children. Where the
space has a neighbour grammar (nb201: the parent with exactly one edge changed) decoding is constrained to it, so the
model chooses which element to change and to what, among the children the run has not evaluated; elsewhere the space's
grammar is used. A child proposed twice in one call is answered from the store as a duplicate, and there is no fallback
to a random mutation, so what it finds is the model's doing. The temperature rises with trailing duplicates as in the
LLM proposer.
"""
from __future__ import annotations

import dataclasses
import random
import time
from typing import Any, TYPE_CHECKING

from llmnas_local.prompts import PromptContext, mutator_messages
from llmnas_local.proposers.base import Proposal
from llmnas_local.proposers.evolution import check_tournament, tournament_winner
from llmnas_local.proposers.llm import dsl_constraint, guard_record, heated_temperature
from llmnas_local.proposers.llm_base import BaseLLMProposer
from llmnas_local.records import VAL_ACC

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


@dataclasses.dataclass(frozen=True)
class LLMEvolutionConfig:
    """Settings of the LLM mutation operator's evolution. All are part of the run's identity."""

    population: int = 10
    tournament: int = 3
    candidates: int = 8             # children per call, all of the same parent
    temperature: float = 1.0
    top_p: float = 0.95
    max_tokens: int = 256
    heat_per_repeat: float = 0.05
    max_temperature: float = 1.5
    hints: bool = False             # the space's domain hints in its description (benchmark knowledge: off)

    def __post_init__(self) -> None:
        check_tournament(self.population, self.tournament)
        if self.candidates < 1:
            raise ValueError("candidates must be >= 1")


class LLMEvolutionProposer(BaseLLMProposer):
    name = "llm-evo"
    MAX_REDRAWS = 50     # tournaments tried for a parent with an unevaluated child

    def __init__(self, backend, config: LLMEvolutionConfig = LLMEvolutionConfig(), model_name: str | None = None):
        super().__init__(backend, model_name)
        self.config = config

    def settings(self) -> dict[str, Any]:
        s = dataclasses.asdict(self.config)
        s["backend"], s["model"], s["tournament_draw"] = self.backend.name, self.model_name, "with_replacement"
        s["children"] = "unevaluated_neighbours"   # decoding constrained to the parent's unevaluated one-edit children
        return s

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        alive = history.completed[-self.config.population:]
        if len(alive) < self.config.population:            # warm-up: random members, as in regularized evolution
            return [Proposal(history.space.sample(rng)) for _ in range(n)]
        t0 = time.perf_counter()
        space, caps = history.space, history.constraints
        parent, grammar = self._parent_and_grammar(history, alive, rng)
        ctx = PromptContext(task=history.task, description=space.describe(self.config.hints),
                            examples=(),
                            elites=(), triples=(), max_params_m=caps.max_params_m, max_flops_m=caps.max_flops_m)
        messages = mutator_messages(ctx, parent.raw, parent.metrics[VAL_ACC])
        temperature = heated_temperature(history, self.config.temperature, self.config.heat_per_repeat,
                                         self.config.max_temperature)
        constraint = dsl_constraint(history, grammar)
        return self.ask(messages, constraint, t0=t0, parent_hash=parent.arch_hash,
                        call={"temperature": temperature, **guard_record(self.backend, constraint)},
                        n=max(n, self.config.candidates), max_tokens=self.config.max_tokens, temperature=temperature,
                        top_p=self.config.top_p, seed=rng.randrange(2**31))

    def _parent_and_grammar(self, history: HistoryView, alive, rng: random.Random):
        """The tournament's winner and the grammar of its children. With a neighbour grammar, only the children the
        run has not evaluated are offered; a parent whose every child is known is replaced by a fresh tournament."""
        space = history.space

        def unknown(child) -> bool:
            return not history.is_known(space.arch_hash(child))

        parent = tournament_winner(alive, self.config.tournament, rng)
        if space.neighbour_grammar(space.parse(parent.raw)) is None:   # the space has none: the model writes strings
            return parent, space.grammar()
        for attempt in range(self.MAX_REDRAWS):
            if attempt:
                parent = tournament_winner(alive, self.config.tournament, rng)
            grammar = space.neighbour_grammar(space.parse(parent.raw), unknown)
            if grammar is not None:
                return parent, grammar
        return parent, space.grammar()
