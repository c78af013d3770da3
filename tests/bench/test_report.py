"""The report without a search: cost columns from a small fake grid, the Holm family of a table, the curve plot's
band label and first queries, and a report rebuilt from its results.json alone."""
from __future__ import annotations

import json

import numpy as np
import pytest

from llmnas_local.bench import plots
from llmnas_local.bench.config import BenchConfig, EntryConfig, SpaceConfig
from llmnas_local.bench.plots import band_label, plot_curves
from llmnas_local.bench.report import comparisons, entry_results, rebuild_report, render_table, write_report
from llmnas_local.bench.runner import RunData

PROTOCOL = {"select_by": "val_acc", "report": "test_acc", "recipe": {"preset": "cifar10"}}


def fake_run(entry: str, seed: int, *, trials: int, llm_s: float = 0.0, tokens: int = 0, shift: float = 0.0,
             budget: int = 10) -> RunData:
    curve = [90.0 + shift + 0.1 * seed + 0.2 * i for i in range(budget)]
    counts = {"complete": budget, "invalid": 2, "failed": 0, "timeout": 0, "duplicate": trials - budget - 2}
    return RunData(entry, seed, f"{entry}-s{seed}", budget, trials, counts, curve, list(curve), list(curve), tokens,
                   llm_s, 0.01, 1.0, 1.5, None, max_budget=budget)


@pytest.fixture
def grid():
    config = BenchConfig("fake", (EntryConfig("random", "random"), EntryConfig("evolution", "evolution"),
                                  EntryConfig("llm-x", "llm", {"candidates": 4})),
                         (0, 1, 2), SpaceConfig(table="unused.csv"), budgets=(5, 10), max_budget=10,
                         reference="evolution")
    runs = [fake_run("random", s, trials=12) for s in range(3)]
    runs += [fake_run("evolution", s, trials=10 + s + 2, shift=0.5) for s in range(3)]
    runs += [fake_run("llm-x", s, trials=20, llm_s=3.0 + s, tokens=500, shift=-0.3 - 0.1 * s) for s in range(3)]
    return config, runs


def test_cost_columns_from_a_small_fake_grid(grid):
    config, runs = grid
    e = entry_results(config, runs)
    assert e["random"]["proposals_per_100_evals"] == pytest.approx(120.0) and e["random"]["llm_s_per_100_evals"] is None
    assert e["evolution"]["proposals_per_100_evals"] == pytest.approx(100 * (12 + 13 + 14) / 30)
    assert e["llm-x"]["uses_llm"] and e["llm-x"]["proposals_per_100_evals"] == pytest.approx(200.0)
    assert e["llm-x"]["llm_s_per_100_evals"] == pytest.approx(100 * (3 + 4 + 5) / 30)
    table = render_table(config, PROTOCOL, e, comparisons(config, runs))
    header = next(line for line in table.splitlines() if line.startswith("| proposer | seeds"))
    cols = [c.strip() for c in header.strip("|").split("|")]
    row = {line.split("|")[1].strip(): [c.strip() for c in line.strip("|").split("|")]
           for line in table.splitlines() if line.startswith("| ") and line.split("|")[2].strip() == "3"}
    p, s = cols.index("proposals / 100 evals"), cols.index("model s / 100 evals")
    assert (row["random"][p], row["random"][s]) == ("120", "-")
    assert (row["evolution"][p], row["evolution"][s]) == ("130", "-")
    assert (row["llm-x"][p], row["llm-x"][s]) == ("200", "40.0")


def test_a_table_is_one_holm_family(grid):
    config, runs = grid
    comps = comparisons(config, runs)
    assert len(comps) == 4 and {c["family"] for c in comps} == {4}     # 2 entries x 2 budgets against evolution
    for c in comps:
        assert c["n"] == 3 and c["p_holm"] >= c["p_value"] and c["ci_low"] <= c["mean_diff"] <= c["ci_high"]
    table = render_table(config, PROTOCOL, entry_results(config, runs), comps)
    assert "## Paired comparisons against `evolution` (a family of 4 comparisons, Holm)" in table
    assert "| 95% t-interval | p | Holm p | verdict |" in table


def test_band_label_says_the_level_and_n():
    assert band_label("ci95", [20, 20, 20]) == "band: 95% t-interval of the mean (t quantile, n-1 df), n=20"
    assert band_label("ci95", [5, 20]).endswith("n=5-20") and band_label("std", [5]) == "band: ±1 std over seeds, n=5"


def test_curves_start_at_the_first_query_unclipped(tmp_path, monkeypatch):
    figures = []
    real = plots._pyplot

    class Spy:
        def __init__(self):
            self.plt = real()

        def __getattr__(self, name):
            return getattr(self.plt, name)

        def close(self, fig):
            figures.append(fig)
            self.plt.close(fig)

    monkeypatch.setattr(plots, "_pyplot", Spy)
    rng = np.random.default_rng(0)
    low_start = [np.maximum.accumulate(np.r_[60.0 + 5 * rng.random(), 90 + rng.random(99)]) for _ in range(4)]
    plot_curves(tmp_path / "c.png", {"a": low_start}, 100, kind="ci95", budgets=(10, 30, 100))
    (fig,) = figures
    full, zoom = fig.axes[:2]
    line = full.get_lines()[0]
    assert line.get_xdata()[0] == 1
    first = line.get_ydata()[0]
    assert full.get_ylim()[0] <= first <= full.get_ylim()[1] and full.get_xlim()[0] <= 1
    assert zoom.get_xlim() == (10, 100) and zoom.get_ylim()[0] > 80      # the zoom is a zoom
    texts = [t.get_text() for t in full.texts]
    assert "band: 95% t-interval of the mean (t quantile, n-1 df), n=4" in texts


def test_report_rebuilt_from_results_json_alone(grid, tmp_path):
    config, runs = grid
    write_report(config, runs, tmp_path, PROTOCOL, provenance=False)
    table = (tmp_path / "table.md").read_text()
    results = json.loads((tmp_path / "results.json").read_text())
    (tmp_path / "provenance.json").write_text(json.dumps({"git": {"commit": "abc"}, "table_md_sha256": "old"}))
    (tmp_path / "table.md").write_text("stale")
    paths = rebuild_report(tmp_path)
    assert paths["table"].read_text() == table
    assert json.loads((tmp_path / "results.json").read_text()) == results
    prov = json.loads((tmp_path / "provenance.json").read_text())
    assert prov["git"] == {"commit": "abc"} and prov["table_md_sha256"] != "old" and "report_rebuilt" in prov
