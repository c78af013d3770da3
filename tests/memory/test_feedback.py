"""The feedback memory is a view over the history: elites, and the last K diagnostic triples with outcomes."""
from __future__ import annotations

from llmnas_local.dsl import Constraints, get_space
from llmnas_local.memory.feedback import DIAGNOSIS, FeedbackMemory, trial_outcome
from llmnas_local.prompts.render import outcome_text
from llmnas_local.records import PARAMS_M, VAL_ACC, TrialRecord, TrialStatus
from llmnas_local.search.history import HistoryView


def _trial(seq, status, val=None, error="", diagnosis=None, text=None):
    metrics = {VAL_ACC: val, PARAMS_M: 0.5} if val is not None else {}
    return TrialRecord(run_id="r", seq=seq, proposer="llm", raw=text or f"arch{seq}", status=status,
                       canonical=text or f"arch{seq}", arch_hash=f"h{seq}", metrics=metrics, error=error,
                       llm={DIAGNOSIS: diagnosis} if diagnosis else {})


def _history(trials):
    return HistoryView(get_space("nb201"), Constraints(), trials)


def test_window_keeps_the_last_k_trials_with_their_diagnosis_and_outcome():
    trials = [_trial(i, TrialStatus.COMPLETE, val=50 + i, diagnosis={"problem": f"p{i}", "modification": f"m{i}"})
              for i in range(8)]
    triples = FeedbackMemory(window=3).triples(_history(trials))
    assert [t.problem for t in triples] == ["p5", "p6", "p7"]
    assert outcome_text(triples[-1].outcome).startswith("val_acc 57.00 (+0.00 vs best 57.00)")
    assert outcome_text(triples[0].outcome).startswith("val_acc 55.00 (-2.00 vs best 57.00)")


def test_failures_rejections_and_duplicates_are_shown_with_their_reason():
    h = _history([_trial(0, TrialStatus.COMPLETE, val=80.0),
                  _trial(1, TrialStatus.INVALID, error="rejected: total stride 64 exceeds input 32"),
                  _trial(2, TrialStatus.FAILED, error="diverged: loss is nan at step 3"),
                  _trial(3, TrialStatus.DUPLICATE, val=80.0)])
    outcomes = [outcome_text(t.outcome) for t in FeedbackMemory(window=5).triples(h)]
    assert outcomes[1] == "invalid, not evaluated: rejected: total stride 64 exceeds input 32"
    assert outcomes[2] == "failed: diverged: loss is nan at step 3"
    assert outcomes[3].startswith("already evaluated (val_acc 80.00)")


def test_window_zero_and_elites_zero_switch_parts_off():
    h = _history([_trial(i, TrialStatus.COMPLETE, val=i) for i in range(4)])
    mem = FeedbackMemory(window=0, elites=0)
    assert mem.triples(h) == [] and mem.elites(h) == []
    elites = FeedbackMemory(elites=2).elites(h)
    assert [e.val_acc for e in elites] == [3, 2]


def test_describe_outcome_of_a_timeout():
    assert outcome_text(trial_outcome(_trial(0, TrialStatus.TIMEOUT, error="ran past 600 s"), None)) == \
        "timed out: ran past 600 s"


def test_a_repeated_proposal_fills_one_slot_with_its_count_and_the_model_s_own_spelling():
    trials = [_trial(0, TrialStatus.COMPLETE, val=70.0, text="a"), _trial(1, TrialStatus.COMPLETE, val=71.0, text="b")]
    trials += [_trial(i, TrialStatus.DUPLICATE, val=71.0, text="b") for i in range(2, 6)]
    trials.append(TrialRecord(run_id="r", seq=6, proposer="llm", raw="|x~0|", canonical="|none~0|", arch_hash="h6",
                              status=TrialStatus.INVALID, error="rejected: zero output"))
    triples = FeedbackMemory(window=3).triples(_history(trials))
    assert [t.proposal for t in triples] == ["a", "b", "|x~0|"]
    texts = [outcome_text(t.outcome) for t in triples]
    assert texts[1].endswith("(proposed 5 times)") and texts[1].startswith("already evaluated")
    assert "proposed" not in texts[0] and "proposed" not in texts[2]
