"""The lookahead loop (search/pipeline.py): proposing while an evaluation runs, exact whatever the evaluation times and
on resume. Real nb201 space, real stores, real proposers where they matter; fake evaluators that sleep (named fakes)."""
from __future__ import annotations

import random
import threading
import time

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.proposers import create_proposer
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import VAL_ACC, TrialStatus
from llmnas_local.search import Search, SearchStalled, make_run_id
from llmnas_local.store import LmdbStore, MemoryStore
from tests.fakes import RESNET_CELL, FakeScoreEvaluator, ScriptedProposer

ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
SPACE = get_space("nb201")


class FakeSlowEvaluator(FakeScoreEvaluator):
    """FakeScoreEvaluator whose evaluations take a random time drawn from its own seed (a fake of trainings whose
    durations vary), or a fixed one; ``fail_at``: the n-th evaluation raises; ``abort()`` ends a waiting one."""

    def __init__(self, seed: int | None = None, fixed_s: float = 0.0, fail_at: int | None = None):
        super().__init__()
        self.rng, self.fixed_s, self.fail_at = random.Random(seed), fixed_s, fail_at
        self.aborted = threading.Event()

    def evaluate(self, space, spec):
        with self.lock:
            delay = self.fixed_s or self.rng.uniform(0, 0.02)
            n = len(self.calls)
        if self.fail_at is not None and n == self.fail_at:
            raise RuntimeError("the fake evaluation crashed")
        self.aborted.wait(delay)
        return super().evaluate(space, spec)

    def abort(self):
        self.aborted.set()


class FakePoolProposer(BaseProposer):
    """Draws from a small pool (10 cells, a garbage text, a rejected cell), steered by the history it sees (its best
    accuracy and size): many duplicates, also of proposals not recorded yet. ``seen``: the history length of each call."""

    name = "fake-pool"

    def __init__(self, sleep_s: float = 0.0, distinct: bool = False):
        self.pool = [SPACE.sample(random.Random(i)) for i in range(10)] + ["garbage", ALL_NONE]
        self.sleep_s, self.seen, self.distinct = sleep_s, [], distinct

    def propose(self, history, n, rng):
        self.seen.append(len(history))
        time.sleep(self.sleep_s)
        if self.distinct:                     # a new cell each call: one proposal, one evaluation
            return [Proposal(SPACE.sample(random.Random(f"distinct:{len(self.seen)}")))]
        best = history.best(1)
        steer = len(history.completed) + (int(best[0].metrics[VAL_ACC]) if best else 0)
        return [Proposal(self.pool[(rng.randrange(len(self.pool)) + steer) % len(self.pool)])]


def key(trials):
    """What must not depend on timing: everything recorded but the timings."""
    return [(t.seq, t.raw, t.status, t.arch_hash, t.metrics, t.error, t.parent_hash, t.from_store) for t in trials]


def search(store, proposer, evaluator, lookahead=1, seed=0, **kw):
    return Search(SPACE, proposer, evaluator, store, seed=seed, lookahead=lookahead, **kw)


@pytest.mark.parametrize("make_proposer", [FakePoolProposer, lambda: create_proposer("evolution", population=4,
                                                                                        tournament=2)],
                         ids=["pool", "evolution"])
@pytest.mark.parametrize("lookahead", [1, 2])
def test_the_trials_do_not_depend_on_evaluation_times(make_proposer, lookahead):
    runs = []
    for delay_seed in (1, 2, None):           # two draws of random durations, and instant evaluations
        ev = FakeSlowEvaluator(delay_seed, fixed_s=1e-9 if delay_seed is None else 0.0)
        study = search(MemoryStore(), make_proposer(), ev, lookahead, seed=5)
        study.run(budget=8)
        assert study.num_evaluated == 8 and len(ev.calls) == len(set(ev.calls)) == 8
        runs.append(key(study.history.trials))
    assert runs[0] == runs[1] == runs[2]
    statuses = {t[2] for t in runs[0]}
    if make_proposer is FakePoolProposer:     # the pool exercises every kind of record
        assert {TrialStatus.COMPLETE, TrialStatus.DUPLICATE, TrialStatus.INVALID} <= statuses


def test_proposal_k_sees_the_trials_before_the_last_lookahead_evaluations():
    prop = FakePoolProposer(distinct=True)
    study = search(MemoryStore(), prop, FakeSlowEvaluator(0), lookahead=2)
    study.run(budget=6)
    assert [t.status for t in study.history.trials] == [TrialStatus.COMPLETE] * 6
    assert prop.seen == [0, 0, 0, 1, 2, 3]
    prop0 = FakePoolProposer(distinct=True)
    search(MemoryStore(), prop0, FakeSlowEvaluator(0), lookahead=0).run(budget=6)
    assert prop0.seen == [0, 1, 2, 3, 4, 5]


@pytest.mark.parametrize("stop,after", [("interrupt", 1), ("interrupt", 4), ("interrupt", 9), ("interrupt", 15),
                                        ("crash", 1), ("crash", 3), ("crash", 6)])
def test_a_resumed_run_writes_what_the_uninterrupted_run_wrote(tmp_path, stop, after):
    """Stopped by Ctrl-C after ``after`` recorded trials, or by a crash of evaluation number ``after``."""
    reference = search(MemoryStore(), FakePoolProposer(), FakeSlowEvaluator(1), seed=3)
    reference.run(budget=8)
    assert len(reference.history) > 15
    path = str(tmp_path / "store")

    def interrupt(study, trial):
        if stop == "interrupt" and trial.seq + 1 == after:
            raise KeyboardInterrupt
    with LmdbStore(path) as st:
        with pytest.raises(KeyboardInterrupt if stop == "interrupt" else RuntimeError):
            search(st, FakePoolProposer(), FakeSlowEvaluator(3, fail_at=after if stop == "crash" else None),
                   seed=3).run(budget=8, callback=interrupt)
        before = key(st.trials())
    with LmdbStore(path) as st:
        resumed = search(st, FakePoolProposer(), FakeSlowEvaluator(4), seed=3)
        resumed.run(budget=8)
        trials = key(st.trials(resumed.run_id))
    assert trials[: len(before)] == before and len(before) < len(trials)
    assert trials == key(reference.history.trials)


