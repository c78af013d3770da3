"""The table evaluator: presets, exact values, caps, any table's columns and the task the prompt states, and a bad
table as one line that names the file and the line."""
from __future__ import annotations

import csv
import gzip
import re
import time

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.base import Constraints, SemanticError
from llmnas_local.evaluators.tabular import PRESETS, TableError, TabularEvaluator
from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, TrialStatus
from tests.evaluators.synthetic_table import IN16, value, write_table

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


# the shared table has no ImageNet16-120 columns (a synthetic table tests that preset, below)
@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "imagenet16-120"])
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


# -- any table's columns, and the task the prompt states ---------------------------------------------------------------
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"
ALL_PRESET_COLUMNS = tuple(dict.fromkeys(c for p in PRESETS.values()
                                         for c in (p.val_column, p.test_column, p.params_column, p.flops_column)))
CUSTOM = ("acc_valid", "acc_final", "size_m", "mults_m")


@pytest.fixture(scope="module")
def in16_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("in16") / "in16.csv"
    return path, write_table(path, IN16)


@pytest.fixture(scope="module")
def every_preset_table(tmp_path_factory):
    path = tmp_path_factory.mktemp("all") / "all.csv"
    write_table(path, ALL_PRESET_COLUMNS, n=200)
    return path


def test_imagenet16_preset_on_a_synthetic_table(in16_table):
    path, arches = in16_table
    ev = TabularEvaluator(path, "imagenet16-120")
    i = arches.index(RESNET)
    out = score(ev, RESNET)
    assert out.status is TrialStatus.COMPLETE
    assert out.metrics == {VAL_ACC: value(IN16[0], i), TEST_ACC: value(IN16[1], i), PARAMS_M: value(IN16[2], i),
                           FLOPS_M: value(IN16[3], i)}
    assert ev.constraints == Constraints(num_classes=120, in_chans=3, input_size=16)
    assert ev.precheck(SPACE, SPACE.parse(RESNET))[PARAMS_M] == value(IN16[2], i)     # 16x16 passes the space's check
    task = ev.describe_task()
    assert "ImageNet16-120" in task and "120 classes, 16x16" in task and "in16_val_acc_200ep" in task
    assert ev.recipe()["preset"] == "imagenet16-120" and "task" not in ev.recipe()
    with pytest.raises(TableError, match="no column 'c10valid_val_acc_200ep'"):
        TabularEvaluator(path)                    # the default preset's columns are not in this table


@pytest.mark.parametrize("preset", list(PRESETS))
def test_each_preset_states_its_task_and_never_the_test_column(every_preset_table, preset):
    ev = TabularEvaluator(every_preset_table, preset)
    t = PRESETS[preset].task
    task = ev.describe_task()
    assert f"on {t.dataset} ({t.num_classes} classes, {t.input_size}x{t.input_size} RGB)" in task
    assert "test" not in task.lower() and PRESETS[preset].val_column in task
    assert (ev.constraints.num_classes, ev.constraints.input_size) == (t.num_classes, t.input_size)


def test_the_task_follows_the_validation_column(every_preset_table):
    ev = TabularEvaluator(every_preset_table, "cifar10", val_column="in16_val_acc_200ep")
    assert "ImageNet16-120" in ev.describe_task() and "CIFAR" not in ev.describe_task()
    assert ev.constraints.num_classes == 120 and ev.columns[TEST_ACC] == "c10_test_acc_200ep"
    # another column of the same data set: still CIFAR-100; the task given may repeat what the column says
    ev = TabularEvaluator(every_preset_table, "cifar100", val_column="c100_val_acc_12ep", num_classes=100)
    assert "CIFAR-100 (100 classes, 32x32 RGB)" in ev.describe_task()
    with pytest.raises(ValueError, match=r"task given \(100 classes\) contradicts the column c10valid_val_acc_200ep: "
                                         r"CIFAR-10, 10 classes, 32x32"):
        TabularEvaluator(every_preset_table, "cifar10", num_classes=100)
    with pytest.raises(ValueError, match="16x16 images"):
        TabularEvaluator(every_preset_table, "cifar100", input_size=16)


def test_custom_columns_without_a_preset(tmp_path):
    path = tmp_path / "custom.csv"
    arches = write_table(path, CUSTOM)
    cols = dict(zip(("val_column", "test_column", "params_column", "flops_column"), CUSTOM))
    ev = TabularEvaluator(path, preset=None, **cols)
    i = arches.index(RESNET)
    assert score(ev, RESNET).metrics[VAL_ACC] == value("acc_valid", i)
    assert score(ev, RESNET).metrics[TEST_ACC] == value("acc_final", i)
    task = ev.describe_task()
    assert task == "NAS-Bench-201 cells looked up in a tabular benchmark, scored by its column acc_valid"
    assert ev.recipe()["preset"] is None and "task" not in ev.recipe()
    described = TabularEvaluator(path, preset=None, num_classes=7, input_size=24, **cols)
    assert "(7 classes, 24x24 images)" in described.describe_task() and "CIFAR" not in described.describe_task()
    assert described.constraints == Constraints(num_classes=7, input_size=24)
    assert described.recipe()["task"] == {"num_classes": 7, "input_size": 24}
    assert described.recipe_hash() != ev.recipe_hash()       # another prompt: another run
    only_size = TabularEvaluator(path, preset=None, input_size=24, **cols).describe_task()
    assert "(24x24 images)" in only_size and "classes" not in only_size
    with pytest.raises(ValueError, match="without a preset, name all four columns .*; missing: params, flops"):
        TabularEvaluator(path, preset=None, val_column="acc_valid", test_column="acc_final")
    with pytest.raises(ValueError, match="multiple of 4"):
        TabularEvaluator(path, preset=None, input_size=30, **cols)
    with pytest.raises(ValueError, match="positive integer"):
        TabularEvaluator(path, preset=None, num_classes=0, **cols)


