"""The project's baselines reproduce the published NAS-Bench-201 columns (shared/context/paper.md, 300 seeds) within
noise: random search and regularized evolution (population 10, tournament 3, one-edge mutation) at 100 distinct
cells, selected by validation accuracy, reported by test accuracy, over 100 seeds.

Within noise: |mean - published| < 3 x published std / sqrt(100) + 0.05.
"""
from __future__ import annotations

import math

import pytest

from llmnas_local.bench.config import BenchConfig, EntryConfig, SpaceConfig
from llmnas_local.bench.runner import BenchRunner
from llmnas_local.bench.stats import paired_comparison, summarize

SEEDS = 100
PUBLISHED_AT_100 = {   # preset -> entry -> (mean, std) at 100 queries
    "cifar10": {"random": (93.80, 0.26), "evolution": (94.05, 0.29)},
    "cifar100": {"random": (71.52, 0.92), "evolution": (72.43, 0.92)},
}


@pytest.mark.parametrize("preset", list(PUBLISHED_AT_100))
def test_baselines_match_the_published_columns(nb201_csv, tmp_path, preset):
    cfg = BenchConfig("baselines", (EntryConfig("random", "random"),
                                    EntryConfig("evolution", "evolution", {"population": 10, "tournament": 3})),
                      tuple(range(SEEDS)), SpaceConfig(table=str(nb201_csv), preset=preset, distinct="cell"),
                      budgets=(100,), max_budget=100)
    runs = BenchRunner(cfg, tmp_path).run()
    at100 = {e: {r.seed: r.curve_test[99] for r in runs if r.entry == e} for e in ("random", "evolution")}
    for entry, (mean, std) in PUBLISHED_AT_100[preset].items():
        s = summarize(list(at100[entry].values()))
        assert s.n == SEEDS
        tol = 3 * std / math.sqrt(SEEDS) + 0.05
        assert abs(s.mean - mean) < tol, f"{preset} {entry}: {s.mean:.3f} ± {s.std:.3f} vs published {mean} ± {std}"
        assert 0.5 * std < s.std < 1.5 * std
    # and the literature's ordering: evolution beats random at 100 queries, seed by seed
    c = paired_comparison("random", "evolution", 100, at100["random"], at100["evolution"])
    assert c.verdict == "worse", c
