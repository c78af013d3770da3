"""The LLM smoke grid of CI: the real embedded model proposes in a benchmark next to the baselines, and the report
files come out well formed (the full grids are run by hand; their results are committed in benchmarks/results)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from tests.bench.test_runner import assert_png

pytestmark = pytest.mark.slow
GRID = Path(__file__).resolve().parents[2] / "benchmarks" / "grids" / "nb201-llm-smoke.toml"


def test_llm_smoke_grid_reports(nb201_csv, smollm2_dir, tmp_path):
    result = CliRunner().invoke(cli, ["bench", "--grid", str(GRID), "--table", str(nb201_csv),
                                      "--results-dir", str(tmp_path), "-q"])
    assert result.exit_code == 0, result.output
    folder = tmp_path / "nb201-llm-smoke"
    results = json.loads((folder / "results.json").read_text())
    assert set(results["entries"]) == {"random", "evolution", "llm-edit", "llm-evo"}
    for name, e in results["entries"].items():
        assert e["runs"] == 2 and e["incomplete_runs"] == 0 and set(e["at_budget"]) <= {"10", "20"}
        assert e["at_budget"]["10"]["n"] == 2 and 0 < e["valid_rate"] <= 1   # a stalled LLM run keeps its best
        if name.startswith("llm"):
            assert e["llm_tokens_per_eval"] > 0 and e["llm_s_per_eval"] > 0
    llm_trials = [r for r in results["runs"] if r["entry"] == "llm-evo"]
    assert len(llm_trials) == 2 and all(len(r["curve_test"]) >= 10 for r in llm_trials)
    table = (folder / "table.md").read_text()
    assert all(f"| {n} | 2" in table for n in ("random", "evolution", "llm-edit", "llm-evo"))   # "2 (1 stalled)" too
    assert "## Paired comparisons against `evolution`" in table
    for png in ("curves.png", "distribution.png"):
        assert_png(folder / png)
    prov = json.loads((folder / "provenance.json").read_text())
    [model] = prov["models"]
    assert "smollm2" in model["name"] and model["files"] and all(len(f["sha256"]) == 64 for f in model["files"])
