"""The search loop on the real nb201 space, a real store, and a fake evaluator (a deterministic score per cell)."""
from __future__ import annotations


import pytest

from llmnas_local.dsl import get_space
from llmnas_local.proposers import create_proposer
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import TrialStatus
from llmnas_local.search import Search, SearchStalled
from llmnas_local.store import LmdbStore, MemoryStore
from tests.fakes import RESNET_CELL, FakeScoreEvaluator, ScriptedProposer


ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


@pytest.fixture
def space():
    return get_space("nb201")


def test_budget_counts_distinct_evaluations_and_duplicates_are_not_retrained(space):
    texts = [RESNET_CELL, RESNET_CELL, "garbage", ALL_NONE,
             "|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"]
    ev = FakeScoreEvaluator()
    study = Search(space, ScriptedProposer(texts), ev, MemoryStore(), seed=0)
    study.run(budget=2)
    statuses = [t.status for t in study.history.trials]
    assert statuses == [TrialStatus.COMPLETE, TrialStatus.DUPLICATE, TrialStatus.INVALID, TrialStatus.INVALID,
                        TrialStatus.COMPLETE]
    assert len(ev.calls) == 2 and study.num_evaluated == 2
    assert "parse error at position 0" in study.history.trials[2].error
    assert study.history.trials[3].error.startswith("rejected:")
    assert [t.seq for t in study.history.trials] == list(range(5))


def test_resume_continues_the_same_run_without_reevaluating(tmp_path, space):
    path = str(tmp_path / "store")
    ev1 = FakeScoreEvaluator()
    with LmdbStore(path) as st:
        Search(space, create_proposer("evolution"), ev1, st, seed=3).run(budget=15)
    ev2 = FakeScoreEvaluator()
    with LmdbStore(path) as st:
        study = Search(space, create_proposer("evolution"), ev2, st, seed=3)
        assert study.num_evaluated == 15
        study.run(budget=30)
        resumed = [t.raw for t in st.trials(study.run_id)]
    assert len(ev2.calls) == 15 and not set(ev1.calls) & set(ev2.calls)
    # the same search done in one go proposes exactly the same sequence
    ev3 = FakeScoreEvaluator()
    one_go = Search(space, create_proposer("evolution"), ev3, MemoryStore(), seed=3)
    one_go.run(budget=30)
    assert [t.raw for t in one_go.history.trials] == resumed


def test_another_run_reuses_stored_outcomes(space):
    store, ev = MemoryStore(), FakeScoreEvaluator()
    Search(space, create_proposer("random"), ev, store, seed=0).run(budget=10)
    first = list(ev.calls)
    again = Search(space, create_proposer("random"), ev, store, seed=0, run_id="second").run(budget=10)
    assert ev.calls == first  # nothing trained twice: the second run was answered from the store
    trials = list(store.trials("second"))
    assert sum(t.from_store for t in trials if t.status.evaluated) == 10 and again is not None
    assert all(t.from_store for t in trials if t.status is not TrialStatus.DUPLICATE)  # rejections too


def test_parallel_workers_reach_the_budget_with_dense_sequence(space):
    store, ev = MemoryStore(), FakeScoreEvaluator()
    study = Search(space, create_proposer("random"), ev, store, seed=1)
    study.run(budget=25, workers=4)
    assert study.num_evaluated == 25 and len(set(ev.calls)) == 25
    assert [t.seq for t in store.trials(study.run_id)] == list(range(len(study.history)))


def test_a_proposer_that_only_repeats_itself_stalls_with_a_clear_error(space):
    study = Search(space, ScriptedProposer([RESNET_CELL] * 50), FakeScoreEvaluator(), MemoryStore(), max_stall=10)
    with pytest.raises(SearchStalled, match="10 proposals in a row"):
        study.run(budget=5)
    assert study.num_evaluated == 1


def test_a_crashing_builder_is_recorded_as_invalid(space):
    class BrokenPrecheck(FakeScoreEvaluator):
        def precheck(self, space, spec):
            raise RuntimeError("boom\nsecond line")

    study = Search(space, ScriptedProposer([RESNET_CELL] * 3), BrokenPrecheck(), MemoryStore(), max_stall=3)
    with pytest.raises(SearchStalled):
        study.run(budget=1)
    first = study.history.trials[0]
    assert first.status is TrialStatus.INVALID and first.error == "build error: RuntimeError: boom second line"


def test_evolution_reproduces_regularized_evolution_population_rules(space):
    prop = create_proposer("evolution", population=5, tournament=2)
    study = Search(space, prop, FakeScoreEvaluator(), MemoryStore(), seed=0)
    study.run(budget=20)
    children = [t for t in study.history.trials if t.parent_hash]
    assert children, "after warm-up every proposal has a parent"
    diffs = []
    for t in children:
        parent = next(p for p in study.history.trials if p.arch_hash == t.parent_hash)
        diffs.append(sum(a != b for a, b in zip(space.parse(parent.raw).ops, space.parse(t.raw).ops)))
    assert min(diffs) >= 1 and diffs.count(1) >= 0.9 * len(diffs)  # more only when every one-edge child is known
    assert all(t.status is not TrialStatus.DUPLICATE for t in children)


def test_run_with_other_settings_under_the_same_id_is_refused(space):
    from llmnas_local.store.base import StoreError

    store = MemoryStore()
    Search(space, create_proposer("random"), FakeScoreEvaluator(), store, seed=0, run_id="r").run(budget=2)
    with pytest.raises(StoreError, match="other settings"):
        Search(space, create_proposer("random"), FakeScoreEvaluator(), store, seed=1, run_id="r")


def test_a_failing_proposer_is_recorded_and_the_search_goes_on(space):
    class FlakyProposer(BaseProposer):
        """Fails every other call, like an LLM server that dies and is restarted (a fake)."""

        name = "flaky"
        calls = 0

        def propose(self, history, n, rng):
            self.calls += 1
            if self.calls % 2:
                raise ConnectionError("server died")
            return [Proposal(space.sample(rng))]

    study = Search(space, FlakyProposer(), FakeScoreEvaluator(), MemoryStore())
    study.run(budget=3)
    errors = [t for t in study.history.trials if t.error.startswith("proposer error")]
    assert errors and errors[0].error == "proposer error: ConnectionError: server died"
    assert study.num_evaluated == 3


def test_a_proposer_that_keeps_failing_stops_the_search_with_its_reason(space):
    class DeadProposer(BaseProposer):
        name = "dead"

        def propose(self, history, n, rng):
            raise ConnectionError("connection refused")

    with pytest.raises(SearchStalled, match="3 proposer calls in a row failed; last: .*connection refused"):
        Search(space, DeadProposer(), FakeScoreEvaluator(), MemoryStore()).run(budget=3)


def test_answers_from_other_runs_count_as_progress_not_as_a_stall(space):
    store = MemoryStore()
    Search(space, create_proposer("random"), FakeScoreEvaluator(), store, seed=0).run(budget=30)
    again = Search(space, create_proposer("random"), FakeScoreEvaluator(), store, seed=0, run_id="again", max_stall=5)
    again.run(budget=30)       # every proposal is answered from the store: 30 evaluations, no stall
    assert again.num_evaluated == 30
