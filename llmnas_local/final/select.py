"""Which architecture of a store a command means: a hash or a unique hash prefix, or the best by validation.

Every refusal is a one-line ``ValueError`` (the CLI prints it and exits 2): an unknown hash, an ambiguous prefix (the
matches are listed), an architecture no trial evaluated to completion, ``--best`` over runs of different data.
"""
from __future__ import annotations

from typing import Iterable

from llmnas_local.records import VAL_ACC, TrialRecord, TrialStatus
from llmnas_local.store.base import BaseStore

LISTED = 5          # matches of an ambiguous prefix named in the error


def match_hashes(store: BaseStore, prefix: str, run_id: str | None = None) -> list[str]:
    """The distinct architecture hashes of the store's trials (of ``run_id``, when given) that start with ``prefix``,
    sorted."""
    prefix = prefix.strip().lower()
    if not prefix:
        raise ValueError("give an architecture hash (or a prefix of one), or --best")
    return sorted({t.arch_hash for t in store.trials(run_id) if t.arch_hash and t.arch_hash.startswith(prefix)})


def resolve_hash(store: BaseStore, prefix: str, run_id: str | None = None, where: str = "the store") -> str:
    """The one architecture hash ``prefix`` names; ValueError if none or several do."""
    matches = match_hashes(store, prefix, run_id)
    scope = f"run {run_id} of {where}" if run_id else where
    if not matches:
        raise ValueError(f"no architecture with hash {prefix!r} in {scope}")
    if len(matches) > 1:
        listed = ", ".join(m[:16] for m in matches[:LISTED]) + (f" and {len(matches) - LISTED} more"
                                                                   if len(matches) > LISTED else "")
        raise ValueError(f"hash prefix {prefix!r} matches {len(matches)} architectures in {scope}: {listed}; "
                         f"give more of the hash")
    return matches[0]


def best_trial(trials: Iterable[TrialRecord]) -> TrialRecord | None:
    """The completed trial with the highest validation accuracy (the earliest among equals)."""
    best = None
    for t in trials:
        if t.status is TrialStatus.COMPLETE and VAL_ACC in t.metrics and t.arch_hash:
            if best is None or t.metrics[VAL_ACC] > best.metrics[VAL_ACC]:
                best = t
    return best


def select_trial(store: BaseStore, arch: str | None = None, *, best: bool = False, run_id: str | None = None,
                 where: str = "the store") -> TrialRecord:
    """The completed trial that scored the architecture a command means: ``arch`` (a hash or unique prefix; its best
    completed trial, of ``run_id`` when given) or, with ``best``, the best by validation (of ``run_id``, or of every
    run when they share one data set and proxy recipe)."""
    if (arch is None) == (not best):
        raise ValueError("give either an architecture hash or --best, not " + ("both" if best else "neither"))
    if run_id is not None and store.get_run(run_id) is None:
        known = ", ".join(r.run_id for r in store.list_runs()) or "none"
        raise ValueError(f"no run {run_id!r} in {where} (runs: {known})")
    if best:
        if run_id is None:
            recipes = {r.recipe_hash for r in store.list_runs()}
            if len(recipes) > 1:
                raise ValueError(f"the runs of {where} were scored by {len(recipes)} different recipes (data or "
                                 f"proxy): their accuracies do not compare; give --run")
        trial = best_trial(store.trials(run_id))
        if trial is None:
            raise ValueError(f"no completed trial in {'run ' + run_id + ' of ' if run_id else ''}{where}: nothing "
                             f"to choose from")
        return trial
    arch_hash = resolve_hash(store, arch, run_id, where)
    trials = [t for t in store.trials_of_arch(arch_hash) if run_id is None or t.run_id == run_id]
    trial = best_trial(trials)
    if trial is None:
        statuses = ", ".join(sorted({t.status.name.lower() for t in trials}))
        raise ValueError(f"architecture {arch_hash[:12]} has no completed evaluation in {where} (its trials: "
                         f"{statuses}): nothing to train")
    return trial
