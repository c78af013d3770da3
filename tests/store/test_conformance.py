"""The store contract (llmnas_local/store/base.py), run against every implementation."""
from __future__ import annotations

import dataclasses

import pytest

from llmnas_local.records import (BUILD_S, EVAL_S, PARAMS_M, PROPOSE_S, TRAIN_S, VAL_ACC, Outcome, RunRecord,
                                  TrialRecord, TrialStatus)
from llmnas_local.store import BaseStore, LmdbStore, MemoryStore, StoreError, open_store, text_hash

RECIPE = "r" * 64


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path) -> BaseStore:
    s = MemoryStore() if request.param == "memory" else open_store(tmp_path / "store")
    yield s
    s.close()


def make_run(run_id: str = "run-a", **kw) -> RunRecord:
    fields = dict(space="timm_cnn", proposer="random", proposer_settings={"temperature": 0.7}, evaluator="train",
                  recipe={"epochs": 3, "lr": 0.1}, recipe_hash=RECIPE, seed=3, created_at=1.5)
    return RunRecord(run_id=run_id, **{**fields, **kw})


def make_trial(run_id: str = "run-a", seq: int = 0, status: TrialStatus = TrialStatus.COMPLETE,
               arch: str | None = "a0", **kw) -> TrialRecord:
    fields = dict(proposer="random", raw=f"ir_r1_k3_s1_e4_c16 #{seq}", canonical="ir_r1_k3_s1_e4_c16",
                  recipe_hash=RECIPE, metrics={VAL_ACC: 50.0 + seq}, timings={EVAL_S: 1.0}, created_at=100.0 + seq)
    return TrialRecord(run_id=run_id, seq=seq, status=status, arch_hash=arch, **{**fields, **kw})


def full_trial() -> TrialRecord:
    """A trial with every field the test knows set to a non-default value (fields added later keep defaults)."""
    values = dict(run_id="run-a", seq=0, proposer="llm", raw="  ir_r2_k3_s2_e6_c24 ,é✓\n\"quoted\"", status=TrialStatus.FAILED,
                  canonical="ir_r2_k3_s2_e6_c24", arch_hash="f" * 64, recipe_hash=RECIPE, parent_hash="e" * 64,
                  metrics={VAL_ACC: 12.25, PARAMS_M: 1e-3, TRAIN_S: 1234.5}, error="diverged: loss nan",
                  timings={PROPOSE_S: 0.25, BUILD_S: 0.125, EVAL_S: 3.0},
                  llm={"backend": "hf", "model": "smollm2", "tokens": [3, 4], "prompt": "d" * 64,
                       "nested": {"ok": True, "none": None}},
                  from_store=True, created_at=1700000000.123456)
    names = {f.name for f in dataclasses.fields(TrialRecord)}
    return TrialRecord(**{k: v for k, v in values.items() if k in names})


def one_line(e: BaseException) -> bool:
    return "\n" not in str(e) and str(e).strip() != ""


# -- runs -----------------------------------------------------------------------------------------------------------------
def test_runs_put_get_list(store):
    assert store.get_run("run-b") is None and store.list_runs() == []
    b, a = make_run("run-b", seed=7), make_run("run-a")
    store.put_run(b)
    store.put_run(a)
    assert store.get_run("run-b") == b and store.get_run("run-a") == a
    assert store.list_runs() == [a, b]                       # id order


def test_duplicate_run_id(store):
    store.put_run(make_run())
    with pytest.raises(StoreError, match="run-a") as e:
        store.put_run(make_run(seed=99))
    assert one_line(e.value)
    assert store.get_run("run-a").seed == 3                  # unchanged


# -- trials ---------------------------------------------------------------------------------------------------------------
def test_trial_round_trip_every_field(store):
    store.put_run(make_run())
    trial = full_trial()
    store.record_trial(trial)
    [back] = list(store.trials("run-a"))
    assert back == trial
    assert back.to_json() == trial.to_json()
    assert type(back.status) is TrialStatus
    assert store.trials_of_arch(trial.arch_hash) == [trial]
    assert [f.name for f in dataclasses.fields(back)] == [f.name for f in dataclasses.fields(trial)]


def test_returned_records_are_copies(store):
    store.put_run(make_run())
    trial = make_trial()
    store.record_trial(trial)
    trial.metrics[VAL_ACC] = -1.0                            # mutating what was written changes nothing stored
    [back] = list(store.trials("run-a"))
    back.metrics[VAL_ACC] = -2.0
    assert next(store.trials("run-a")).metrics[VAL_ACC] == 50.0
    assert store.get_outcome("a0", RECIPE).metrics[VAL_ACC] == 50.0


