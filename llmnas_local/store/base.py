"""The store contract. Every implementation passes ``tests/store/test_conformance.py``.

Contract
--------
- A store holds runs (:class:`RunRecord`), trials (:class:`TrialRecord`), outcomes (:class:`Outcome`, keyed by
  ``(arch_hash, recipe_hash)``) and texts stored once by their sha256 (prompts).
- ``record_trial`` is the only write on the hot path. In one durable transaction it writes the trial and, if the trial
  was evaluated or rejected (any status but DUPLICATE and PENDING) and has an ``arch_hash``, its outcome, unless an
  outcome already exists under that key (the first one wins: nothing is evaluated twice, nothing is overwritten) that
  is not transient (``Outcome.transient``: a time-out, a killed worker). A transient outcome is replaced by the next
  evaluation's (a trial answered from the store, ``from_store``, replaces nothing).
- ``forget_outcomes(statuses)`` deletes stored outcomes (never trials), so that they are evaluated again.
- Final trainings (:class:`FinalRecord`, ``llmnas train``) are keyed by ``(arch_hash, recipe_hash)``: ``put_final``
  writes one durably and refuses a key that exists (they are immutable too); ``finals(arch_hash)`` lists those of one
  architecture, ``finals()`` every one, oldest first. A store written before they existed reads as holding none.
- Finished records are immutable. Writing a trial whose ``(run_id, seq)`` exists raises :class:`StoreError`.
- Sequence numbers of a run are dense: a run's trials are ``0 .. num_trials(run_id) - 1``, iterated in that order.
- One writer per run: ``lock_run(run_id)`` holds a run for the instance until ``close()`` and refuses a second writer
  of it (another process, another instance) with a one-line StoreError naming the holder. Readers in other processes
  may read while it writes and see every committed trial. An instance is used from one thread at a time.
- Opening something that is not a store, a damaged store, or a store written by a newer format, raises
  :class:`StoreError` with one line that says so; so does any read of a damaged record. A write that finds the disk
  full raises :class:`StoreFullError`; every trial committed before it is kept.
"""
from __future__ import annotations

import abc
import hashlib
from typing import Iterable, Iterator

from llmnas_local.records import FinalRecord, Outcome, RunRecord, TrialRecord, TrialStatus

FORMAT_VERSION = 1


class StoreError(RuntimeError):
    """A store that cannot be opened or a write that breaks the contract. One-line message."""


class StoreFullError(StoreError):
    """A write found the disk (or quota) full. What was committed before is safe; free space and run again."""


def stores_outcome(trial: TrialRecord) -> bool:
    """Whether ``record_trial`` also files this trial's outcome under its (arch, recipe) key."""
    return trial.arch_hash is not None and trial.status not in (TrialStatus.DUPLICATE, TrialStatus.PENDING)


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class BaseStore(abc.ABC):
    # -- runs -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_run(self, run: RunRecord) -> None:
        """Create a run. Raises StoreError if the run id exists."""

    @abc.abstractmethod
    def get_run(self, run_id: str) -> RunRecord | None: ...

    @abc.abstractmethod
    def list_runs(self) -> list[RunRecord]: ...

    # -- trials -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def record_trial(self, trial: TrialRecord) -> None:
        """Durably write a finished trial (and its outcome, see the contract) in one transaction."""

    @abc.abstractmethod
    def trials(self, run_id: str | None = None) -> Iterator[TrialRecord]:
        """Trials of one run in seq order, or of every run (runs in id order) when ``run_id`` is None."""

    @abc.abstractmethod
    def num_trials(self, run_id: str) -> int: ...

    @abc.abstractmethod
    def trials_of_arch(self, arch_hash: str) -> list[TrialRecord]:
        """Every trial, of any run, whose arch_hash is ``arch_hash``, oldest first."""

    # -- outcomes -----------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def get_outcome(self, arch_hash: str, recipe_hash: str) -> Outcome | None: ...

    @abc.abstractmethod
    def forget_outcomes(self, statuses: Iterable[TrialStatus]) -> int:
        """Delete the outcomes whose status is one of ``statuses``; trials stay. Returns how many were deleted."""

    # -- final trainings -------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_final(self, final: FinalRecord) -> None:
        """Durably write a final training. Raises StoreError if one exists under its (arch_hash, recipe_hash)."""

    @abc.abstractmethod
    def finals(self, arch_hash: str | None = None) -> list[FinalRecord]:
        """The final trainings of ``arch_hash`` (every one when None), oldest first."""

    # -- writers ----------------------------------------------------------------------------------------------------
    def lock_run(self, run_id: str) -> None:
        """Hold ``run_id`` for writing until ``close()``; StoreError if another writer holds it. Default: nothing to
        hold (a store that only one object can see)."""

    # -- texts (prompts), stored once -----------------------------------------------------------------------------------
    @abc.abstractmethod
    def put_text(self, text: str) -> str:
        """Store ``text`` once; return its sha256 hex."""

    @abc.abstractmethod
    def get_text(self, digest: str) -> str | None: ...

    def close(self) -> None:
        """Release the store. Idempotent."""

    def __enter__(self) -> "BaseStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
