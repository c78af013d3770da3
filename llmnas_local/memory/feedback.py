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
class Triple:
    """One diagnostic triple of the sliding window."""

    problem: str
    modification: str
    proposal: str
    outcome: str


@dataclasses.dataclass(frozen=True)
class Elite:
    text: str
    val_acc: float
    params_m: float | None
    flops_m: float | None


def describe_outcome(trial: TrialRecord, best_val: float | None) -> str:
    """One line that tells the model what became of a proposal."""
    m = trial.metrics
    if trial.status is TrialStatus.COMPLETE and VAL_ACC in m:
        delta = "" if best_val is None else f" ({m[VAL_ACC] - best_val:+.2f} vs best {best_val:.2f})"
        size = f", {m[PARAMS_M]:.3f}M params" if PARAMS_M in m else ""
        return f"val_acc {m[VAL_ACC]:.2f}{delta}{size}"
    if trial.status is TrialStatus.DUPLICATE:
        prior = f" (val_acc {m[VAL_ACC]:.2f})" if VAL_ACC in m else ""
        return f"already evaluated{prior}: wasted, propose something new"
    if trial.status is TrialStatus.INVALID:
        return f"invalid, not evaluated: {trial.error}"
    if trial.status is TrialStatus.TIMEOUT:
        return f"timed out: {trial.error}"
    return f"failed: {trial.error}"


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
            outcome = describe_outcome(t, best_val)
            if counts[text] > 1:
                outcome += f" (proposed {counts[text]} times)"
            out.append(Triple(problem=str(diagnosis.get("problem", "")),
                              modification=str(diagnosis.get("modification", "")), proposal=text, outcome=outcome))
        return out
