"""The feedback memory of an editing proposer (``llm-edit``): the method's diagnostic triples at the level of edits.

Every evaluated child that differs from its parent in one slot (an LLM edit or a random mutation) is an :class:`Edit`:
the slot the edit named as the parent's weak part (the *problem*), the new value (the *modification*), and the
child's validation accuracy minus its parent's (the *outcome*). The memory shows the last K edits, and per slot how
its edits have fared in this run. Like :class:`~llmnas_local.memory.feedback.FeedbackMemory` it is derived from the
stored trials only, so a resumed search continues with the same memory.
"""
from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from llmnas_local.records import VAL_ACC, TrialRecord, TrialStatus

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView


@dataclasses.dataclass(frozen=True)
class Edit:
    """One slot of a parent set to a new value, and what became of the child."""

    slot: str
    label: str
    old: str
    new: str
    delta: float | None      # child val_acc - parent val_acc; None when the child did not complete
    status: str              # the child's: "complete", "failed", "timeout"...


@dataclasses.dataclass(frozen=True)
class SlotRecord:
    """How the edits of one slot have fared in a run."""

    slot: str
    edits: int
    better: int
    mean_delta: float | None
    best_delta: float | None
    best_value: str | None


def find_edit(space: Any, parent: TrialRecord, child: TrialRecord) -> Edit | None:
    """The one-slot edit that turns ``parent`` into ``child`` (compared as written), or None when they differ in more
    than one slot or the space has no slots."""
    try:
        parent_spec, child_spec = space.parse(parent.raw), space.parse(child.raw)
    except ValueError:
        return None
    for slot in space.slots(parent_spec) or ():
        for value, spec in slot.options:
            if spec == child_spec:
                delta = None
                if child.status is TrialStatus.COMPLETE and VAL_ACC in child.metrics and VAL_ACC in parent.metrics:
                    delta = child.metrics[VAL_ACC] - parent.metrics[VAL_ACC]
                return Edit(slot.name, slot.label, slot.value, value, delta, child.status.name.lower())
    return None


class EditMemory:
    """The last ``window`` edits and, with ``slot_stats``, each slot's record; memoized per trial (a run's trials
    never change once recorded)."""

    def __init__(self, window: int = 5, slot_stats: bool = True):
        if window < 0:
            raise ValueError("memory window must be >= 0")
        self.window, self.slot_stats = window, slot_stats
        self._edits: dict[tuple[str, int], Edit | None] = {}

    @property
    def enabled(self) -> bool:
        return self.window > 0 or self.slot_stats

    def edits(self, history: HistoryView) -> list[Edit]:
        """Every edit of the run whose child was evaluated, oldest first."""
        out = []
        for t in history.trials:
            if not t.parent_hash or not t.status.evaluated:
                continue
            key = (t.run_id, t.seq)
            if key not in self._edits:
                parent = history.known(t.parent_hash)
                self._edits[key] = None if parent is None else find_edit(history.space, parent, t)
            if self._edits[key] is not None:
                out.append(self._edits[key])
        return out

    def recent(self, edits: list[Edit]) -> list[Edit]:
        return edits[-self.window:] if self.window else []

    def by_slot(self, edits: list[Edit]) -> list[SlotRecord]:
        """Slots in the order first edited."""
        if not self.slot_stats:
            return []
        groups: dict[str, list[Edit]] = {}
        for e in edits:
            groups.setdefault(e.slot, []).append(e)
        out = []
        for slot, group in groups.items():
            scored = [e for e in group if e.delta is not None]
            best = max(scored, key=lambda e: e.delta, default=None)
            out.append(SlotRecord(slot, len(group), sum(e.delta > 0 for e in scored),
                                  sum(e.delta for e in scored) / len(scored) if scored else None,
                                  best.delta if best else None, best.new if best else None))
        return out