def test_a_selection_column_named_test_is_not_named_in_the_prompt(every_preset_table):
    ev = TabularEvaluator(every_preset_table, "cifar10", val_column="c10_test_acc_200ep")
    assert "test" not in ev.describe_task().lower() and "CIFAR" not in ev.describe_task()
    assert ev.describe_task().endswith("scored by one of its columns")


def test_the_real_table_with_column_overrides(nb201_csv, rows):
    ev = TabularEvaluator(nb201_csv, preset=None, val_column="c10valid_val_acc_12ep", test_column="c10_test_acc_200ep",
                          params_column="params_M_c10", flops_column="flops_M_c10")
    assert "CIFAR-10 (10 classes, 32x32 RGB)" in ev.describe_task() and len(ev) == 15625
    m = score(ev, rows[6111]["arch_str"]).metrics
    assert m[VAL_ACC] == float(rows[6111]["c10valid_val_acc_12ep"]) and m[TEST_ACC] == 94.3733


# -- bad tables: one line that names the file and the line -------------------------------------------------------------
GOOD = f"arch_str,{','.join(IN16)}\n{RESNET},90.1,90.2,1.1,100.5\n"
OTHER = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"


@pytest.mark.parametrize("name, content, message", [
    ("t.csv.gz", gzip.compress(GOOD.encode()), r": a gzip archive, not a CSV table"),
    ("t.zip", b"PK\x03\x04" + bytes(40), r": a zip archive"),
    ("t.bin", bytes(range(256)), r": binary data \(a NUL byte at offset 0\)"),
    ("t.csv", GOOD.encode() + "é".encode("latin-1"), r": not UTF-8 text \(byte 0xe9 at offset"),
    ("t.csv", b"", r": no header row"),
    ("t.csv", f"arch_str,{','.join(IN16)}\n".encode(), r": no rows after the header"),
    ("t.csv", (GOOD + f"{OTHER},1,2,3\n").encode(), r", line 3: 4 field\(s\), the header has 5"),
    ("t.csv", (GOOD + f"{OTHER},1,2,3,4,5\n").encode(), r", line 3: 6 field\(s\), the header has 5"),
    ("t.csv", (GOOD + f"{OTHER},1,abc,3,4\n").encode(), r", line 3: in16_test_acc_200ep is 'abc', not a number"),
    ("t.csv", (GOOD + f"{OTHER},nan,2,3,4\n").encode(), r", line 3: in16_val_acc_200ep is 'nan', not a finite"),
    ("t.csv", (GOOD + f"{OTHER},1,2,3,inf\n").encode(), r", line 3: flops_M_in16 is 'inf', not a finite"),
    ("t.csv", (GOOD + f"{OTHER},1,2,3,4\n{RESNET},5,6,7,8\n").encode(), r", line 4: \|nor_conv_3x3~0\|.* is also on "
                                                                        r"line 2 \(one row per cell\)"),
    ("t.csv", (GOOD + ",1,2,3,4\n").encode(), r", line 3: empty arch_str"),
    ("t.csv", GOOD.replace("flops_M_in16", "flops").encode(), r": no column 'flops_M_in16'; available: arch_str"),
    ("t.csv", GOOD.replace("arch_str,", "arch_str,in16_val_acc_200ep,").replace("~2|,", "~2|,1,").encode(),
     r": column 'in16_val_acc_200ep' appears more than once"),
    ("t.csv", (GOOD + f'{OTHER},"1,2,3,4\n').encode(), r", line 3: not valid CSV \(unexpected end of data\)"),
])
def test_bad_tables_raise_one_line_naming_the_file_and_line(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TableError, match=re.escape(str(path)) + message) as e:
        TabularEvaluator(path, "imagenet16-120")
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_an_empty_value_is_no_value(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text(GOOD + f"{OTHER},,2,3,4\n")
    ev = TabularEvaluator(path, "imagenet16-120")
    assert score(ev, RESNET).status is TrialStatus.COMPLETE
    out = score(ev, OTHER)
    assert out.status is TrialStatus.FAILED and "has no value in in16_val_acc_200ep" in out.error


def test_a_utf8_mark_and_a_trailing_blank_line_are_read(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\n")       # arch_str is the first column
    assert len(TabularEvaluator(path, "imagenet16-120")) == 1
    path.write_bytes(b"\xef\xbb\xbf" + GOOD.encode() + b"\xe9")
    with pytest.raises(TableError, match=f"byte 0xe9 at offset {3 + len(GOOD)}"):
        TabularEvaluator(path, "imagenet16-120")
