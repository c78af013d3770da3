"""A bench grid entry with a lookahead (``lookahead = N`` in [[entries]]): its runs are the searches
``Search(lookahead=N)`` makes, under run ids that say so; bad values and more workers are refused."""
from __future__ import annotations

import pytest

from llmnas_local.bench import run_bench
from llmnas_local.bench.config import BenchConfig, EntryConfig, GridError, SpaceConfig, config_from_dict
from llmnas_local.bench.runner import STORE_DIR
from llmnas_local.bench.space import create_evaluator, create_space
from llmnas_local.proposers import create_proposer
from llmnas_local.search import Search
from llmnas_local.store import LmdbStore, MemoryStore

EVOLUTION = {"population": 10, "tournament": 3}


def test_a_grid_entry_runs_with_its_lookahead(nb201_csv, tmp_path):
    space_cfg = SpaceConfig(table=str(nb201_csv), preset="cifar10")
    cfg = BenchConfig(name="la", entries=(EntryConfig("evolution", "evolution", EVOLUTION),
                                          EntryConfig("evolution-la", "evolution", EVOLUTION, lookahead=4)),
                      seeds=(0, 1), space=space_cfg, budgets=(10, 30), max_budget=30, reference="evolution")
    result = run_bench(cfg, tmp_path, provenance=False)
    with LmdbStore(result.out_dir / STORE_DIR, readonly=True) as store:
        runs = sorted(r.run_id for r in store.list_runs())
        assert runs == ["evolution-la-s0-la4", "evolution-la-s1-la4", "evolution-s0", "evolution-s1"]
        for seed in (0, 1):
            trials = [(t.raw, t.status, t.metrics) for t in store.trials(f"evolution-la-s{seed}-la4")]
            direct = Search(create_space(space_cfg), create_proposer("evolution", **EVOLUTION), create_evaluator(space_cfg),
                            MemoryStore(), seed=seed, lookahead=4)
            direct.run(30)
            assert trials == [(t.raw, t.status, t.metrics) for t in direct.history.trials]
            plain = [t.raw for t in store.trials(f"evolution-s{seed}")]
            assert plain != [t[0] for t in trials]      # the lookahead changed what was proposed


def test_bad_lookaheads_are_refused(nb201_csv):
    base = {"seeds": 1, "space": {"name": "nb201", "table": str(nb201_csv)}}
    for value in (-1, "1", True):
        with pytest.raises(GridError, match=r"entries\[0\].lookahead"):
            config_from_dict({**base, "entries": [{"proposer": "random", "lookahead": value}]}, default_name="g")
    with pytest.raises(GridError, match="lookahead needs workers = 1"):
        config_from_dict({**base, "workers": 2, "entries": [{"proposer": "random", "lookahead": 1}]}, default_name="g")
    cfg = config_from_dict({**base, "entries": [{"proposer": "random", "lookahead": 2}, {"proposer": "evolution"}]},
                           default_name="g")
    assert [e.to_json().get("lookahead") for e in cfg.entries] == [2, None]
