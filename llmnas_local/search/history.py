"""A read-only view of a run's history: what proposers see. They never touch the store."""
from __future__ import annotations

import collections
import gc
from typing import Iterable, Sequence

from llmnas_local.dsl.base import BaseSpace, Constraints
from llmnas_local.records import VAL_ACC, TrialRecord, TrialStatus, is_transient


class HistoryView:
    """The finished trials of a run, in order, with the look-ups proposers need. Cheap to query at any size."""

    def __init__(self, space: BaseSpace, constraints: Constraints, trials: Iterable[TrialRecord] = (),
                 task: str = "", seed: int = 0):
        self.space = space
        self.constraints = constraints
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
            if self._best is None or trial.metrics[VAL_ACC] > self._best.metrics[VAL_ACC]:
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
        """The k best evaluated trials by validation accuracy (ties: earliest first)."""
        if k == 1:
            return [self._best] if self._best else []
        order = sorted(range(len(self._complete)), key=lambda i: (-self._complete[i].metrics[VAL_ACC], i))
        return [self._complete[i] for i in order[:k]]

    def recent(self, k: int) -> list[TrialRecord]:
        """The last k finished trials, oldest first."""
        return self._trials[-k:] if k > 0 else []
