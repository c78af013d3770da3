"""``verify_store``: read every record of an LMDB store and report what cannot be read or does not add up.

Each named database is walked with its own cursor; an LMDB error (a garbled page) ends that walk and is reported with
the last key read. Checked: every value decodes; trial keys match their records and a run's sequence numbers are
dense; every trial's run exists; the arch index and the trials agree; every outcome that a trial filed is there (a
failed or timed-out one may have been forgotten on purpose: counted, not a problem) and equals the trial's;
texts match their hashes.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import struct
from pathlib import Path

import lmdb

from llmnas_local.records import Outcome, RunRecord, TrialRecord, TrialStatus
from llmnas_local.store.base import stores_outcome, text_hash
from llmnas_local.store.lmdb_store import KIND, LmdbStore, outcome_key, run_prefix

_U64 = struct.Struct(">Q")


@dataclasses.dataclass
class VerifyReport:
    path: str
    counts: dict[str, int] = dataclasses.field(default_factory=dict)     # records read, per database
    problems: list[str] = dataclasses.field(default_factory=list)
    not_cached: int = 0        # failed/timed-out outcomes a trial filed that are not stored (forgotten?)

    @property
    def ok(self) -> bool:
        return not self.problems


def _walk(txn: lmdb.Transaction, db, name: str, report: VerifyReport):
    """(key, value) of a database; an LMDB error ends the walk as a problem."""
    last = None
    try:
        for key, value in txn.cursor(db=db).iternext():
            last = bytes(key)
            yield last, bytes(value)
    except lmdb.Error as e:
        where = f"after key {last!r:.80}" if last is not None else "at its first record"
        report.problems.append(f"{name}: unreadable {where}: {' '.join(str(e).split())}")


def verify_store(path: str | Path) -> VerifyReport:
    """Check the store at ``path`` (opened read-only). Raises StoreError only if it cannot be opened at all."""
    report = VerifyReport(str(path))
    problems = report.problems
    with LmdbStore(path, readonly=True) as store:
        env = store.env
        meta, runs_db, trials_db, arch_db, outcomes_db, texts_db = store._dbs
        with env.begin() as txn:
            if txn.get(b"kind", db=meta) != KIND:
                problems.append("meta: kind is missing or wrong")
            raw_no = txn.get(b"trial_no", db=meta)
            trial_no = _U64.unpack(raw_no)[0] if raw_no is not None and len(raw_no) == 8 else None
            if trial_no is None:
                problems.append("meta: trial_no is missing or not 8 bytes")

            runs = set()
            for key, value in _walk(txn, runs_db, "runs", report):
                try:
                    run = RunRecord.from_json(json.loads(value))
                    if run.run_id.encode() != key:
                        problems.append(f"runs: record under {key!r:.80} is of run {run.run_id!r}")
                    runs.add(run.run_id)
                except (ValueError, TypeError, KeyError) as e:
                    problems.append(f"runs: record {key!r:.80} does not decode ({type(e).__name__})")
            report.counts["runs"] = len(runs)

            n_trials, with_arch = 0, 0
            last_seq: dict[str, int] = {}
            filed: dict[bytes, list[TrialRecord]] = collections.defaultdict(list)   # outcome key -> filing trials
            arch_of: dict[bytes, str] = {}                                          # trial key -> arch hash
            for key, value in _walk(txn, trials_db, "trials", report):
                n_trials += 1
                try:
                    t = TrialRecord.loads(value)
                except (ValueError, TypeError, KeyError) as e:
                    problems.append(f"trials: record {key!r:.80} does not decode ({type(e).__name__})")
                    continue
                if key != run_prefix(t.run_id) + _U64.pack(t.seq):
                    problems.append(f"trials: record under {key!r:.80} is trial {t.seq} of run {t.run_id!r}")
                if t.run_id not in runs:
                    problems.append(f"trials: trial {t.seq} of run {t.run_id!r}: the run is missing")
                expected = last_seq.get(t.run_id, -1) + 1
                if t.seq != expected:
                    problems.append(f"trials: run {t.run_id!r} jumps from trial {expected - 1} to {t.seq}")
                last_seq[t.run_id] = t.seq
                if t.arch_hash is not None:
                    with_arch += 1
                    arch_of[key] = t.arch_hash
                if stores_outcome(t) and not t.from_store:
                    filed[outcome_key(t.arch_hash, t.recipe_hash)].append(t)
            report.counts["trials"] = n_trials
            if trial_no is not None and trial_no != with_arch:
                problems.append(f"meta: trial_no is {trial_no}, but {with_arch} trials have an architecture")

            n_index = 0
            for key, value in _walk(txn, arch_db, "arch_index", report):
                n_index += 1
                arch = key[:-9].decode(errors="replace")
                if arch_of.get(value) != arch:
                    problems.append(f"arch_index: {arch[:12]} names trial key {value!r:.80}, which is not of it")
            report.counts["arch_index"] = n_index
            if n_index != with_arch:
                problems.append(f"arch_index: {n_index} entries for {with_arch} trials with an architecture")

            n_outcomes = 0
            for key, value in _walk(txn, outcomes_db, "outcomes", report):
                n_outcomes += 1
                try:
                    outcome = Outcome.from_json(json.loads(value))
                except (ValueError, TypeError, KeyError) as e:
                    problems.append(f"outcomes: record {key!r:.80} does not decode ({type(e).__name__})")
                    filed.pop(key, None)
                    continue
                trials = filed.pop(key, None)
                if trials is None:
                    continue          # answered from another store's copy, or an older format: nothing to compare
                first_final = next((t for t in trials if not outcome_of(t).transient), None)
                want = first_final or trials[-1]
                if (outcome.status, outcome.metrics) != (want.status, want.metrics):
                    problems.append(f"outcomes: {key[:12]!r}... is {outcome.status.name.lower()}, but trial "
                                    f"{want.seq} of run {want.run_id!r} filed {want.status.name.lower()}")
            report.counts["outcomes"] = n_outcomes
            for key, trials in filed.items():
                if all(t.status in (TrialStatus.FAILED, TrialStatus.TIMEOUT) for t in trials):
                    report.not_cached += 1
                else:
                    t = trials[0]
                    problems.append(f"outcomes: the outcome of trial {t.seq} of run {t.run_id!r} "
                                    f"({t.status.name.lower()}) is missing")

            n_texts = 0
            for key, value in _walk(txn, texts_db, "texts", report):
                n_texts += 1
                try:
                    if text_hash(value.decode()) != key.decode():
                        problems.append(f"texts: {key[:12]!r}... does not match its hash")
                except UnicodeDecodeError:
                    problems.append(f"texts: {key[:12]!r}... is not UTF-8")
            report.counts["texts"] = n_texts
    return report


def outcome_of(t: TrialRecord) -> Outcome:
    return Outcome(t.status, t.metrics, t.error, t.timings)