def test_lookahead_overlaps_proposing_with_evaluating():
    walls = {}
    for lookahead in (0, 1):
        prop = FakePoolProposer(sleep_s=0.1, distinct=True)
        t0 = time.perf_counter()
        search(MemoryStore(), prop, FakeSlowEvaluator(fixed_s=0.1), lookahead).run(budget=6)
        walls[lookahead] = time.perf_counter() - t0
    # sleeps, not CPU work: 6 x (0.1 + 0.1) s in turn, about 0.1 + 6 x 0.1 s overlapped
    assert walls[0] > 1.2 and walls[1] < 0.8 * walls[0], walls


def test_queued_evaluations_run_while_the_proposer_writes():
    """A proposer of 2 candidates a call and a lookahead of 2: its call overlaps both open evaluations, so the second
    starts (the worker never waits for the main thread) while the proposer is still writing."""
    writing = threading.Event()

    class FakeBatchProposer(BaseProposer):
        name = "fake-batch"
        calls = 0

        def propose(self, history, n, rng):
            writing.set()
            time.sleep(0.3)
            writing.clear()
            self.calls += 1
            return [Proposal(SPACE.sample(random.Random(f"batch:{self.calls}:{i}"))) for i in range(2)]

    class FakeWatchingEvaluator(FakeSlowEvaluator):
        started_while_writing: list[bool] = []

        def evaluate(self, space, spec):
            self.started_while_writing.append(writing.is_set())
            return super().evaluate(space, spec)

    ev = FakeWatchingEvaluator(fixed_s=0.05)
    search(MemoryStore(), FakeBatchProposer(), ev, lookahead=2).run(budget=8)
    assert len(ev.calls) == 8 and sum(ev.started_while_writing) >= 5, ev.started_while_writing


def test_the_budget_is_never_passed_not_even_by_a_proposal():
    prop = FakePoolProposer(distinct=True)
    ev = FakeSlowEvaluator(0)
    study = search(MemoryStore(), prop, ev, lookahead=3)
    study.run(budget=5)
    assert study.num_evaluated == 5 and len(ev.calls) == 5 and len(prop.seen) == len(study.history) == 5
    study.run(budget=7)                       # a larger budget continues the run
    assert study.num_evaluated == 7 and len(ev.calls) == 7


def test_lookahead_is_in_the_run_id_only_when_on():
    args = ("nb201", "random", {}, "r", 0)
    assert make_run_id(*args) == make_run_id(*args, lookahead=0) != make_run_id(*args, lookahead=1)
    ids = {la: search(MemoryStore(), create_proposer("random"), FakeScoreEvaluator(), la).run_id for la in (0, 1, 2)}
    assert len(set(ids.values())) == 3 and ids[0] == Search(SPACE, create_proposer("random"), FakeScoreEvaluator(),
                                                            MemoryStore()).run_id


def test_a_stalled_proposer_stops_and_what_it_proposed_is_recorded():
    study = search(MemoryStore(), ScriptedProposer([RESNET_CELL] * 50), FakeSlowEvaluator(fixed_s=0.05),
                   max_stall=10)
    with pytest.raises(SearchStalled, match="10 proposals in a row"):
        study.run(budget=5)
    assert study.num_evaluated == 1 and len(study.history) == 11
    assert all(t.error.startswith("already evaluated in this run as trial 0") for t in study.history.trials[1:])


def test_proposer_errors_are_recorded_in_their_turn():
    class FakeFlakyProposer(BaseProposer):
        name = "fake-flaky"
        calls = 0

        def propose(self, history, n, rng):
            self.calls += 1
            if self.calls % 2:
                raise ConnectionError("server died")
            return [Proposal(SPACE.sample(rng))]

    study = search(MemoryStore(), FakeFlakyProposer(), FakeSlowEvaluator(0))
    study.run(budget=3)
    assert study.num_evaluated == 3
    assert [t.status for t in study.history.trials] == [TrialStatus.INVALID, TrialStatus.COMPLETE] * 3


def test_an_interrupt_stops_the_evaluation_in_flight_at_once():
    class FakeInterruptedProposer(ScriptedProposer):
        """Ctrl-C arrives while it writes its second proposal, with the first one training."""

        def propose(self, history, n, rng):
            if not self.texts:
                raise KeyboardInterrupt
            return super().propose(history, n, rng)

    ev = FakeSlowEvaluator(fixed_s=30)
    t0 = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        search(MemoryStore(), FakeInterruptedProposer([RESNET_CELL]), ev).run(5)
    assert ev.aborted.is_set() and time.perf_counter() - t0 < 29


def test_more_workers_and_a_lookahead_are_refused():
    with pytest.raises(ValueError, match="one worker"):
        search(MemoryStore(), create_proposer("random"), FakeScoreEvaluator()).run(3, workers=2)


def test_ask_and_tell_still_serve_outside_code():
    study = search(MemoryStore(), create_proposer("random"), FakeScoreEvaluator(), lookahead=1)
    first, second = study.ask(2), study.ask(2)
    assert study.ask(2) is None
    study.tell(second, study.evaluate(second))
    study.tell(first, study.evaluate(first))
    assert study.num_evaluated == 2
