"""Propose while evaluating: the one-worker loop with a bounded, exact lookahead (``Search(..., lookahead=L)``).

With one worker and no lookahead the proposer waits for each training and the training for each proposer call. With
a lookahead of L the loop keeps up to L + 1 evaluations open: one runs in a pool thread (the training itself runs in
its worker process) while the main thread already asks the proposer for the next ones. Wall time per trial then
approaches max(propose, evaluate) instead of their sum.

Exact, whatever the timing, and on resume. Trials are recorded in the order they were proposed (an evaluation's
record waits for its outcome, and what was proposed after it waits for that), and only at fixed points: before each
ask, the oldest open evaluations are waited for and recorded until at most L are open; outcomes that came early stay
unrecorded until then. So the proposer call that proposes the trial at position n sees exactly the trials before the
earliest of the last L evaluations before n (with L = 1: everything but the evaluation running), and its rng is
seeded by (n, open evaluations): a function of the recorded trials only. An answer from another run's stored
outcome counts as an evaluation here, so a search proposes the same in a store that knew some outcomes as in a fresh
one. A resumed run recomputes that window from
its store (:meth:`LookaheadLoop._replay`) and proposes what the uninterrupted run proposed. Transient outcomes
(time-outs, killed workers) and their retries depend on timing by nature; so does a proposer that returns several
proposals a call when the run stops between them (as without a lookahead).

Budget: the budget still counts distinct evaluations; no proposal is made once the evaluations done, open and
answered from the store reach it, so a lookahead never proposes past the budget and nothing extra is recorded. A
duplicate of a proposal not yet recorded is recorded, in its turn, as a duplicate of that one's trial.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
from typing import TYPE_CHECKING

from llmnas_local.search.history import HistoryView
from llmnas_local.search.trials import PendingTrial, SearchStalled, Verdict

if TYPE_CHECKING:
    from llmnas_local.search.study import Search


@dataclasses.dataclass
class _Slot:
    """A proposal in the window, in proposal order: an evaluation (``pending``) or a ``verdict``; ``recorded``: a
    trial the store already holds (a resumed run's replayed window), kept only for the view it hides; ``is_eval``:
    it counts as an evaluation (evaluated now, or answered by another run's stored outcome)."""

    pending: PendingTrial | None = None
    verdict: Verdict | None = None
    future: cf.Future | None = None     # its evaluation, queued on the one-thread pool when it is proposed
    recorded: bool = False
    is_eval: bool = False


class LookaheadLoop:
    """Drives ``search`` with one evaluation in a pool thread and proposals made ``search.lookahead`` ahead."""

    def __init__(self, search: Search):
        self.search, self.lookahead = search, search.lookahead
        self.slots: collections.deque[_Slot] = collections.deque(self._replay())
        self._view: tuple[int, HistoryView] | None = None
        self._pool: cf.ThreadPoolExecutor | None = None

    def run(self, budget: int) -> None:
        s = self.search
        s._window = self
        try:
            with cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmnas-eval") as self._pool:
                try:
                    while True:
                        self._flush(self.lookahead)
                        pending = s.ask(budget)
                        if pending is not None:   # queued at once: the worker never waits for the main thread
                            future = self._pool.submit(s.evaluate, pending)
                            self.slots.append(_Slot(pending=pending, future=future, is_eval=True))
                        elif any(slot.pending is not None for slot in self.slots):
                            self._flush(0)           # the budget is reached: record the rest (retries may follow)
                        else:
                            break
                    self._flush(0)
                except SearchStalled:
                    self._flush(0)                   # as without a lookahead: what was proposed is recorded
                    raise
                except BaseException:
                    # Ctrl-C, SIGTERM or an error: what is not recorded is dropped (a resume proposes it again).
                    for slot in self.slots:
                        if slot.future is not None:
                            slot.future.cancel()
                    s.evaluator.abort()
                    raise
        finally:
            s._window = None

    # -- the hooks Search asks ------------------------------------------------------------------------------------------
    def view(self) -> tuple[HistoryView, int, int]:
        """(what the proposer sees, the next proposal's position, open evaluations)."""
        s = self.search
        replayed = sum(slot.recorded for slot in self.slots)
        visible = len(s.history) - replayed
        if replayed:                        # a resumed run's first calls: the history as it was then
            if self._view is None or self._view[0] != visible:
                h = s.history
                self._view = visible, HistoryView(s.space, h.constraints, h.trials[:visible], task=h.task, seed=h.seed,
                                                     objective=h.objective)
            history = self._view[1]
        else:
            self._view, history = None, s.history
        position = len(s.history) + sum(not slot.recorded for slot in self.slots)
        return history, position, sum(slot.is_eval for slot in self.slots)

    def hold(self, verdict: Verdict) -> None:
        # An answer from another run's stored outcome counts as an evaluation here, so that what the proposer sees
        # does not depend on whether the store already knew an outcome.
        self.slots.append(_Slot(verdict=verdict, is_eval=verdict.status.evaluated))

    def holds(self, arch_hash: str) -> bool:
        """Whether a proposal not recorded yet has this architecture."""
        return any(not slot.recorded and (slot.pending or slot.verdict).arch_hash == arch_hash for slot in self.slots)

    def answers(self) -> int:
        """Answers from the store not recorded yet (the budget counts them)."""
        return sum(1 for slot in self.slots if slot.verdict is not None and slot.verdict.status.evaluated)

    # -- internals ------------------------------------------------------------------------------------------------------
    def _replay(self) -> list[_Slot]:
        """A resumed run's window: the trials from the earliest of its last L evaluations on, as they stood when the
        interrupted run made its next proposal."""
        trials = self.search.history.trials
        evals = [i for i, t in enumerate(trials) if t.status.evaluated]
        if not evals:
            return []
        cut = evals[-min(self.lookahead, len(evals))]
        return [_Slot(recorded=True, is_eval=t.status.evaluated) for t in trials[cut:]]

    def _open(self) -> int:
        return sum(slot.is_eval for slot in self.slots)

    def _flush(self, keep: int) -> None:
        """Record from the front of the window until its first slot is an evaluation and at most ``keep`` are open."""
        s = self.search
        while self.slots and (not self.slots[0].is_eval or self._open() > keep):
            slot = self.slots[0]
            if slot.pending is not None:
                outcome = slot.future.result()
                self.slots.popleft()
                s.tell(slot.pending, outcome)
            else:
                self.slots.popleft()
                if not slot.recorded:
                    s._record_verdict(slot.verdict)
