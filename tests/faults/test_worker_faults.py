"""Trainings that die, crash, hang or diverge in the real worker, inside a real search: each becomes a recorded
outcome, transient ones are retried within bounds, and the search goes on with every committed trial kept.

Worker start-ups cost an import of torch (seconds on two cores), so the checks share two searches.
"""
from __future__ import annotations

import pytest

from llmnas_local.evaluators.data import DataSpec
from llmnas_local.evaluators.training import TrainingConfig, TrainingEvaluator
from llmnas_local.evaluators.worker import WorkerStartError
from llmnas_local.records import TIME_LIMIT_S, TrialStatus
from llmnas_local.search import Search
from llmnas_local.store import open_store
from tests.faults.common import ScriptedProposer, assert_kept
from tests.faults.fault_space import FaultSpace

SPACE = FaultSpace()
INJECT = str(__import__("pathlib").Path(__file__).with_name("inject"))


@pytest.fixture
def kill_starts(tmp_path, monkeypatch):
    """``kill_starts(n)``: the next n worker start-ups are SIGKILLed (tests/faults/inject/sitecustomize.py)."""
    counter = tmp_path / "kill-starts"

    def arm(n: int) -> None:
        counter.write_text(str(n))
        monkeypatch.setenv("LLMNAS_FAULT_KILL_STARTS", str(counter))
        monkeypatch.setenv("PYTHONPATH", INJECT)
    return arm


def evaluator(tmp_path, time_limit_s: float = 60.0) -> TrainingEvaluator:
    spec = DataSpec("digits", train_size=128, val_size=64, test_size=64, resolution=8,
                    cache_dir=str(tmp_path / "cache"))
    return TrainingEvaluator(spec, TrainingConfig(device="cpu", epochs=1, batch_size=32), time_limit_s=time_limit_s,
                             threads=1, start_retry_s=0.05)


@pytest.mark.slow
def test_every_fault_is_a_recorded_outcome_and_the_search_goes_on(tmp_path, kill_starts):
    kill_starts(1)                                           # the first worker dies while it starts: restarted
    texts = ["fault_c4_ok", "fault_c4_kill", "fault_c4_segv", "fault_c4_nan", "fault_c4_raise", "fault_c4_sleep",
             "fault_c5_ok"]
    ev = evaluator(tmp_path, time_limit_s=3.0)
    ev.max_attempts = 2
    with open_store(tmp_path / "s") as st:
        search = Search(SPACE, ScriptedProposer(texts), ev, st, seed=0)
        try:
            search.run(len(texts))
        finally:
            ev.close()
        trials = list(st.trials())
    got = [(t.canonical.split("_")[2], t.status.name.lower(), t.error) for t in trials]
    assert got == [
        ("ok", "complete", ""),
        ("kill", "failed", "killed by signal 9 (out of memory?)"),
        ("kill", "failed", "killed by signal 9 (out of memory?)"),     # retried once (max_attempts 2), then final
        ("segv", "failed", "killed by signal 11 (SIGSEGV)"),
        ("segv", "failed", "killed by signal 11 (SIGSEGV)"),
        ("nan", "failed", "diverged: loss is nan at step 1"),            # final: never retried
        ("raise", "failed", "RuntimeError: boom in forward"),
        ("sleep", "timeout", "exceeded the time limit of 3 s"),          # not retried under the same limit
        ("ok", "complete", ""),
    ], got
    assert trials[0].timings["worker_start_s"] > 0 and trials[7].timings[TIME_LIMIT_S] == 3.0
    assert search.num_evaluated == len(texts)


@pytest.mark.slow
def test_a_worker_that_never_starts_fails_trials_then_stops_the_search_with_the_reason(tmp_path, kill_starts):
    kill_starts(100)
    ev = evaluator(tmp_path)
    ev.max_attempts = 1
    with open_store(tmp_path / "s") as st:
        search = Search(SPACE, ScriptedProposer([f"fault_c{w}_ok" for w in range(1, 10)]), ev, st, seed=0)
        with pytest.raises(WorkerStartError, match=r"3 trials in a row could not start a training worker; last: "
                                                   r"training worker failed to start: killed by signal 9 .* "
                                                   r"\(3 attempts\)"):
            search.run(9)
        before = list(st.trials())
        ev.close()
    # Two trials were recorded as transient failures; the third, in flight, was dropped. A rerun with memory again
    # retries the two first (they are transient), then goes on.
    assert [(t.status, t.error.startswith("training worker failed to start")) for t in before] == [
        (TrialStatus.FAILED, True)] * 2
    kill_starts(0)
    ev = evaluator(tmp_path)
    with open_store(tmp_path / "s") as st:
        try:
            Search(SPACE, ScriptedProposer([f"fault_c{w}_ok" for w in range(3, 10)]), ev, st, seed=0).run(3)
        finally:
            ev.close()
        after = list(st.trials())
    assert_kept(before, after)
    assert [t.status.name.lower() for t in after[2:]] == ["complete"] * 3
    assert [t.canonical for t in after[2:4]] == [t.canonical for t in before]   # the retries come first
