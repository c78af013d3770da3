"""What a report shows, read from a store: per run the best-so-far curves and outcome counts, the distinct completed
architectures (with their final trainings), the LLM's calls. Plain data: the figures and the page draw from it."""
from __future__ import annotations

import dataclasses
from typing import Any

from llmnas_local.records import EVAL_S, PROPOSE_S, VAL_ACC, FinalRecord, RunRecord, TrialRecord, TrialStatus
from llmnas_local.store.base import BaseStore


@dataclasses.dataclass(frozen=True)
class Call:
    """One model call: its candidates' trials share it."""

    run_id: str
    first_seq: int
    model: str
    candidates: int
    tokens_in: int
    tokens_out: int
    seconds: float
    diagnoses: list[dict[str, str]]
    statuses: list[str]


@dataclasses.dataclass(frozen=True)
class RunSummary:
    run: RunRecord
    curve_val: list[float]          # best val_acc among the first k distinct evaluations, k = 1..n
    curve_test: list[float]         # the test_acc of that best-by-validation trial
    counts: dict[str, int]
    trials: int


@dataclasses.dataclass(frozen=True)
class ReportData:
    runs: list[RunSummary]
    archs: list[TrialRecord]                    # distinct completed architectures, each by its best trial, best first
    finals: dict[str, list[FinalRecord]]        # arch_hash -> its final trainings
    calls: list[Call]
    llm: dict[str, float]                       # totals over the LLM-proposed trials (see llm_totals); {} if none

    @property
    def counts(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for r in self.runs:
            for k, v in r.counts.items():
                total[k] = total.get(k, 0) + v
        return total


def collect(store: BaseStore, run_id: str | None = None) -> ReportData:
    """The report's data for one run or (``run_id`` None) every run of ``store``. ValueError for an unknown run."""
    from llmnas_local.bench.runner import _call_key, summarize_run   # the benchmark's curves and call grouping

    runs = store.list_runs() if run_id is None else [r for r in [store.get_run(run_id)] if r is not None]
    if run_id is not None and not runs:
        raise ValueError(f"no run {run_id!r} in the store (runs: "
                         f"{', '.join(r.run_id for r in store.list_runs()) or 'none'})")
    summaries, best, calls, llm_trials = [], {}, [], []
    for run in runs:
        trials = list(store.trials(run.run_id))
        s = summarize_run(run.run_id, run.seed, run.run_id, trials, max_budget=len(trials) + 1)
        summaries.append(RunSummary(run, s.curve_val, s.curve_test, s.counts, len(trials)))
        for t in trials:
            if t.status is TrialStatus.COMPLETE and VAL_ACC in t.metrics and t.arch_hash:
                if t.arch_hash not in best or t.metrics[VAL_ACC] > best[t.arch_hash].metrics[VAL_ACC]:
                    best[t.arch_hash] = t
        llm_trials += [t for t in trials if t.llm is not None]
        calls += _calls(run.run_id, [t for t in trials if t.llm is not None], _call_key)
    archs = sorted(best.values(), key=lambda t: (-t.metrics[VAL_ACC], t.run_id, t.seq))
    finals: dict[str, list[FinalRecord]] = {}
    for f in store.finals():
        if f.arch_hash in best:
            finals.setdefault(f.arch_hash, []).append(f)
    return ReportData(summaries, archs, finals, calls, llm_totals(llm_trials) if llm_trials else {})


def llm_totals(trials: list[TrialRecord]) -> dict[str, float]:
    """What the LLM's proposals came to: how many finished and parsed, were rejected on meaning or repeated, the tokens
    generated per proposal, how many were decoded under the prefix guard, and the seconds spent proposing against
    evaluating (the evaluations of these trials; answers from the store cost none)."""
    from llmnas_local.llm.base import FINISH_LENGTH, FINISH_STOP

    finished = [t for t in trials if t.llm.finish_reason == FINISH_STOP]
    return {
        "proposals": len(trials), "finished": len(finished),
        "cut_off": sum(t.llm.finish_reason == FINISH_LENGTH for t in trials),     # others: scored edits, old records
        "parsed": sum(t.canonical is not None for t in finished),
        "rejected": sum(t.status is TrialStatus.INVALID and t.error.startswith("rejected") for t in trials),
        "duplicates": sum(t.status is TrialStatus.DUPLICATE for t in trials),
        "tokens_per_proposal": sum(t.llm.tokens_out for t in trials) / len(trials),
        "prefix_guard": sum(bool(t.llm.prefix_guard) for t in trials),
        "propose_s": sum(t.timings.get(PROPOSE_S, 0.0) for t in trials),
        "eval_s": sum(t.timings.get(EVAL_S, 0.0) for t in trials if not t.from_store),
    }


def _calls(run_id: str, trials: list[TrialRecord], key) -> list[Call]:
    groups: dict[Any, list[TrialRecord]] = {}
    for t in trials:
        groups.setdefault(key(t.llm), []).append(t)
    out = []
    for ts in groups.values():
        llm = ts[0].llm
        diagnoses = [t.llm.diagnosis for t in ts if t.llm.diagnosis]
        out.append(Call(run_id, ts[0].seq, llm.model, len(ts),
                        llm.tokens_in + llm.improver_tokens_in + llm.improver_tokens_out,
                        sum(t.llm.tokens_out for t in ts), llm.gen_s + llm.improver_s,
                        [dict(d) for d in {tuple(sorted(d.items())): d for d in diagnoses}.values()],
                        [t.status.name.lower() for t in ts]))
    return sorted(out, key=lambda c: c.first_seq)