def test_trial_of_unknown_run(store):
    with pytest.raises(StoreError, match="unknown run") as e:
        store.record_trial(make_trial("nope"))
    assert one_line(e.value)
    assert store.num_trials("nope") == 0


def test_seq_density_and_immutability(store):
    store.put_run(make_run())
    with pytest.raises(StoreError, match="density") as e:
        store.record_trial(make_trial(seq=1))
    assert one_line(e.value)
    assert store.num_trials("run-a") == 0 and store.get_outcome("a0", RECIPE) is None and not store.trials_of_arch("a0")
    store.record_trial(make_trial(seq=0))
    store.record_trial(make_trial(seq=1, arch="a1"))
    with pytest.raises(StoreError, match="immutable") as e:
        store.record_trial(make_trial(seq=1, arch="a9", raw="changed"))
    assert one_line(e.value)
    with pytest.raises(StoreError, match="density"):
        store.record_trial(make_trial(seq=3))
    with pytest.raises(StoreError):
        store.record_trial(make_trial(seq=-1))
    assert store.num_trials("run-a") == 2
    assert [t.raw for t in store.trials("run-a")] == ["ir_r1_k3_s1_e4_c16 #0", "ir_r1_k3_s1_e4_c16 #1"]
    assert store.trials_of_arch("a9") == [] and store.get_outcome("a9", RECIPE) is None


# -- outcomes -------------------------------------------------------------------------------------------------------------
def test_outcome_first_wins(store):
    store.put_run(make_run())
    store.record_trial(make_trial(seq=0, metrics={VAL_ACC: 70.0}, error="", timings={EVAL_S: 2.0}))
    store.record_trial(make_trial(seq=1, status=TrialStatus.FAILED, metrics={VAL_ACC: 10.0}, error="oom"))
    assert store.get_outcome("a0", RECIPE) == Outcome(TrialStatus.COMPLETE, {VAL_ACC: 70.0}, "", {EVAL_S: 2.0})
    assert store.get_outcome("a0", "other-recipe") is None
    store.record_trial(make_trial(seq=2, recipe_hash="other-recipe", status=TrialStatus.TIMEOUT, metrics={}))
    assert store.get_outcome("a0", "other-recipe").status is TrialStatus.TIMEOUT
    assert store.get_outcome("a0", RECIPE).metrics == {VAL_ACC: 70.0}


def test_a_transient_outcome_is_replaced_by_the_next_evaluation(store):
    store.put_run(make_run())
    killed = "killed by signal 9 (out of memory?)"
    store.record_trial(make_trial(seq=0, status=TrialStatus.TIMEOUT, metrics={}, error="exceeded the time limit"))
    store.record_trial(make_trial(seq=1, status=TrialStatus.FAILED, metrics={}, error=killed))
    assert store.get_outcome("a0", RECIPE).error == killed                  # transient, replaced by a transient
    store.record_trial(make_trial(seq=2, status=TrialStatus.FAILED, metrics={}, error="kept", from_store=True))
    assert store.get_outcome("a0", RECIPE).error == killed                  # a copy from the store replaces nothing
    store.record_trial(make_trial(seq=3, metrics={VAL_ACC: 60.0}))
    store.record_trial(make_trial(seq=4, status=TrialStatus.FAILED, metrics={}, error=killed))
    assert store.get_outcome("a0", RECIPE).metrics == {VAL_ACC: 60.0}       # final: the first final one wins


def test_forget_outcomes_keeps_trials(store):
    store.put_run(make_run())
    for seq, (arch, status) in enumerate([("a", TrialStatus.COMPLETE), ("b", TrialStatus.FAILED),
                                          ("c", TrialStatus.TIMEOUT), ("d", TrialStatus.INVALID)]):
        store.record_trial(make_trial(seq=seq, arch=arch, status=status))
    before = list(store.trials("run-a"))
    assert store.forget_outcomes([TrialStatus.FAILED, TrialStatus.TIMEOUT]) == 2
    assert [store.get_outcome(a, RECIPE) is None for a in "abcd"] == [False, True, True, False]
    assert list(store.trials("run-a")) == before and store.forget_outcomes([TrialStatus.FAILED]) == 0


@pytest.mark.parametrize("status", [TrialStatus.DUPLICATE, TrialStatus.PENDING])
def test_no_outcome_for_duplicate_or_pending(store, status):
    store.put_run(make_run())
    store.record_trial(make_trial(seq=0, status=status))
    assert store.get_outcome("a0", RECIPE) is None
    assert [t.status for t in store.trials_of_arch("a0")] == [status]   # still indexed by architecture
    store.record_trial(make_trial(seq=1, status=TrialStatus.COMPLETE))   # the first real outcome is filed
    assert store.get_outcome("a0", RECIPE).status is TrialStatus.COMPLETE


