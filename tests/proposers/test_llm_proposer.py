"""The LLM proposer's prompt and memory logic, with a fake backend (real-model tests live in tests/llm and
tests/search/test_llm_search.py)."""
from __future__ import annotations

import json
import random

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.sampler import GrammarSampler
from llmnas_local.llm.base import BaseBackend, Completion, Generation
from llmnas_local.proposers.llm import DIAGNOSIS_SCHEMA, LLMProposer, LLMProposerConfig, unseen_grammar
from llmnas_local.search import Search
from llmnas_local.search.history import HistoryView
from llmnas_local.store import MemoryStore
from tests.fakes import RESNET_CELL, FakeMutatorBackend, FakeScoreEvaluator


class FakeBackend(BaseBackend):
    """Answers the improver with a fixed diagnosis and the generator with scripted cells; records every call."""

    name = "fake"

    def __init__(self, cells):
        super().__init__("fake-model")
        self.cells = list(cells)
        self.calls = []

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        self.calls.append((prompts, constraint, n))
        if constraint.json_schema is not None:
            text = json.dumps({"problem": "too few convolutions", "modification": "use nor_conv_3x3 on edge 1"})
            return [Generation([Completion(text, 20, "stop")] * n, 100, 0.1) for _ in prompts]
        return [Generation([Completion(self.cells.pop(0), 30, "stop") for _ in range(n)], 200, 0.2) for _ in prompts]


CELLS = [RESNET_CELL, RESNET_CELL, "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|",
         "not a cell", "|avg_pool_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"]
NEW_CELLS = ["|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|nor_conv_1x1~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|nor_conv_3x3~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|",
             "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_1x1~0|nor_conv_3x3~1|nor_conv_3x3~2|"]
CELLS = CELLS + NEW_CELLS + NEW_CELLS


def test_two_roles_candidates_and_records():
    backend = FakeBackend(CELLS)
    store = MemoryStore()
    study = Search(get_space("nb201"), LLMProposer(backend, LLMProposerConfig(candidates=5)), FakeScoreEvaluator(),
                   store)
    study.run(budget=3)
    first_improver, first_generator = backend.calls[0], backend.calls[1]
    assert first_improver[1].json_schema == DIAGNOSIS_SCHEMA
    assert first_generator[1].grammar == unseen_grammar(HistoryView(get_space("nb201"), study.history.constraints))
    assert first_generator[2] == 5
    assert first_generator[1].prefix_guard is None          # nb201 has none: the grammar says everything
    trials = study.history.trials
    assert [t.status.name for t in trials[:5]] == ["COMPLETE", "DUPLICATE", "COMPLETE", "INVALID", "COMPLETE"]
    t = trials[0]
    assert t.llm.diagnosis["modification"] == "use nor_conv_3x3 on edge 1"
    assert t.llm.tokens_in == 200 and t.llm.tokens_out == 30 and t.llm.model == "fake-model"
    assert t.llm.prefix_guard is False
    assert t.llm.prompt == "" and "Apply this modification" in store.get_text(t.llm.prompt_hash)
    assert t.llm.call_id and {u.llm.call_id for u in trials[:5]} == {t.llm.call_id}    # one call, five candidates


def test_second_prompt_shows_the_memory_of_the_first_batch():
    backend = FakeBackend(CELLS)
    Search(get_space("nb201"), LLMProposer(backend, LLMProposerConfig(candidates=5)), FakeScoreEvaluator(),
           MemoryStore()).run(budget=4)
    second_generator_prompt = backend.calls[3][0][0][1]["content"]
    assert "already evaluated" in second_generator_prompt          # the duplicate of the first batch
    assert "invalid, not evaluated: parse error" in second_generator_prompt
    assert "problem: too few convolutions" in second_generator_prompt


def test_ablations_improver_off_and_no_memory():
    backend = FakeBackend(CELLS)
    prop = LLMProposer(backend, LLMProposerConfig(candidates=2, improver=False, window=0, elites=0))
    Search(get_space("nb201"), prop, FakeScoreEvaluator(), MemoryStore()).run(budget=3)
    assert all(call[1].grammar is not None for call in backend.calls)
    last = backend.calls[-1][0][0][1]["content"]
    assert last.count("(no results yet)") == 1 and last.count("(no attempts yet)") == 1 and "Diagnosis" not in last
    assert prop.settings()["improver"] is False and prop.settings()["window"] == 0


def test_unparseable_diagnosis_is_recorded_and_generation_goes_on():
    class BadImprover(FakeBackend):
        def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
            if constraint.json_schema is not None:
                return [Generation([Completion('{"problem": "cut', 200, "length")], 10, 0.1)]
            return super()._generate(prompts, constraint, n=n, max_tokens=max_tokens, temperature=temperature,
                                     top_p=top_p, seed=seed)

    prop = LLMProposer(BadImprover(CELLS), LLMProposerConfig(candidates=1))
    [p] = prop.propose(Search(get_space("nb201"), prop, FakeScoreEvaluator(), MemoryStore()).history, 1,
                       random.Random(0))
    assert p.llm.diagnosis == {} and p.llm.extra["improver_error"].startswith("unparseable diagnosis")


