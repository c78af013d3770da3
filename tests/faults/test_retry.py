"""Transient outcomes (a time-out, a worker killed by a signal) are evaluated again where it matters; final ones never.

The loop and the store are real (nb201 space, LMDB); the evaluator is scripted, so these run in a second.
"""
from __future__ import annotations

import random

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.dsl import get_space
from llmnas_local.records import TIME_LIMIT_S, TrialStatus
from llmnas_local.search import Search
from llmnas_local.store import LmdbStore, open_store
from tests.faults.common import ScriptedEvaluator, ScriptedProposer, assert_kept

SPACE = get_space("nb201")
A, B, C, D = (SPACE.canonical(SPACE.parse(SPACE.sample(random.Random(i)))) for i in range(4))
assert len({A, B, C, D}) == 4
S = {t: t for t in (A, B, C, D)}


def statuses(trials):
    return [(t.canonical, t.status.name.lower()) for t in trials]


def test_a_timeout_is_retried_by_a_rerun_with_a_longer_time_limit(tmp_path):
    store_path = tmp_path / "s"
    with open_store(store_path) as st:
        search = Search(SPACE, ScriptedProposer([A, B, C]), ScriptedEvaluator({B: ["timeout"]}, 1.0), st, seed=0)
        search.run(3)
        assert statuses(st.trials()) == [(A, "complete"), (B, "timeout"), (C, "complete")]
        assert st.get_outcome(SPACE.hash_canonical(B), search.recipe_hash).timings[TIME_LIMIT_S] == 1.0
        before = list(st.trials())
    # The same command again, same limit: nothing to redo. With a longer limit: B is retrained, the budget unchanged.
    for limit, expected in ((1.0, 3), (5.0, 4)):
        with open_store(store_path) as st:
            ev = ScriptedEvaluator({}, limit)
            search = Search(SPACE, ScriptedProposer([D]), ev, st, seed=0)
            search.run(3)
            trials = list(st.trials())
            assert len(trials) == expected and search.num_evaluated == 3
    assert ev.calls == [B]
    assert_kept(before, trials)
    assert statuses(trials)[3] == (B, "complete") and search.best() is not None
    with open_store(store_path) as st:             # the store's outcome is now the complete one; another run uses it
        assert st.get_outcome(SPACE.hash_canonical(B), search.recipe_hash).status is TrialStatus.COMPLETE
        other = Search(SPACE, ScriptedProposer([B, D]), ScriptedEvaluator({}, 1.0), st, seed=1)
        other.run(2)
        assert [t.from_store for t in st.trials(other.run_id)] == [True, False]


def test_a_killed_worker_is_retried_up_to_max_attempts_then_final():
    from llmnas_local.store import MemoryStore

    st = MemoryStore()
    ev = ScriptedEvaluator({B: ["killed", "complete"], C: ["killed"]})
    search = Search(SPACE, ScriptedProposer([A, B, C, D]), ev, st, seed=0)
    search.run(4)
    assert statuses(st.trials()) == [(A, "complete"), (B, "failed"), (B, "complete"), (C, "failed"), (C, "failed"),
                                     (C, "failed"), (D, "complete")]
    assert ev.calls == [A, B, B, C, C, C, D] and search.num_evaluated == 4
    # Another run with the same recipe: C failed 3 times, which is final; B's outcome is the complete one.
    other = Search(SPACE, ScriptedProposer([B, C]), ScriptedEvaluator({}), st, seed=1)
    other.run(2)
    assert [(t.status.name.lower(), t.from_store) for t in st.trials(other.run_id)] == [("complete", True),
                                                                                         ("failed", True)]


def test_another_run_retrains_a_transient_outcome_a_first_run_stored(tmp_path):
    with open_store(tmp_path / "s") as st:
        first = Search(SPACE, ScriptedProposer([A]), ScriptedEvaluator({A: ["killed"]}), st, seed=0)
        first.evaluator.max_attempts = 1
        first.run(1)
        ev = ScriptedEvaluator({})
        second = Search(SPACE, ScriptedProposer([A]), ev, st, seed=1)
        second.run(1)
        assert ev.calls == [A] and not next(st.trials(second.run_id)).from_store
        assert st.get_outcome(SPACE.hash_canonical(A), second.recipe_hash).status is TrialStatus.COMPLETE


def test_final_failures_are_never_retried(tmp_path):
    with open_store(tmp_path / "s") as st:
        Search(SPACE, ScriptedProposer([A]), ScriptedEvaluator({A: ["raise"]}), st, seed=0).run(1)
        ev = ScriptedEvaluator({}, 100.0)
        Search(SPACE, ScriptedProposer([A, B]), ev, st, seed=1).run(2)
        assert ev.calls == [B]


def test_store_forget_makes_failed_outcomes_evaluated_again(tmp_path):
    path = tmp_path / "s"
    with open_store(path) as st:
        Search(SPACE, ScriptedProposer([A, B, C]), ScriptedEvaluator({A: ["raise"], B: ["timeout"]}), st,
               seed=0).run(3)
        before = list(st.trials())
    r = CliRunner().invoke(cli, ["store", "forget", str(path)])
    assert r.exit_code == 0 and "forgot 2 outcomes (failed, timeout)" in r.output, r.output
    with LmdbStore(path, readonly=True) as st:
        assert_kept(before, list(st.trials()))
        assert st.get_outcome(SPACE.hash_canonical(A), before[0].recipe_hash) is None
        assert st.get_outcome(SPACE.hash_canonical(C), before[0].recipe_hash) is not None
    with open_store(path) as st:
        ev = ScriptedEvaluator({})
        Search(SPACE, ScriptedProposer([A, B, C]), ev, st, seed=1).run(3)
        assert ev.calls == [A, B]


@pytest.mark.parametrize("status", ["timeout", "failed"])
def test_forget_one_status(tmp_path, status):
    path = tmp_path / "s"
    with open_store(path) as st:
        Search(SPACE, ScriptedProposer([A, B]), ScriptedEvaluator({A: ["raise"], B: ["timeout"]}), st, seed=0).run(2)
    r = CliRunner().invoke(cli, ["store", "forget", str(path), "--status", status])
    assert r.exit_code == 0 and f"forgot 1 outcome ({status})" in r.output, r.output