def test_no_outcome_without_arch_hash_but_invalid_with_one_files(store):
    store.put_run(make_run())
    store.record_trial(make_trial(seq=0, status=TrialStatus.INVALID, arch=None, canonical=None, error="parse error"))
    assert store.num_trials("run-a") == 1
    store.record_trial(make_trial(seq=1, status=TrialStatus.INVALID, arch="big", error="rejected: params"))
    assert store.get_outcome("big", RECIPE) == Outcome(TrialStatus.INVALID, {VAL_ACC: 51.0}, "rejected: params",
                                                       {EVAL_S: 1.0})


def test_trials_of_arch_across_runs_oldest_first(store):
    store.put_run(make_run("run-b"))
    store.put_run(make_run("run-a"))
    order = [("run-b", 0, "x"), ("run-a", 0, "y"), ("run-a", 1, "x"), ("run-b", 1, "x"), ("run-a", 2, "x")]
    for run_id, seq, arch in order:
        store.record_trial(make_trial(run_id, seq, arch=arch))
    assert [(t.run_id, t.seq) for t in store.trials_of_arch("x")] == [o[:2] for o in order if o[2] == "x"]
    assert [(t.run_id, t.seq) for t in store.trials_of_arch("y")] == [("run-a", 0)]
    assert store.trials_of_arch("z") == [] and store.trials_of_arch("") == []


# -- texts ----------------------------------------------------------------------------------------------------------------
def test_texts_stored_once(store):
    text = "You are an architecture designer.\nBest so far: ir_r1_k3 (91.2%) é✓"
    digest = store.put_text(text)
    assert digest == text_hash(text) and len(digest) == 64
    assert store.put_text(text) == digest
    assert store.get_text(digest) == text
    assert store.get_text(text_hash("other")) is None and store.get_text("") is None
    assert store.get_text(store.put_text("")) == ""


# -- iteration ------------------------------------------------------------------------------------------------------------
def test_iteration_order(store):
    run_ids = ["b", "a b", "a", "a-2", "ab", "Z", "é"]
    for rid in run_ids:
        store.put_run(make_run(rid))
    for i in range(12):                              # interleaved across runs
        rid = run_ids[i % 4]
        store.record_trial(make_trial(rid, store.num_trials(rid), arch=f"h{i}"))
    assert [r.run_id for r in store.list_runs()] == sorted(run_ids)
    for rid in run_ids:
        assert [t.seq for t in store.trials(rid)] == list(range(store.num_trials(rid)))
    assert [(t.run_id, t.seq) for t in store.trials()] == sorted((t.run_id, t.seq) for t in store.trials())
    assert [t.run_id for t in store.trials()].count("a") == 3 and store.num_trials("Z") == 0
    assert list(store.trials("missing")) == [] and store.num_trials("missing") == 0


def test_iterator_survives_writes_between_yields(store):
    store.put_run(make_run())
    for i in range(3):
        store.record_trial(make_trial(seq=i, arch=f"h{i}"))
    seen = []
    for t in store.trials("run-a"):                  # a search may write while a reader iterates
        seen.append(t.seq)
        if t.seq == 0:
            store.record_trial(make_trial(seq=3, arch="h3"))
    assert seen[:3] == [0, 1, 2] and store.num_trials("run-a") == 4


# -- life cycle -----------------------------------------------------------------------------------------------------------
def test_close_idempotent(store):
    store.put_run(make_run())
    store.close()
    store.close()


def test_context_manager(tmp_path):
    for s in (MemoryStore(), LmdbStore(tmp_path / "s")):
        with s as opened:
            assert opened is s
            s.put_run(make_run())
        s.close()
        with pytest.raises(StoreError):
            s.get_run("run-a")


def test_nan_and_infinite_metrics_round_trip(store):
    """A diverged training reports a NaN loss: the record and its outcome must survive the JSON round trip."""
    store.put_run(make_run())
    store.record_trial(make_trial(status=TrialStatus.FAILED, metrics={"train_loss": float("nan"),
                                                                      VAL_ACC: float("-inf")}))
    [back] = list(store.trials("run-a"))
    assert back.metrics["train_loss"] != back.metrics["train_loss"] and back.metrics[VAL_ACC] == float("-inf")
    assert store.get_outcome("a0", RECIPE).metrics[VAL_ACC] == float("-inf")
