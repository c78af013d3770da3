"""The search loop: ``ask()`` / ``tell()`` under ``run(budget)``.

One object wires the loop (Optuna's ``Study``): it owns the store, turns proposals into trials, answers what the store
already knows, and hands the rest to the evaluator. Proposers only read a :class:`HistoryView`.

- The budget counts *distinct evaluations* of this run: architectures this run has not proposed before, evaluated now
  or answered by an identical evaluation that another run stored. Invalid proposals and in-run duplicates are recorded
  but do not count.
- A transient outcome (a time-out, a worker killed or unable to start) is evaluated again when the evaluator says it is
  worth it (``BaseEvaluator.retryable``: a killed worker up to 3 attempts, a time-out under a longer time limit), before
  any new proposal: right after it, and when a run resumes. A retry is a new trial of the same architecture; it does
  not count again.
- Every finished trial is one durable store commit. A crash loses at most the evaluations in flight; running the same
  search again (same run id: same space, proposer settings, recipe and seed) continues where it stopped.
- ``ask()`` may be called several times before the matching ``tell()``s, which may come in any order: evaluations can
  run in parallel (``run(..., workers=N)`` uses a thread pool; the training evaluator runs each trial in its own
  process). Sequence numbers are given in the order trials finish.
- ``lookahead=L`` (one worker): ``run`` asks the proposer for the next proposals while an evaluation runs, exactly:
  see :mod:`llmnas_local.search.pipeline`. It is part of the run id when L > 0 (it changes what is proposed).
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import hashlib
import json
import random
import time
from typing import Any, Callable

from llmnas_local.dsl.base import BaseSpace, DslError, SemanticError
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.objective import ACCURACY, Objective
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import (BUILD_S, EVAL_S, PROPOSE_S, Outcome, RunRecord, TrialRecord,
                                  TrialStatus, is_transient)
from llmnas_local.search.history import HistoryView
from llmnas_local.search.trials import PendingTrial, SearchStalled, Verdict
from llmnas_local.store.base import BaseStore, StoreError


def make_run_id(space: str, proposer: str, proposer_settings: dict, recipe_hash: str, seed: int,
                lookahead: int = 0, objective: Objective = ACCURACY, caps: dict[str, float] | None = None) -> str:
    """A run id that is a function of everything that defines the run, so the same command resumes the same run.
    A lookahead, an objective and the caps (proposals are drawn within them) change what is proposed but not an
    evaluation: each is a factor when given (runs without one keep their ids)."""
    factors = [space, proposer, proposer_settings, recipe_hash, seed] + ([{"lookahead": lookahead}] if lookahead else [])
    factors += [] if objective.is_accuracy else [{"objective": str(objective)}]
    factors += [{"caps": caps}] if caps else []
    factors = json.dumps(factors, sort_keys=True, default=str)
    return f"{proposer}-s{seed}-{hashlib.sha256(factors.encode()).hexdigest()[:10]}"


class Search:
    """Wires a space, a proposer, an evaluator and a store into one resumable run."""

    def __init__(self, space: BaseSpace, proposer: BaseProposer, evaluator: BaseEvaluator, store: BaseStore,
                 *, seed: int = 0, run_id: str | None = None, max_stall: int = 200, max_proposer_errors: int = 3,
                 lookahead: int = 0, objective: Objective = ACCURACY):
        if lookahead < 0:
            raise ValueError(f"lookahead must be >= 0, not {lookahead}")
        self.space, self.proposer, self.evaluator, self.store = space, proposer, evaluator, store
        self.seed, self.lookahead = seed, lookahead
        self.max_stall, self.max_proposer_errors = max_stall, max_proposer_errors
        self._proposer_errors = 0
        self.recipe_hash = evaluator.recipe_hash()
        settings = proposer.settings()
        caps = {k: v for k in ("max_params_m", "max_flops_m")
                if (v := getattr(evaluator.constraints, k, None)) is not None}
        self.run_id = run_id or make_run_id(space.name, proposer.name, settings, self.recipe_hash, seed, lookahead,
                                            objective, caps)
        store.lock_run(self.run_id)           # a second writer of the run is refused now, not after its first training
        run = store.get_run(self.run_id)
        if run is None:
            run = RunRecord(run_id=self.run_id, space=space.name, proposer=proposer.name,
                            proposer_settings=settings, evaluator=evaluator.name, recipe=evaluator.recipe(),
                            recipe_hash=self.recipe_hash, seed=seed)
            store.put_run(run)
        elif (run.space, run.proposer, run.recipe_hash, run.seed) != (space.name, proposer.name, self.recipe_hash,
                                                                      seed):
            raise StoreError(f"run {self.run_id!r} in this store was started with other settings "
                             f"(space {run.space}, proposer {run.proposer}, seed {run.seed}); use another run id")
        self.run_record = run
        self.history = HistoryView(space, evaluator.constraints, store.trials(self.run_id),
                                   task=evaluator.describe_task(), seed=seed, objective=objective)
        self._queue: collections.deque[Proposal] = collections.deque()
        self._pending: dict[str, PendingTrial] = {}
        latest = {t.arch_hash: t for t in self.history.trials if t.status.evaluated}
        self._evaluated = set(latest)         # distinct architectures evaluated in this run: what the budget counts
        self._retries: collections.deque[TrialRecord] = collections.deque(
            sorted((t for t in latest.values() if self._retry_due(t)), key=lambda t: t.seq))
        self._stall = 0

    # -- counts -----------------------------------------------------------------------------------------------------
    @property
    def num_evaluated(self) -> int:
        """Distinct evaluations of this run so far (what the budget counts)."""
        return len(self._evaluated)

    @property
    def _n_evaluated(self) -> int:
        return len(self._evaluated)

    def counts(self) -> dict[str, int]:
        c = self.history.status_counts
        return {s.name.lower(): c[s] for s in TrialStatus if s is not TrialStatus.PENDING}

    def best(self) -> TrialRecord | None:
        best = self.history.best(1)
        return best[0] if best else None

    # -- ask / tell ---------------------------------------------------------------------------------------------------
    def ask(self, budget: int | None = None) -> PendingTrial | None:
        """The next trial to evaluate, or None once ``budget`` distinct evaluations are done or in flight.

        Proposals that need no evaluation (unparseable, rejected by a check, already known) are recorded here.
        Raises :class:`SearchStalled` after ``max_stall`` such proposals in a row. Retries of transient outcomes come
        first, whatever the budget.
        """
        while self._retries:
            pending = self._retry(self._retries.popleft())
            if pending is not None:
                self._pending[pending.arch_hash] = pending
                return pending
        while budget is None or self._counted() < budget:
            evaluated_before = self._counted()
            item = self._next_proposal()
            if isinstance(item, Proposal):
                item = self._triage(item)
            if isinstance(item, PendingTrial):
                self._stall = 0
                self._pending[item.arch_hash] = item
                return item
            self._emit(item)
            if self._counted() > evaluated_before:   # answered by another run's stored evaluation: progress
                self._stall = 0
                continue
            self._stall += 1
            if self._stall >= self.max_stall:
                raise SearchStalled(f"{self._stall} proposals in a row were invalid or already known; "
                                    f"stopping after {self.num_evaluated} evaluations")
        return None

    def tell(self, pending: PendingTrial, outcome: Outcome) -> TrialRecord:
        """Record the outcome of an asked trial (one durable commit)."""
        self._pending.pop(pending.arch_hash, None)
        metrics = {**pending.precheck_metrics, **outcome.metrics}
        timings = {PROPOSE_S: pending.proposal.propose_s, BUILD_S: pending.build_s, **outcome.timings}
        trial = self._record(pending.proposal, outcome.status, pending.canonical, pending.arch_hash,
                             metrics=metrics, error=outcome.error, timings=timings)
        if self._retry_due(trial):
            self._retries.append(trial)
        return trial

    def evaluate(self, pending: PendingTrial) -> Outcome:
        """Run the evaluator on a pending trial (thread-safe when the evaluator is)."""
        t0 = time.perf_counter()
        outcome = self.evaluator.evaluate(self.space, pending.spec)
        timings = {EVAL_S: time.perf_counter() - t0, **outcome.timings}
        return dataclasses.replace(outcome, timings=timings)

    # -- run ------------------------------------------------------------------------------------------------------------
    def run(self, budget: int, *, workers: int = 1,
            callback: Callable[["Search", TrialRecord], None] | None = None) -> TrialRecord | None:
        """Evaluate until the run has ``budget`` distinct evaluations; returns the best trial by validation accuracy.

        ``callback(search, trial)`` is called after every recorded trial (progress bars, logging).
        """
        self._callback = callback
        try:
            if self.lookahead and workers > 1:
                raise ValueError("a lookahead needs one worker (with more, the loop proposes while they train)")
            if self.lookahead:
                from llmnas_local.search.pipeline import LookaheadLoop
                LookaheadLoop(self).run(budget)
            elif workers <= 1:
                while (pending := self.ask(budget)) is not None:
                    self.tell(pending, self.evaluate(pending))
            else:
                self._run_parallel(budget, workers)
        finally:
            self._callback = None
        return self.best()

    def _run_parallel(self, budget: int, workers: int) -> None:
        with cf.ThreadPoolExecutor(max_workers=workers) as pool:
            futures: dict[cf.Future, PendingTrial] = {}
            try:
                while True:
                    while len(futures) < workers and (pending := self.ask(budget)) is not None:
                        futures[pool.submit(self.evaluate, pending)] = pending
                    if not futures:
                        return
                    done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
                    for fut in done:
                        self.tell(futures.pop(fut), fut.result())
            except BaseException:
                # Ctrl-C, SIGTERM or an error: the evaluations in flight are dropped (a resume redoes them). Stop them
                # now, or leaving the pool would wait for each to finish.
                for fut in futures:
                    fut.cancel()
                self.evaluator.abort()
                raise

    # -- internals ------------------------------------------------------------------------------------------------------
    _callback: Callable[["Search", TrialRecord], None] | None = None
    _window: Any = None       # the lookahead loop while it runs (pipeline.LookaheadLoop): the hooks below ask it

    def _counted(self) -> int:
        """What the budget counts: distinct evaluations done, in flight, and answered but not yet recorded."""
        held = self._window.answers() if self._window is not None else 0
        return self._n_evaluated + self._new_pending() + held

    def _emit(self, verdict: Verdict) -> None:
        """Record a proposal that needs no evaluation (a lookahead records it in its turn)."""
        if self._window is not None:
            self._window.hold(verdict)
        else:
            self._record_verdict(verdict)

    def _record_verdict(self, v: Verdict) -> TrialRecord:
        if v.deferred:
            return self._record_verdict(self._duplicate(v.proposal, v.canonical, v.arch_hash,
                                                        self.history.known(v.arch_hash)))
        return self._record(v.proposal, v.status, v.canonical, v.arch_hash, metrics=v.metrics, error=v.error,
                            timings=v.timings, from_store=v.from_store)

    @staticmethod
    def _duplicate(proposal: Proposal, canonical: str, arch_hash: str, known: TrialRecord) -> Verdict:
        return Verdict(proposal, TrialStatus.DUPLICATE, canonical, arch_hash, metrics=dict(known.metrics),
                       error=f"already evaluated in this run as trial {known.seq} ({known.status.name.lower()})")

    def _next_proposal(self) -> Proposal | Verdict:
        """The next queued proposal, calling the proposer when the queue is empty. A proposer that raises (an LLM
        server that died and could not be restarted...) gives an invalid trial and the search goes on, until
        ``max_proposer_errors`` calls in a row have failed."""
        if not self._queue:
            # Seeded by (the proposal's position, evaluations in flight): a resumed run draws what the original would
            # have drawn. A lookahead shows the proposer the history without the evaluations in flight.
            if self._window is not None:
                history, position, in_flight = self._window.view()
            else:
                history, position, in_flight = self.history, len(self.history), len(self._pending)
            rng = random.Random(f"{self.seed}:{position}:{in_flight}")
            t0 = time.perf_counter()
            try:
                proposals = self.proposer.propose(history, 1, rng)
            except Exception as e:
                self._proposer_errors += 1
                reason = f"proposer error: {type(e).__name__}: {_one_line(e)}"
                if self._proposer_errors >= self.max_proposer_errors:
                    raise SearchStalled(f"{self._proposer_errors} proposer calls in a row failed; last: {reason}") from e
                return Verdict(Proposal(""), TrialStatus.INVALID, error=reason)
            self._proposer_errors = 0
            elapsed = time.perf_counter() - t0
            if not proposals:
                raise SearchStalled(f"proposer {self.proposer.name!r} returned no proposal")
            share = elapsed / len(proposals)
            self._queue.extend(dataclasses.replace(p, propose_s=p.propose_s or share) for p in proposals)
        return self._queue.popleft()

    def _new_pending(self) -> int:
        """Evaluations in flight of architectures this run has not evaluated yet (retries do not count)."""
        return sum(1 for h in self._pending if h not in self._evaluated)

    def _attempts(self, arch_hash: str) -> int:
        """Evaluations of this architecture under this recipe, in any run, that had a transient outcome."""
        return sum(1 for t in self.store.trials_of_arch(arch_hash)
                   if t.recipe_hash == self.recipe_hash and t.status.evaluated and not t.from_store
                   and is_transient(t.status, t.error))

    def _retry_due(self, trial: TrialRecord) -> bool:
        if trial.arch_hash is None or not is_transient(trial.status, trial.error):
            return False
        outcome = Outcome(trial.status, trial.metrics, trial.error, trial.timings)
        return self.evaluator.retryable(outcome, self._attempts(trial.arch_hash))

    def _retry(self, trial: TrialRecord) -> PendingTrial | None:
        """A pending trial that evaluates ``trial``'s architecture again; None if it cannot be (now in flight, or
        rejected by the checks, which may have changed)."""
        if trial.arch_hash in self._pending or self.history.known(trial.arch_hash) is not trial:
            return None
        t0 = time.perf_counter()
        try:
            spec = self.space.parse(trial.canonical)
            metrics = self.evaluator.precheck(self.space, spec)
        except Exception:  # noqa: BLE001 - it stays as it was recorded
            return None
        return PendingTrial(Proposal(trial.raw, parent_hash=trial.parent_hash), spec, trial.canonical,
                            trial.arch_hash, metrics, time.perf_counter() - t0)

    def _triage(self, proposal: Proposal) -> PendingTrial | Verdict:
        """Parse, hash and check a proposal: the evaluation it needs, or the record it gets instead."""
        try:
            spec = self.space.parse(proposal.text)
        except DslError as e:
            return Verdict(proposal, TrialStatus.INVALID, error=f"parse error {e}")
        canonical = self.space.canonical(spec)
        arch_hash = self.space.hash_canonical(canonical)
        known = self.history.known(arch_hash)
        if known is not None and not self._retry_due(known):
            return self._duplicate(proposal, canonical, arch_hash, known)
        if self._window is not None and self._window.holds(arch_hash):
            return Verdict(proposal, TrialStatus.DUPLICATE, canonical, arch_hash, deferred=True)
        if arch_hash in self._pending:
            return Verdict(proposal, TrialStatus.DUPLICATE, canonical, arch_hash, error="already being evaluated")
        stored = self.store.get_outcome(arch_hash, self.recipe_hash) if known is None else None
        if stored is not None and not (stored.transient and
                                       self.evaluator.retryable(stored, self._attempts(arch_hash))):
            return Verdict(proposal, stored.status, canonical, arch_hash, metrics=dict(stored.metrics),
                           error=stored.error, timings=dict(stored.timings), from_store=True)
        t0 = time.perf_counter()
        try:
            metrics = self.evaluator.precheck(self.space, spec)
        except SemanticError as e:
            return Verdict(proposal, TrialStatus.INVALID, canonical, arch_hash, error=f"rejected: {e}")
        except Exception as e:  # a builder bug must not stop a days-long search: record it as the proposal's fault
            return Verdict(proposal, TrialStatus.INVALID, canonical, arch_hash,
                           error=f"build error: {type(e).__name__}: {_one_line(e)}")
        return PendingTrial(proposal, spec, canonical, arch_hash, metrics, time.perf_counter() - t0)

    def _record(self, proposal: Proposal, status: TrialStatus, canonical: str | None, arch_hash: str | None, *,
                metrics: dict | None = None, error: str = "", timings: dict | None = None,
                from_store: bool = False) -> TrialRecord:
        llm = proposal.llm
        if llm is not None and llm.prompt:  # prompts are long and shared by a call's candidates: stored once, by hash
            llm = dataclasses.replace(llm, prompt="", prompt_hash=self.store.put_text(llm.prompt))
        trial = TrialRecord(run_id=self.run_id, seq=len(self.history), proposer=self.proposer.name,
                            raw=proposal.text, status=status, canonical=canonical, arch_hash=arch_hash,
                            recipe_hash=self.recipe_hash, parent_hash=proposal.parent_hash,
                            metrics=metrics or {}, error=_one_line(error),
                            timings=timings or {PROPOSE_S: proposal.propose_s}, llm=llm,
                            from_store=from_store)
        self.store.record_trial(trial)
        self.history._append(trial)
        if status.evaluated:
            self._evaluated.add(arch_hash)
        if self._callback is not None:
            self._callback(self, trial)
        return trial


def _one_line(e: object, limit: int = 500) -> str:
    text = " ".join(str(e).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."

