"""An in-memory store for unit tests and notebooks: the :class:`BaseStore` contract over dicts, nothing on disk.

Records are kept as the same JSON the LMDB store writes and decoded on every read, so a record read back is a fresh
object (mutating it changes nothing stored) and equal to what the LMDB store would return.
"""
from __future__ import annotations

import json
from typing import Iterable, Iterator

from llmnas_local.records import FinalRecord, Outcome, RunRecord, TrialRecord, TrialStatus
from llmnas_local.store.base import BaseStore, StoreError, stores_outcome, text_hash


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class MemoryStore(BaseStore):
    """A store that lives as long as the object. Same contract and error messages as :class:`LmdbStore`."""

    def __init__(self) -> None:
        self._runs: dict[str, bytes] = {}
        self._trials: dict[str, list[bytes]] = {}                    # run_id -> trials in seq order
        self._arch: dict[str, list[tuple[str, int]]] = {}            # arch_hash -> (run_id, seq), oldest first
        self._outcomes: dict[tuple[str, str], bytes] = {}
        self._texts: dict[str, str] = {}
        self._finals: dict[tuple[str, str], bytes] = {}
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("memory store is closed")

    # -- runs -----------------------------------------------------------------------------------------------------------
    def put_run(self, run: RunRecord) -> None:
        self._check_open()
        if run.run_id in self._runs:
            raise StoreError(f"run {run.run_id!r} already exists in the memory store")
        self._runs[run.run_id] = _dumps(run.to_json())
        self._trials.setdefault(run.run_id, [])

    def get_run(self, run_id: str) -> RunRecord | None:
        self._check_open()
        raw = self._runs.get(run_id)
        return None if raw is None else RunRecord.from_json(json.loads(raw))

    def list_runs(self) -> list[RunRecord]:
        self._check_open()
        return [RunRecord.from_json(json.loads(self._runs[k])) for k in sorted(self._runs)]

    # -- trials ---------------------------------------------------------------------------------------------------------
    def record_trial(self, trial: TrialRecord) -> None:
        self._check_open()
        if trial.run_id not in self._runs:
            raise StoreError(f"trial of unknown run {trial.run_id!r}: put_run first")
        run = self._trials[trial.run_id]
        if not isinstance(trial.seq, int) or trial.seq < 0:
            raise StoreError(f"trial seq must be a non-negative int, got {trial.seq!r}")
        if trial.seq < len(run):
            raise StoreError(f"trial {trial.seq} of run {trial.run_id!r} exists; finished trials are immutable")
        if trial.seq != len(run):
            raise StoreError(f"trial seq {trial.seq} of run {trial.run_id!r} breaks density: the next seq is {len(run)}")
        value = trial.dumps()       # serialise first: a record that cannot be written changes nothing
        okey = (trial.arch_hash, trial.recipe_hash) if stores_outcome(trial) else None
        run.append(value)
        if trial.arch_hash is not None:
            self._arch.setdefault(trial.arch_hash, []).append((trial.run_id, trial.seq))
        if okey is not None and (okey not in self._outcomes or (
                not trial.from_store and Outcome.from_json(json.loads(self._outcomes[okey])).transient)):
            self._outcomes[okey] = _dumps(Outcome(trial.status, trial.metrics, trial.error, trial.timings).to_json())

    def trials(self, run_id: str | None = None) -> Iterator[TrialRecord]:
        self._check_open()
        run_ids = sorted(self._trials) if run_id is None else [run_id]
        for rid in run_ids:
            for raw in list(self._trials.get(rid, ())):
                yield TrialRecord.loads(raw)

    def num_trials(self, run_id: str) -> int:
        self._check_open()
        return len(self._trials.get(run_id, ()))

    def trials_of_arch(self, arch_hash: str) -> list[TrialRecord]:
        self._check_open()
        return [TrialRecord.loads(self._trials[rid][seq]) for rid, seq in self._arch.get(arch_hash, ())]

    # -- outcomes -------------------------------------------------------------------------------------------------------
    def get_outcome(self, arch_hash: str, recipe_hash: str) -> Outcome | None:
        self._check_open()
        raw = self._outcomes.get((arch_hash, recipe_hash))
        return None if raw is None else Outcome.from_json(json.loads(raw))

    def forget_outcomes(self, statuses: Iterable[TrialStatus]) -> int:
        self._check_open()
        wanted = {int(s) for s in statuses}
        doomed = [k for k, raw in self._outcomes.items() if json.loads(raw)["status"] in wanted]
        for k in doomed:
            del self._outcomes[k]
        return len(doomed)

    # -- final trainings -------------------------------------------------------------------------------------------------
    def put_final(self, final: FinalRecord) -> None:
        self._check_open()
        key = (final.arch_hash, final.recipe_hash)
        if key in self._finals:
            raise StoreError(f"a final training of {final.arch_hash[:12]} with recipe {final.recipe_hash[:12]} "
                             f"exists in the memory store; final trainings are immutable")
        self._finals[key] = _dumps(final.to_json())

    def finals(self, arch_hash: str | None = None) -> list[FinalRecord]:
        self._check_open()
        out = [FinalRecord.from_json(json.loads(raw)) for (a, _), raw in self._finals.items()
               if arch_hash is None or a == arch_hash]
        return sorted(out, key=lambda f: f.created_at)

    # -- texts ----------------------------------------------------------------------------------------------------------
    def put_text(self, text: str) -> str:
        self._check_open()
        digest = text_hash(text)
        self._texts.setdefault(digest, text)
        return digest

    def get_text(self, digest: str) -> str | None:
        self._check_open()
        return self._texts.get(digest)

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._runs)} runs, {sum(map(len, self._trials.values()))} trials)"