def test_the_generator_decodes_only_valid_cells_the_run_has_not_evaluated():
    space = get_space("nb201")
    backend = FakeMutatorBackend()                       # samples the constraint's grammar uniformly
    study = Search(space, LLMProposer(backend, LLMProposerConfig(candidates=1, improver=False)), FakeScoreEvaluator(),
                   MemoryStore(), seed=0)
    study.run(budget=25)
    assert [t.status.name for t in study.history.trials] == ["COMPLETE"] * 25    # no repeat, no invalid cell
    assert all(t.llm.extra["grammar"] == "unseen" for t in study.history.trials)
    last = GrammarSampler(backend.grammars[-1])
    known = {t.arch_hash for t in study.history.trials[:-1]}
    assert not {space.arch_hash(space.parse(last.sample(random.Random(i)))) for i in range(500)} & known
    facts = {}                                           # the per-run memo: hashes and checks, not what is known
    unseen_grammar(HistoryView(space, study.history.constraints), facts)
    assert len(facts) == 15625 and unseen_grammar(study.history, facts) == unseen_grammar(study.history)

    backend = FakeMutatorBackend()
    LLMProposer(backend, LLMProposerConfig(candidates=1, improver=False, unseen_only=False)).propose(
        study.history, 1, random.Random(0))
    assert backend.grammars == [space.grammar()]


def test_repeated_duplicates_raise_the_temperature_and_a_new_design_resets_it():
    from llmnas_local.records import TrialRecord, TrialStatus
    from llmnas_local.search.history import HistoryView
    from llmnas_local.dsl import Constraints

    def trial(seq, status):
        return TrialRecord(run_id="r", seq=seq, proposer="llm", raw="x", status=status, arch_hash=f"h{seq}")

    prop = LLMProposer(FakeBackend([]), LLMProposerConfig(temperature=0.8, heat_per_repeat=0.1, max_temperature=1.2))
    space = get_space("nb201")
    dup, done = TrialStatus.DUPLICATE, TrialStatus.COMPLETE
    assert prop.temperature(HistoryView(space, Constraints(), [trial(0, done)])) == 0.8
    assert prop.temperature(HistoryView(space, Constraints(), [trial(0, done), trial(1, dup), trial(2, dup)])) == 1.0
    assert prop.temperature(HistoryView(space, Constraints(), [trial(i, dup) for i in range(20)])) == 1.2
    assert prop.temperature(HistoryView(space, Constraints(), [trial(0, dup), trial(1, done)])) == 0.8


def test_cnn_generator_calls_carry_the_caps_guard_and_the_record_says_whether_it_was_enforced():
    from types import SimpleNamespace

    from llmnas_local.dsl.base import Constraints
    from llmnas_local.proposers.llm import dsl_constraint, guard_record

    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=25.0)
    constraint = dsl_constraint(SimpleNamespace(space=get_space("cnn"), constraints=caps))
    assert constraint.grammar == get_space("cnn").grammar()
    assert constraint.prefix_guard("stem_k3_s1_c16_nre cn_r1_k3_s1_c16_nre head_c128_nre")
    assert not constraint.prefix_guard("stem_k3_s1_c512_nre cn_r4_k7_s1_c512")          # ~10 GFLOPs at 16x16
    assert guard_record(FakeBackend([]), constraint) == {"prefix_guard": False}         # a backend that cannot


def test_distinct_candidates_are_asked_for_and_part_of_the_run_identity():
    class DistinctBackend(FakeBackend):
        samples_distinct = True

        def _generate_distinct(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
            self.calls.append((prompts, constraint, n, "distinct"))
            return [Generation([Completion(self.cells.pop(0), 30, "stop") for _ in range(2)], 200, 0.2)
                    for _ in prompts]                     # fewer than n: the grammar ran out

    backend = DistinctBackend(NEW_CELLS)
    prop = LLMProposer(backend, LLMProposerConfig(candidates=4, improver=False, distinct=True))
    proposals = prop.propose(Search(get_space("nb201"), prop, FakeScoreEvaluator(), MemoryStore()).history, 1,
                             random.Random(0))
    assert len(proposals) == 2 and backend.calls[-1][2:] == (4, "distinct")
    assert prop.settings()["distinct"] is True
    assert "distinct" not in LLMProposer(backend, LLMProposerConfig()).settings()   # stored runs keep their identity
    with pytest.raises(ValueError, match="distinct candidates need a backend"):
        LLMProposer(FakeBackend(CELLS), LLMProposerConfig(distinct=True))


def test_prompts_state_the_language_and_the_runs_own_examples():
    """Leak-free protocol: no hints unless asked for (and then recorded), examples drawn from the sampler per run."""
    space = get_space("nb201")
    prompts = {}
    for seed in (0, 1):
        backend = FakeBackend(CELLS)
        study = Search(space, LLMProposer(backend, LLMProposerConfig(candidates=5)), FakeScoreEvaluator(),
                       MemoryStore(), seed=seed)
        study.run(budget=2)
        prompts[seed] = backend.calls[1][0][0][-1]["content"]
        assert all(ex in prompts[seed] for ex in space.prompt_examples(seed))
        assert "What tends to matter" not in prompts[seed]
    assert prompts[0] != prompts[1]
    hinted = LLMProposer(FakeBackend(CELLS), LLMProposerConfig(hints=True))
    assert hinted.settings()["hints"] is True and LLMProposer(FakeBackend(CELLS)).settings()["hints"] is False
    assert "What tends to matter" in hinted.context(HistoryView(space, study.history.constraints)).description
