"""create_evaluator: one way to build a space's evaluator, with the data set's proxy defaults; and ``llmnas search``
and ``llmnas bench`` build the same one (the same recipe hash) from the same data and settings."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from llmnas_local.bench.config import SpaceConfig
from llmnas_local.bench.space import create_evaluator as bench_evaluator
from llmnas_local.bench.space import create_space
from llmnas_local.evaluators import create_evaluator
from llmnas_local.evaluators.proxy import DIGITS_PROXY
from tests.evaluators.synthetic_table import IN16, write_table


@pytest.fixture
def table(tmp_path):
    write_table(tmp_path / "t.csv", IN16, n=50)
    return str(tmp_path / "t.csv")


def test_digits_gets_its_proxy_defaults_where_nothing_else_is_said():
    ev = create_evaluator("cnn", data="digits")
    c = ev.config
    assert (c.epochs, c.lr, c.batch_size) == (DIGITS_PROXY["epochs"], DIGITS_PROXY["lr"], DIGITS_PROXY["batch_size"])
    assert ev.data_spec.resolution == ev.constraints.input_size == DIGITS_PROXY["resolution"]
    assert (ev.constraints.max_params_m, ev.constraints.max_flops_m) == (1.0, 25.0)
    given = create_evaluator("cnn", data={"source": "digits", "resolution": 8}, recipe={"epochs": 1}, max_flops_m=5.0)
    assert (given.config.epochs, given.config.lr, given.data_spec.resolution) == (1, DIGITS_PROXY["lr"], 8)
    assert (given.constraints.max_params_m, given.constraints.max_flops_m) == (1.0, 5.0)


def test_options_of_the_other_kind_of_evaluation_are_refused(table):
    with pytest.raises(ValueError, match="table is for a space evaluated by table look-up, not cnn"):
        create_evaluator("cnn", table=table)
    with pytest.raises(ValueError, match="give its table"):
        create_evaluator("nb201")
    with pytest.raises(ValueError, match="recipe is for a space evaluated by training"):
        create_evaluator("nb201", table=table, preset="imagenet16-120", recipe={"epochs": 2})
    ev = create_evaluator("nb201-cells", table=table, preset="none",
                          table_options=dict(zip(("val_column", "test_column", "params_column", "flops_column"), IN16)))
    assert ev.preset is None and len(ev) == 50


def _search_recipe_hash(monkeypatch, tmp_path, *args) -> str:
    """The recipe hash of the evaluator ``llmnas search ARGS`` builds (the search itself is not run)."""
    import llmnas_local.search as search
    from llmnas_local.cli.main import cli

    seen = {}

    class Captured(Exception):
        pass

    def capture(space, proposer, evaluator, store, **kwargs):
        seen["hash"] = evaluator.recipe_hash()
        evaluator.close()
        raise Captured

    monkeypatch.setattr(search, "Search", capture)
    with pytest.raises(Captured):
        CliRunner().invoke(cli, ["search", *map(str, args), "--proposer", "random", "--store", tmp_path / "s", "-q"],
                           catch_exceptions=False)
    return seen["hash"]


def test_search_and_bench_train_the_same_recipe_on_digits(monkeypatch, tmp_path):
    cli_hash = _search_recipe_hash(monkeypatch, tmp_path, "--space", "cnn", "--data", "digits")
    assert cli_hash == bench_evaluator(SpaceConfig(name="cnn", data="digits")).recipe_hash()
    cli_hash = _search_recipe_hash(monkeypatch, tmp_path, "--space", "cnn", "--data", "digits", "--epochs", 2,
                                   "--train-size", 200, "--train-seed", 3, "--max-flops-m", 10)
    cfg = SpaceConfig(name="cnn", data={"source": "digits", "train_size": 200, "split_seed": 3},
                      recipe={"epochs": 2, "seed": 3}, max_flops_m=10.0)
    assert cli_hash == bench_evaluator(cfg).recipe_hash()


def test_search_and_bench_look_up_the_same_recipe_in_a_table(monkeypatch, tmp_path, table):
    cli_hash = _search_recipe_hash(monkeypatch, tmp_path, "--space", "nb201", "--table", table,
                                   "--preset", "imagenet16-120")
    cfg = SpaceConfig(name="nb201", table=table, preset="imagenet16-120")
    assert cli_hash == bench_evaluator(cfg).recipe_hash()
    assert create_space(cfg).name == "nb201-cells"         # the literature's count of queries, by default
