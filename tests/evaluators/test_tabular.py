"""The NAS-Bench-201 table evaluator: presets, exact values, caps, errors."""
from __future__ import annotations

import csv
import time

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.base import Constraints, SemanticError
from llmnas_local.evaluators.tabular import PRESETS, TabularEvaluator
from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, TrialStatus

SPACE = get_space("nb201")


@pytest.fixture(scope="module")
def rows(nb201_csv):
    with open(nb201_csv) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def c10(nb201_csv):
    return TabularEvaluator(nb201_csv)


def score(ev, arch: str):
    return ev.evaluate(SPACE, SPACE.parse(arch))


def test_known_best_cells(c10, nb201_csv, rows):
    out = score(c10, rows[6111]["arch_str"])
    assert out.status is TrialStatus.COMPLETE
    assert out.metrics[VAL_ACC] == pytest.approx(91.607, abs=1e-3) and out.metrics[TEST_ACC] == 94.3733
    c100 = TabularEvaluator(nb201_csv, "cifar100")
    out = score(c100, rows[9930]["arch_str"])
    assert out.metrics[VAL_ACC] == pytest.approx(73.493, abs=1e-3) and out.metrics[TEST_ACC] == pytest.approx(73.513, abs=1e-3)
    assert c100.constraints.num_classes == 100 and len(c10) == 15625
    assert "CIFAR-100" in c100.describe_task() and "c100_val_acc_200ep" in c100.describe_task()


@pytest.mark.parametrize("preset", list(PRESETS))
def test_presets_read_their_columns(nb201_csv, rows, preset):
    ev = TabularEvaluator(nb201_csv, preset)
    p = PRESETS[preset]
    for i in (0, 1462, 11472):
        m = score(ev, rows[i]["arch_str"]).metrics
        assert m == {VAL_ACC: float(rows[i][p.val_column]), TEST_ACC: float(rows[i][p.test_column]),
                     PARAMS_M: float(rows[i][p.params_column]), FLOPS_M: float(rows[i][p.flops_column])}
    assert ev.recipe()["columns"][VAL_ACC] == p.val_column


def test_recipe(c10, nb201_csv):
    r = c10.recipe()
    assert r["preset"] == "cifar10" and len(r["table_sha256"]) == 64 and str(nb201_csv) not in str(r)
    assert TabularEvaluator(nb201_csv, "cifar10-12ep").recipe_hash() != c10.recipe_hash()
    custom = TabularEvaluator(nb201_csv, test_column="c10valid_test_acc_200ep")
    assert custom.recipe_hash() != c10.recipe_hash() and custom.columns[TEST_ACC] == "c10valid_test_acc_200ep"


def test_precheck_caps_from_the_table(nb201_csv, rows):
    ev = TabularEvaluator(nb201_csv, max_params_m=1.5)
    assert ev.constraints == Constraints(num_classes=10, max_params_m=1.5)
    assert ev.precheck(SPACE, SPACE.parse(rows[6111]["arch_str"]))[PARAMS_M] == pytest.approx(1.07347)
    with pytest.raises(SemanticError, match="exceed the cap"):
        ev.precheck(SPACE, SPACE.parse(rows[1462]["arch_str"]))       # all nor_conv_3x3: 1.53M


def test_load_is_fast(nb201_csv):
    t0 = time.perf_counter()
    TabularEvaluator(nb201_csv)
    assert time.perf_counter() - t0 < 2.0          # about 0.2 s unloaded; generous for a busy CI machine


def test_errors(nb201_csv, tmp_path):
    with pytest.raises(ValueError, match="unknown preset 'imagenet'; known: cifar10, cifar100"):
        TabularEvaluator(nb201_csv, "imagenet")
    with pytest.raises(ValueError, match=r"no column 'c10_val'; available: arch_index, arch_str, .*flops_M_c100$"):
        TabularEvaluator(nb201_csv, val_column="c10_val")
    with pytest.raises(ValueError, match="not found"):
        TabularEvaluator(tmp_path / "absent.csv")
    with pytest.raises(ValueError, match="not both"):
        TabularEvaluator(nb201_csv, constraints=Constraints(), max_params_m=1.0)


def test_arch_missing_from_a_partial_table(rows, tmp_path):
    path = tmp_path / "part.csv"
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(rows[0])
    ev = TabularEvaluator(path)
    assert score(ev, rows[0]["arch_str"]).status is TrialStatus.COMPLETE
    out = score(ev, rows[1]["arch_str"])
    assert out.status is TrialStatus.FAILED and "not in the table part.csv" in out.error
    with pytest.raises(SemanticError, match="not in the table"):
        ev.precheck(SPACE, SPACE.parse(rows[1]["arch_str"]))
