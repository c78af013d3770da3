"""Runs a benchmark grid: every (entry, seed) is one resumable search, ``run_id = f"{entry}-s{seed}"``, in one LMDB
store per benchmark (``<results>/store``).

Resuming is by construction: a run that already has ``max_budget`` distinct evaluations is not touched (its proposer
is not even created, so no model is loaded for it); a run cut short continues where it stopped (the search loop is
exact on resume); a grid extended with more seeds or another entry runs only what is missing. A grid whose entry
settings or evaluator changed under the same names is refused instead of being mixed with the old runs.

Wall time per run is not in the store: each session of a run adds its wall seconds to ``<results>/runs.json``.
Runs share the store's outcomes: an architecture that another run of the benchmark already evaluated under the same
recipe is answered from the store (``from_store``), so it costs this run no evaluation time. With table look-ups
(cell-level identity) that changes nothing but time; with trainings, runs share one evaluation per architecture.

LLM entries (an LLM proposer, or any entry whose settings name an ``llm`` backend kind or a ``model``:
``EntryConfig.uses_llm``): the entry's settings ``llm`` (default "transformers"), ``model`` (default the embedded
model), ``base_url`` (openai) and ``backend_settings`` make its :class:`~llmnas_local.llm.BackendSpec`; the backend is
created here once per spec and handed to the proposer as ``create_proposer(name, backend=<BaseBackend>, model=...,
**config)``, so the entries and seeds that use the same model share it. The rest of the settings configure the
proposer. Proposers that hold a shared backend are not
closed after their run (that would close the shared model); the backends are closed when the grid is done.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from llmnas_local.bench.config import BenchConfig, EntryConfig, GridError, canonical_json
from llmnas_local.bench.space import create_evaluator, create_space
from llmnas_local.records import PROPOSE_S, TEST_ACC, VAL_ACC, LLMCall, TrialRecord, TrialStatus

STORE_DIR = "store"
RUNS_FILE = "runs.json"

BackendFactory = Callable[..., Any]
Progress = Callable[[str, dict[str, Any]], None]


@dataclasses.dataclass
class RunData:
    """What the report needs from one run, cut at the grid's max budget (later evaluations are ignored)."""

    entry: str
    seed: int
    run_id: str
    n_evaluated: int
    n_trials: int
    counts: dict[str, int]
    curve_test: list[float]          # test accuracy of the best-by-validation trial after n = 1, 2, ... evaluations
    curve_val: list[float]
    evaluated_test: list[float]      # test accuracy of every completed evaluation, in order (the distribution)
    llm_tokens: int                  # prompt + completion tokens of generator and improver calls
    llm_s: float                     # seconds inside LLM calls
    propose_s: float                 # seconds inside the proposer (LLM or not)
    trial_s: float                   # propose + build + evaluation seconds of every trial
    wall_s: float | None             # wall seconds of the run's sessions (None: not recorded)
    best: dict[str, Any] | None
    stalled: str | None = None       # why the search stopped early (SearchStalled); None if it did not
    max_budget: int = 0
    from_store: int = 0              # evaluations answered by another run's identical evaluation in the store

    @property
    def incomplete(self) -> bool:
        """Neither reached the max budget nor stalled (interrupted): budgets past its end are missing."""
        return self.stalled is None and self.n_evaluated < self.max_budget

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        for k in ("curve_test", "curve_val", "evaluated_test"):
            d[k] = [None if not math.isfinite(v) else round(v, 4) for v in d[k]]
        return d


def summarize_run(entry: str, seed: int, run_id: str, trials: Iterable[TrialRecord], max_budget: int,
                  wall_s: float | None = None, stalled: str | None = None) -> RunData:
    """Reduce a run's trials (in seq order) to :class:`RunData`, stopping at the ``max_budget``-th evaluation.

    A run that stalled (the proposer offered only known or invalid architectures, ``max_stall`` times in a row) keeps
    its best: its curve is carried forward to ``max_budget`` (at budget b, the best among its first min(b, n)
    evaluations). A run that is merely unfinished (interrupted) is not padded: later budgets are missing (NaN).
    """
    counts = {s.name.lower(): 0 for s in TrialStatus if s is not TrialStatus.PENDING}
    curve_test: list[float] = []
    curve_val: list[float] = []
    evaluated: list[float] = []
    best: TrialRecord | None = None
    n_eval = n_trials = from_store = 0
    tokens, llm_s, propose_s, trial_s = 0, 0.0, 0.0, 0.0
    last_call: object = None
    for t in trials:
        if n_eval >= max_budget:
            break
        n_trials += 1
        counts[t.status.name.lower()] = counts.get(t.status.name.lower(), 0) + 1
        propose_s += float(t.timings.get(PROPOSE_S, 0.0))
        trial_s += sum(float(v) for v in t.timings.values())
        if t.llm is not None:
            call = _call_key(t.llm)
            new_call = call != last_call
            last_call = call
            tokens += t.llm.tokens_out
            if new_call:   # prompt tokens, improver tokens and call time are per call, copied into each candidate
                tokens += t.llm.tokens_in + t.llm.improver_tokens_in + t.llm.improver_tokens_out
                llm_s += t.llm.gen_s + t.llm.improver_s
        if not t.status.evaluated:
            continue
        n_eval += 1
        from_store += bool(t.from_store)
        if t.status is TrialStatus.COMPLETE and VAL_ACC in t.metrics:
            if TEST_ACC in t.metrics:
                evaluated.append(float(t.metrics[TEST_ACC]))
            if best is None or t.metrics[VAL_ACC] > best.metrics[VAL_ACC]:
                best = t
        curve_val.append(float(best.metrics[VAL_ACC]) if best is not None else math.nan)
        curve_test.append(float(best.metrics.get(TEST_ACC, math.nan)) if best is not None else math.nan)
    best_json = None if best is None else {
        "seq": best.seq, "canonical": best.canonical, "raw": best.raw, "arch_hash": best.arch_hash,
        "val_acc": best.metrics.get(VAL_ACC), "test_acc": best.metrics.get(TEST_ACC)}
    if stalled is not None and curve_test:
        curve_test += [curve_test[-1]] * (max_budget - len(curve_test))
        curve_val += [curve_val[-1]] * (max_budget - len(curve_val))
    return RunData(entry, seed, run_id, n_eval, n_trials, counts, curve_test, curve_val, evaluated, tokens, llm_s,
                   propose_s, trial_s, wall_s, best_json, stalled, max_budget, from_store)


