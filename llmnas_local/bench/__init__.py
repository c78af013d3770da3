"""``llmnas bench``: proposers x seeds on one space and evaluator, on equal budgets of distinct evaluations, reported
as a paper would (mean ± std over seeds at each budget, paired comparisons with bootstrap CIs, curves, provenance).

    config = load_grid("benchmarks/grids/nb201-smoke.toml")
    result = run_bench(config, "benchmarks/results")
    print(result.paths["table"].read_text())

Modules: :mod:`.config` (the grid), :mod:`.space` (space and evaluator, the "distinct query" rule), :mod:`.runner`
(resumable runs in one LMDB store), :mod:`.stats`, :mod:`.plots`, :mod:`.report`, :mod:`.provenance`.
"""
from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from llmnas_local.bench.config import BenchConfig, EntryConfig, GridError, SpaceConfig, load_grid

DEFAULT_RESULTS_DIR = "benchmarks/results"


@dataclasses.dataclass
class BenchResult:
    out_dir: Path
    paths: dict[str, Path]
    executed: list[str]            # run ids this call ran (new or resumed)
    run_s: float
    report_s: float


def run_bench(config: BenchConfig, results_dir: str | Path = DEFAULT_RESULTS_DIR, *, backend_factory=None,
              progress=None, provenance: bool = True) -> BenchResult:
    """Run what is missing of ``config`` into ``<results_dir>/<name>/`` and write the report there."""
    from llmnas_local.bench.report import write_report
    from llmnas_local.bench.runner import STORE_DIR, BenchRunner
    from llmnas_local.bench.space import describe_protocol
    from llmnas_local.store import LmdbStore

    out = Path(results_dir) / config.name
    t0 = time.perf_counter()
    runner = BenchRunner(config, out, backend_factory=backend_factory, progress=progress)
    protocol = describe_protocol(config.space, runner.evaluator)
    runs = runner.run()
    run_s = time.perf_counter() - t0
    t1 = time.perf_counter()
    with LmdbStore(out / STORE_DIR, readonly=True) as store:
        settings = runner.run_settings(store)
    timings: dict[str, Any] = {"this_call_run_s": round(run_s, 3), "this_call_executed_runs": len(runner.executed)}
    paths = write_report(config, runs, out, protocol, run_settings=settings, timings=timings,
                         models=runner.model_paths(), provenance=provenance)
    return BenchResult(out, paths, list(runner.executed), run_s, time.perf_counter() - t1)


__all__ = ["BenchConfig", "BenchResult", "EntryConfig", "GridError", "SpaceConfig", "load_grid", "run_bench"]
