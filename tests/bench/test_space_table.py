"""A grid's ``[space]`` on any table: the column overrides, the ``imagenet16-120`` preset and ``preset = "none"``."""
from __future__ import annotations

import pytest

from llmnas_local.bench.config import GridError, SpaceConfig, load_grid
from llmnas_local.bench.space import create_evaluator, describe_protocol
from llmnas_local.evaluators.tabular import TableError
from tests.evaluators.synthetic_table import IN16, write_table

GRID = """
name = "any-table"
seeds = 2
[space]
name = "nb201"
table = "{table}"
{space}
[[entries]]
name = "random"
"""


def grid(tmp_path, space: str, table: str = "t.csv"):
    path = tmp_path / "grid.toml"
    path.write_text(GRID.format(table=table, space=space))
    return load_grid(path)


@pytest.fixture
def table(tmp_path):
    write_table(tmp_path / "t.csv", (*IN16, "acc_valid"), n=50)
    return tmp_path / "t.csv"


def test_the_imagenet16_preset_in_a_grid(tmp_path, table):
    cfg = grid(tmp_path, 'preset = "imagenet16-120"')
    ev = create_evaluator(cfg.space)
    assert ev.columns["val_acc"] == "in16_val_acc_200ep" and ev.constraints.num_classes == 120
    protocol = describe_protocol(cfg.space, ev)
    assert protocol["select_by_column"] == "in16_val_acc_200ep" and "ImageNet16-120" in protocol["task"]
    assert "val_column" not in cfg.space.to_json() and cfg.space.to_json()["preset"] == "imagenet16-120"


def test_column_overrides_in_a_grid(tmp_path, table):
    cfg = grid(tmp_path, 'preset = "none"\nval_column = "acc_valid"\ntest_column = "in16_test_acc_200ep"\n'
                         'params_column = "params_M_in16"\nflops_column = "flops_M_in16"\nnum_classes = 5\n'
                         'input_size = 8')
    ev = create_evaluator(cfg.space)
    assert ev.preset is None and ev.columns["val_acc"] == "acc_valid"
    assert ev.recipe()["task"] == {"num_classes": 5, "input_size": 8}
    task = describe_protocol(cfg.space, ev)["task"]
    assert "(5 classes, 8x8 images)" in task and "acc_valid" in task and "test" not in task
    assert cfg.space.to_json()["val_column"] == "acc_valid" and cfg.space.to_json()["num_classes"] == 5
    partial = grid(tmp_path, 'preset = "imagenet16-120"\nval_column = "acc_valid"')
    assert create_evaluator(partial.space).columns["test_acc"] == "in16_test_acc_200ep"


@pytest.mark.parametrize("space, message", [
    ('preset = "imagenet"', "space.preset must be one of cifar10, .*imagenet16-120 or none, got 'imagenet'"),
    ("val_column = 3", "space.val_column: expected a column name, got 3"),
    ('num_classes = "ten"', "space.num_classes: expected a positive integer"),
    ("input_size = 0", "space.input_size: expected a positive integer"),
    ('flops_columns = "x"', "unknown key"),
])
def test_bad_space_keys_name_the_field(tmp_path, table, space, message):
    with pytest.raises(GridError, match=message):
        grid(tmp_path, space)


def test_table_keys_are_for_nb201():
    with pytest.raises(GridError, match="space.val_column is for nb201"):
        SpaceConfig(name="cnn", val_column="x")
    assert "val_column" not in SpaceConfig(name="cnn").to_json()


def test_a_bad_table_named_by_a_grid(tmp_path):
    (tmp_path / "t.csv").write_text("arch_str,in16_val_acc_200ep\n")
    cfg = grid(tmp_path, 'preset = "imagenet16-120"')
    with pytest.raises(TableError, match="t.csv: no column 'in16_test_acc_200ep'"):
        create_evaluator(cfg.space)
    with pytest.raises(ValueError, match="missing: test, params, flops"):
        create_evaluator(grid(tmp_path, 'preset = "none"\nval_column = "in16_val_acc_200ep"').space)