def _call_key(llm: LLMCall) -> object:
    """The call a trial's proposal came from: its ``call_id``. Records stored before call ids: the call's shared
    figures (prompt, seconds, prompt tokens), which the candidates of one call hold alike."""
    return llm.call_id or (llm.prompt_hash, llm.gen_s, llm.tokens_in, llm.improver_s)


# -- backends ---------------------------------------------------------------------------------------------------------
def create_backend(kind: str, model: str | None, **settings: Any):
    """The default backend factory: :func:`llmnas_local.llm.create_backend`."""
    from llmnas_local.llm import create_backend as create

    return create(kind, model=model, **settings)


class BenchRunner:
    """Runs what is missing of a grid into ``out_dir`` and returns the data of every (entry, seed)."""

    def __init__(self, config: BenchConfig, out_dir: str | os.PathLike, *,
                 backend_factory: BackendFactory | None = None, progress: Progress | None = None):
        self.config = config
        self.out_dir = Path(out_dir)
        self.backend_factory = backend_factory or create_backend
        self.progress = progress or (lambda event, info: None)
        self._backends: dict[Any, Any] = {}          # BackendSpec -> its backend, shared by the entries naming it
        self._model_paths: set[str] = set()
        self.space = create_space(config.space)
        self.evaluator = create_evaluator(config.space, executor=config.executor or None)
        self.recipe_hash = self.evaluator.recipe_hash()
        self._warm_up()
        self.runs_path = self.out_dir / RUNS_FILE
        self._runs_meta = self._load_runs_meta()
        self.executed: list[str] = []     # run ids that this call ran (resumed or new)

    # -- public ---------------------------------------------------------------------------------------------------
    def run(self) -> list[RunData]:
        from llmnas_local.store import LmdbStore

        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / ".gitignore").write_text(f"{STORE_DIR}/\n")
        # Table look-ups are re-derivable in seconds: skip the fsync of each commit (one at close instead).
        durable = not self.space.tabular
        store = LmdbStore(self.out_dir / STORE_DIR, durable=durable)
        try:
            todo = self._plan(store)
            self.progress("plan", {"total": len(self.config.entries) * len(self.config.seeds), "todo": len(todo)})
            for i, (entry, seed, done) in enumerate(todo):
                self.progress("start", {"index": i, "todo": len(todo), "entry": entry.name, "seed": seed,
                                        "done": done})
                self._run_one(store, entry, seed)
            return self.collect(store)
        finally:
            store.close()
            self.close()

    def collect(self, store) -> list[RunData]:
        out = []
        for entry in self.config.entries:
            for seed in self.config.seeds:
                run_id = self.config.run_id(entry, seed)
                meta = self._runs_meta.get(run_id, {})
                out.append(summarize_run(entry.name, seed, run_id, store.trials(run_id), self.config.max_budget,
                                         wall_s=meta.get("wall_s"), stalled=meta.get("stalled")))
        return out

    def run_settings(self, store) -> dict[str, dict[str, Any]]:
        """The proposer settings each run of the grid was started with (as stored)."""
        out = {}
        for entry in self.config.entries:
            for seed in self.config.seeds:
                run = store.get_run(self.config.run_id(entry, seed))
                if run is not None:
                    out[run.run_id] = run.proposer_settings
        return out

    def close(self) -> None:
        self._model_paths.update(str(b.model) for b in self._backends.values())
        for backend in self._backends.values():
            backend.close()
        self._backends.clear()
        self.evaluator.close()

    def _warm_up(self) -> None:
        """One untimed parse + check, so that one-off imports and tables do not land in the first run's wall time."""
        import random

        try:
            self.evaluator.precheck(self.space, self.space.parse(self.space.sample(random.Random(0))))
            self.space.arch_hash(self.space.parse(self.space.sample(random.Random(1))))
        except Exception:   # a rejected sample is fine: the imports happened
            pass

    # -- planning ---------------------------------------------------------------------------------------------------
    def _plan(self, store) -> list[tuple[EntryConfig, int, int]]:
        """(entry, seed, evaluations already done) of every run short of the max budget; checks the others match."""
        todo = []
        for entry in self.config.entries:
            for seed in self.config.seeds:
                run_id = self.config.run_id(entry, seed)
                run = store.get_run(run_id)
                if run is None:
                    todo.append((entry, seed, 0))
                    continue
                if (run.space, run.recipe_hash, run.seed) != (self.space.name, self.recipe_hash, seed):
                    raise GridError(f"run {run_id} in {self.out_dir} was made on another space or evaluator "
                                    f"(space {run.space}, recipe {run.recipe_hash[:12]}; now {self.space.name}, "
                                    f"{self.recipe_hash[:12]}): give the benchmark another name")
                recorded = self._runs_meta.get(run_id, {}).get("entry")
                if recorded is not None and canonical_json(recorded) != canonical_json(entry.to_json()):
                    raise GridError(f"entry {entry.name!r} changed since run {run_id} was made "
                                    f"({canonical_json(recorded)} -> {canonical_json(entry.to_json())}): "
                                    f"give the changed entry another name")
                done = sum(1 for t in store.trials(run_id) if t.status.evaluated)
                stalled = self._runs_meta.get(run_id, {}).get("stalled")
                if done < self.config.max_budget and stalled is None:
                    todo.append((entry, seed, done))
        return todo

    # -- one run ------------------------------------------------------------------------------------------------------
    def _run_one(self, store, entry: EntryConfig, seed: int) -> None:
        from llmnas_local.search import Search, SearchStalled

        run_id = self.config.run_id(entry, seed)
        proposer, shared = self._create_proposer(entry)
        try:
            search = Search(self.space, proposer, self.evaluator, store, seed=seed, run_id=run_id,
                            max_stall=self.config.max_stall, lookahead=entry.lookahead)
            stored = store.get_run(run_id)
            if canonical_json(stored.proposer_settings) != canonical_json(proposer.settings()):
                raise GridError(f"run {run_id} was started with proposer settings "
                                f"{canonical_json(stored.proposer_settings)}, the grid now gives "
                                f"{canonical_json(proposer.settings())}: give the changed entry another name")
        except BaseException:
            if not shared:
                proposer.close()
            raise
        meta = self._runs_meta.setdefault(run_id, {"wall_s": 0.0, "sessions": 0, "stalled": None})
        meta.update(entry=entry.to_json(), seed=seed)
        self.executed.append(run_id)
        t0 = time.perf_counter()
        try:
            search.run(self.config.max_budget, workers=self.config.workers)
        except SearchStalled as e:
            meta["stalled"] = str(e)
            self.progress("stalled", {"run_id": run_id, "error": str(e)})
        finally:
            meta["wall_s"] = meta.get("wall_s", 0.0) + (time.perf_counter() - t0)
            meta["sessions"] = meta.get("sessions", 0) + 1
            self._save_runs_meta()
            if not shared:
                proposer.close()
        self.progress("done", {"run_id": run_id, "wall_s": time.perf_counter() - t0})

    def _create_proposer(self, entry: EntryConfig) -> tuple[Any, bool]:
        """The entry's proposer, and whether it holds a shared backend."""
        from llmnas_local.llm import BackendSpec
        from llmnas_local.proposers import create_proposer

        if not entry.uses_llm or "backend" in entry.settings:
            return create_proposer(entry.proposer, **entry.settings), False
        spec, settings = BackendSpec.from_settings(entry.settings)
        if spec not in self._backends:
            self.progress("backend", {"backend": spec.kind, "model": spec.model})
            self._backends[spec] = self.backend_factory(spec.kind, spec.model, **spec.options())
        return create_proposer(entry.proposer, backend=self._backends[spec], model=spec.model, **settings), True

    def model_paths(self) -> list[str]:
        """Where the weights of the backends this call loaded are (for provenance)."""
        return sorted(self._model_paths | {str(b.model) for b in self._backends.values()})

    # -- runs.json ------------------------------------------------------------------------------------------------
    def _load_runs_meta(self) -> dict[str, dict[str, Any]]:
        try:
            return json.loads(self.runs_path.read_text()).get("runs", {})
        except FileNotFoundError:
            return {}
        except (ValueError, AttributeError) as e:
            raise GridError(f"{self.runs_path}: unreadable ({e}); delete it to start its wall times afresh") from None

    def _save_runs_meta(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.runs_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"runs": self._runs_meta}, indent=1, sort_keys=True))
        os.replace(tmp, self.runs_path)
