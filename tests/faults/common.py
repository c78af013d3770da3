"""Helpers of the fault suite: scripted proposers and evaluators, and a check that committed trials survived."""
from __future__ import annotations

import threading

from llmnas_local.dsl import Constraints
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import TIME_LIMIT_S, VAL_ACC, Outcome, TrialRecord, TrialStatus


class ScriptedProposer(BaseProposer):
    """Proposes the given texts in order, then the last one forever (a fake for loop tests)."""

    name = "scripted"

    def __init__(self, texts):
        self.texts = list(texts)

    def propose(self, history, n, rng):
        return [Proposal(self.texts.pop(0) if len(self.texts) > 1 else self.texts[0])]


def killed(text: str) -> Outcome:
    return Outcome(TrialStatus.FAILED, {}, "killed by signal 9 (out of memory?)")


class ScriptedEvaluator(BaseEvaluator):
    """Answers each text with the next of its scripted outcomes (the last one forever; COMPLETE when unscripted).
    A scripted "timeout" runs past the time limit: it is a TIMEOUT under any limit, carrying the limit."""

    name = "scripted"

    def __init__(self, script: dict[str, list[str]] | None = None, time_limit_s: float = 1.0):
        super().__init__(Constraints())
        self.script = {k: list(v) for k, v in (script or {}).items()}
        self.time_limit_s = time_limit_s
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def recipe(self):
        return {"scripted": 1}

    def precheck(self, space, spec):
        return {}

    def evaluate(self, space, spec):
        text = space.format(spec)
        with self.lock:
            self.calls.append(text)
            todo = self.script.get(text, ["complete"])
            kind = todo.pop(0) if len(todo) > 1 else todo[0]
        if kind == "timeout":
            return Outcome(TrialStatus.TIMEOUT, {}, f"exceeded the time limit of {self.time_limit_s:g} s",
                           {TIME_LIMIT_S: self.time_limit_s})
        if kind == "killed":
            return killed(text)
        if kind == "raise":
            return Outcome(TrialStatus.FAILED, {}, "RuntimeError: boom")
        return Outcome(TrialStatus.COMPLETE, {VAL_ACC: float(len(text) % 97)})


def assert_kept(before: list[TrialRecord], after: list[TrialRecord]) -> None:
    """Every trial committed before is still there, byte for byte, and sequence numbers are dense."""
    assert [t.dumps() for t in after[: len(before)]] == [t.dumps() for t in before]
    for run_id in {t.run_id for t in after}:
        seqs = [t.seq for t in after if t.run_id == run_id]
        assert seqs == list(range(len(seqs))), f"sequence numbers of {run_id} are not dense"
