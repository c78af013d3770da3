"""The LLM as evolution's mutation operator, with a fake backend (the real model runs it in the benchmark grids)."""
from __future__ import annotations

import random

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.sampler import GrammarSampler
from llmnas_local.proposers import create_proposer
from llmnas_local.proposers.llm_evolution import LLMEvolutionConfig, LLMEvolutionProposer
from llmnas_local.search import Search
from llmnas_local.store import MemoryStore
from tests.fakes import FakeMutatorBackend, FakeScoreEvaluator


def test_children_come_from_the_model_given_the_tournament_winner():
    backend = FakeMutatorBackend()
    proposer = LLMEvolutionProposer(backend, LLMEvolutionConfig(population=4, tournament=2, candidates=6))
    study = Search(get_space("nb201"), proposer, FakeScoreEvaluator(), MemoryStore(), seed=3)
    study.run(budget=12)
    trials = study.history.trials
    warm = [t for t in trials if not t.llm]
    bred = [t for t in trials if t.llm]
    assert len(warm) == 4 and all(t.parent_hash is None for t in warm)        # random members fill the population
    assert bred and all(t.parent_hash for t in bred)
    by_hash, space = {t.arch_hash: t for t in trials}, get_space("nb201")
    for t in bred:                                                                      # one edit, never the parent
        parent_ops, child_ops = space.parse(by_hash[t.parent_hash].raw).ops, space.parse(t.raw).ops
        assert sum(a != b for a, b in zip(parent_ops, child_ops)) == 1
    first = backend.prompts[0][-1]["content"]
    assert "Parent architecture (val_acc" in first and "Write a child" in first
    parent = next(t for t in trials if t.arch_hash == bred[0].parent_hash)
    assert parent.raw in first and bred[0].llm.model == "fake-mutator" and bred[0].llm.tokens_out == 30


def test_the_grammar_offers_only_unevaluated_one_edit_children():
    space = get_space("nb201")
    backend = FakeMutatorBackend()
    study = Search(space, LLMEvolutionProposer(backend, LLMEvolutionConfig(population=4, tournament=2, candidates=6)),
                   FakeScoreEvaluator(), MemoryStore(), seed=1)
    study.run(budget=30)
    grammar, prompt = backend.grammars[-1], backend.prompts[-1][-1]["content"]
    parent = space.parse(next(line for line in prompt.splitlines() if line.startswith("|")))
    known_before_call = {t.arch_hash for t in study.history.trials[:-6]}
    children = {GrammarSampler(grammar).sample(random.Random(i)) for i in range(300)}
    for child in children:
        spec = space.parse(child)
        assert sum(a != b for a, b in zip(spec.ops, parent.ops)) == 1
        assert space.arch_hash(spec) not in known_before_call


def test_registered_with_its_settings_and_checked():
    proposer = create_proposer("llm-evo", backend=FakeMutatorBackend(), model="fake", candidates=3)
    s = proposer.settings()
    assert s["candidates"] == 3 and s["model"] == "fake" and s["backend"] == "fake" and s["population"] == 10
    with pytest.raises(ValueError, match="tournament"):
        LLMEvolutionConfig(population=2, tournament=3)
