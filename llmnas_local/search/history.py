"""A read-only view of a run's history: what proposers see. They never touch the store."""
from __future__ import annotations

import collections
import gc
from typing import Iterable, Sequence

from llmnas_local.dsl.base import BaseSpace, Constraints
from llmnas_local.objective import ACCURACY, Objective
from llmnas_local.records import VAL_ACC, TrialRecord, TrialStatus, is_transient


class HistoryView:
    """The finished trials of a run, in order, with the look-ups proposers need. Cheap to query at any size.

    ``objective`` (:mod:`llmnas_local.objective`) says what "best" means for the run: :meth:`best` and the proposers'
    selections (evolution's tournaments, llm-edit's parents, the llm proposer's best designs) rank by it."""

    def __init__(self, space: BaseSpace, constraints: Constraints, trials: Iterable[TrialRecord] = (),
                 task: str = "", seed: int = 0, objective: Objective = ACCURACY):
        self.space = space
        self.constraints = constraints
        self.objective = objective
        self.task = task            # one line for prompts: the data set and how candidates are scored
        self.seed = seed            # the run's seed: what stays fixed over a run (its prompt examples)
        self._trials: list[TrialRecord] = []
        self._known: dict[str, TrialRecord] = {}     # arch_hash -> the trial that evaluated it
        self._complete: list[TrialRecord] = []
        self._best: TrialRecord | None = None
        self.status_counts: collections.Counter[TrialStatus] = collections.Counter()
        # Records hold no reference cycles: with the cyclic collector paused, loading a long history skips its passes
        # over every record read so far (about a sixth of loading 100,000 trials: benchmarks/bench_loop.py (c)).
        enabled = gc.isenabled()
        gc.disable()
        try:
            for t in trials:
                self._append(t)
        finally:
            if enabled:
                gc.enable()

    def _append(self, trial: TrialRecord) -> None:
        """Called by the search loop only."""
        self._trials.append(trial)
        if trial.arch_hash and trial.status is not TrialStatus.DUPLICATE:
            known = self._known.get(trial.arch_hash)
            # A retry of a transient outcome (a time-out, a killed worker) supersedes it.
            if known is None or (trial.status.evaluated and is_transient(known.status, known.error)):
                self._known[trial.arch_hash] = trial
        self.status_counts[trial.status] += 1
        if trial.status is TrialStatus.COMPLETE and VAL_ACC in trial.metrics:
            self._complete.append(trial)
            key = self.objective.key
            if key(trial)[0] and (self._best is None or key(trial) > key(self._best)):
                self._best = trial

    @property
    def trials(self) -> Sequence[TrialRecord]:
        return tuple(self._trials)

    def __len__(self) -> int:
        return len(self._trials)

    def is_known(self, arch_hash: str) -> bool:
        """Whether this architecture was already evaluated or rejected in this run."""
        return arch_hash in self._known

    def known(self, arch_hash: str) -> TrialRecord | None:
        """The trial that evaluated (or rejected) this architecture in this run: the last, if it was retried."""
        return self._known.get(arch_hash)

    @property
    def completed(self) -> Sequence[TrialRecord]:
        """Evaluated trials with a validation accuracy, oldest first."""
        return tuple(self._complete)

    def best(self, k: int = 1) -> list[TrialRecord]:
        """The k best evaluated trials under the objective (by validation accuracy unless it says otherwise; ties:
        earliest first). Trials over the objective's budgets are never among them."""
        if k == 1:
            return [self._best] if self._best else []
        key = self.objective.key
        ranked = [(key(t), i) for i, t in enumerate(self._complete)]
        order = sorted((i for (feasible, _), i in ranked if feasible), key=lambda i: (-ranked[i][0][1], i))
        return [self._complete[i] for i in order[:k]]

    def recent(self, k: int) -> list[TrialRecord]:
        """The last k finished trials, oldest first."""
        return self._trials[-k:] if k > 0 else []
