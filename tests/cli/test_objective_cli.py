"""``llmnas search --objective``: a bad objective is one line naming the flag (exit 2); on NAS-Bench-201 (the real
table) the best a search returns under ``acc@params<=0.6M`` is within that budget, the objective is in the run id
and not in the recipe (the evaluations are shared)."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli


@pytest.mark.parametrize("objective, says", [("accuracy", "expected '-<weight>*params'"),
                                             ("acc@latency<=5ms", "budget 'latency<=5ms'")])
def test_a_bad_objective_is_one_line_naming_the_flag(tmp_path, objective, says):
    r = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(tmp_path / "none.csv"), "--objective",
                                 objective, "--store", str(tmp_path / "s"), "-q"])
    assert r.exit_code == 2 and r.output.startswith("Error: --objective: ") and says in r.output
    assert len(r.output.strip().splitlines()) == 1


def test_the_best_under_a_budget_is_within_it_and_the_objective_names_the_run(tmp_path, nb201_csv):
    store = str(tmp_path / "store")

    def search(*extra):
        r = CliRunner().invoke(cli, ["search", "--space", "nb201", "--table", str(nb201_csv), "--proposer",
                                     "evolution", "--budget", "60", "--store", store, "-q", *extra])
        assert r.exit_code == 0, r.output
        return r.output

    plain, budget = search(), search("--objective", "acc@params<=0.6M")
    assert "best (by validation accuracy among models with at most 0.6M params)" in budget
    run_ids = [line.split()[1].rstrip(":") for out in (plain, budget) for line in out.splitlines()
               if line.startswith("run ")]
    assert len(set(run_ids)) == 2
    r = CliRunner().invoke(cli, ["export", store])
    trials = [json.loads(line) for line in r.output.splitlines()]
    assert len({t["recipe_hash"] for t in trials}) == 1                 # one recipe: evaluations are shared
    best_hash = budget.split("(llmnas show")[0].split("hash ")[-1].strip()
    best = next(t for t in trials if t["arch_hash"] == best_hash and t["status"] == "complete")
    assert best["metrics"]["params_m"] <= 0.6
    within = [t for t in trials if t["run_id"] == run_ids[1] and t["status"] == "complete"]
    assert best["metrics"]["val_acc"] == max(t["metrics"]["val_acc"] for t in within
                                             if t["metrics"]["params_m"] <= 0.6)
    assert any(t["metrics"]["params_m"] > 0.6 for t in trials if t["run_id"] == run_ids[0]
               and t["status"] == "complete" and t["metrics"]["val_acc"] > best["metrics"]["val_acc"])
