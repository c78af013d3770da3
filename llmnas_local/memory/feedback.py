"""The feedback memory: a view over the run's history that goes back into the next prompt.

Two parts, as in the method (arXiv 2603.12091):
- the **elites**: the best designs so far, with their metrics;
- a **sliding window of the last K diagnostic triples**: (problem identified, modification tried, outcome that
  followed), where the outcome is a metric or the reason of a failure, rejection or duplicate.
It is derived from the stored trials only, so a resumed search continues with exactly the same memory, and its size
does not grow with the length of the search.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import dataclasses

from llmnas_local.records import FLOPS_M, PARAMS_M, VAL_ACC, TrialRecord, TrialStatus

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView

DIAGNOSIS = "diagnosis"    # the JSON key of TrialRecord.llm's diagnosis ({"problem": ..., "modification": ...})
SCAN_PER_SLOT = 8          # the window looks back over at most this many trials per slot for distinct proposals


@dataclasses.dataclass(frozen=True)
class TrialOutcome:
    """What became of a proposal, as data (the prompts put it in words: :mod:`llmnas_local.prompts.render`)."""

    status: str                       # "complete", "duplicate", "invalid", "timeout", "failed"
    val_acc: float | None = None      # the trial's (a duplicate: the earlier evaluation's)
    best_val: float | None = None     # the run's best when the memory was read
    params_m: float | None = None
    error: str = ""
    times: int = 1                    # how often the model proposed it within the window


@dataclasses.dataclass(frozen=True)
class Triple:
    """One diagnostic triple of the sliding window."""

    problem: str
    modification: str
    proposal: str
    outcome: TrialOutcome


@dataclasses.dataclass(frozen=True)
class Elite:
    text: str
    val_acc: float
    params_m: float | None
    flops_m: float | None


def trial_outcome(trial: TrialRecord, best_val: float | None, times: int = 1) -> TrialOutcome:
    m = trial.metrics
    status = trial.status.name.lower()
    if trial.status is TrialStatus.COMPLETE and VAL_ACC not in m:
        status = "failed"
    return TrialOutcome(status, m.get(VAL_ACC), best_val, m.get(PARAMS_M), trial.error, times)


class FeedbackMemory:
    """What the LLM proposer remembers: derived from a :class:`HistoryView` on each call."""

    def __init__(self, window: int = 5, elites: int = 5):
        if window < 0 or elites < 0:
            raise ValueError("memory window and elite count must be >= 0")
        self.window, self.num_elites = window, elites

    def elites(self, history: HistoryView) -> list[Elite]:
        return [Elite(t.canonical or t.raw, t.metrics[VAL_ACC], t.metrics.get(PARAMS_M), t.metrics.get(FLOPS_M))
                for t in history.best(self.num_elites)] if self.num_elites else []

    def triples(self, history: HistoryView, best_val: float | None = None) -> list[Triple]:
        """The last ``window`` distinct proposals as diagnostic triples, oldest first.

        A proposal the model wrote several times appears once, at its latest trial, with the count: a small model
        copies what its context repeats, so a window full of one duplicate would teach it that duplicate. Proposals
        are shown as the model wrote them, not in canonical form (which spells dead edges as ``none``)."""
        if self.window == 0:
            return []
        if best_val is None:
            best = history.best(1)
            best_val = best[0].metrics[VAL_ACC] if best else None
        latest: dict[str, TrialRecord] = {}
        counts: dict[str, int] = {}
        for t in reversed(history.recent(self.window * SCAN_PER_SLOT)):
            text = t.raw or t.canonical
            counts[text] = counts.get(text, 0) + 1
            if text not in latest and len(latest) < self.window:
                latest[text] = t
        out = []
        for text, t in reversed(latest.items()):
            diagnosis = t.llm.diagnosis if t.llm is not None else {}
            out.append(Triple(problem=str(diagnosis.get("problem", "")),
                              modification=str(diagnosis.get("modification", "")), proposal=text,
                              outcome=trial_outcome(t, best_val, counts[text])))
        return out
