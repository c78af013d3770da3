"""Grids from TOML files and from options."""
from __future__ import annotations

from pathlib import Path

import pytest

from llmnas_local.bench.config import (BenchConfig, EntryConfig, GridError, SpaceConfig, apply_settings, load_grid,
                                       parse_seeds, parse_setting)

GRIDS = Path(__file__).resolve().parents[2] / "benchmarks" / "grids"


@pytest.mark.parametrize("grid", sorted(GRIDS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_grids_load(grid):
    cfg = load_grid(grid)
    assert cfg.name == grid.stem and cfg.entries and cfg.space.name in ("nb201", "cnn")
    assert cfg.max_budget == max(cfg.report_budgets)
    if cfg.space.name == "nb201":
        assert cfg.space.table.endswith("nb201_cifar.csv")


def test_baseline_grids_carry_the_published_columns():
    c10 = load_grid(GRIDS / "nb201-baselines-c10.toml")
    assert c10.published["evolution"][100] == (94.05, 0.29, 300) and c10.seeds == tuple(range(100))
    assert c10.space.preset == "cifar10" and c10.report_budgets == (10, 30, 100, 300)
    assert load_grid(GRIDS / "nb201-baselines-c100.toml").published["random"][300] == (72.22, 0.72, 300)
    memory = load_grid(GRIDS / "nb201-llm-c10.toml")
    assert memory.max_stall == 24 and c10.max_stall == 200 and memory.to_json()["max_stall"] == 24
    assert {e.proposer for e in memory.entries} == {"random", "evolution", "llm-evo", "llm"}
    paper = next(e for e in memory.entries if e.name == "llm")     # the entry named llm is the paper's method
    assert paper.settings["improver"] is True and paper.settings["window"] == 5
    for ds in ("c10", "c100"):
        edit = load_grid(GRIDS / f"nb201-llm-edit-{ds}.toml")
        assert edit.seeds == tuple(range(20)) and {e.name for e in edit.entries} >= {"llm-edit", "llm-edit-no-memory"}
    for withdrawn in (GRIDS / "withdrawn").glob("*.toml"):     # kept as they ran, still readable
        assert load_grid(withdrawn).space.table.endswith("nb201_cifar.csv")


def test_seeds():
    assert parse_seeds(3) == (0, 1, 2) and parse_seeds("2-4") == (2, 3, 4) and parse_seeds("1,5") == (1, 5)
    assert parse_seeds([7, 3]) == (7, 3) and parse_seeds("4") == (0, 1, 2, 3)
    for bad in (0, "x", [1.5], True):
        with pytest.raises(GridError):
            parse_seeds(bad)


def test_settings_from_options():
    assert parse_setting("evolution.population=20") == ("evolution", "population", 20)
    assert parse_setting('llm.model="smollm2"') == ("llm", "model", "smollm2")
    assert parse_setting("llm.model=smollm2") == ("llm", "model", "smollm2")
    entries = apply_settings([EntryConfig("evolution", "evolution")], ["evolution.tournament=5"])
    assert entries[0].settings == {"tournament": 5}
    with pytest.raises(GridError, match="no entry named 'x'"):
        apply_settings(entries, ["x.y=1"])


def test_invalid_grids_name_the_field(tmp_path):
    space = SpaceConfig(table="t.csv")
    with pytest.raises(GridError, match="unique"):
        BenchConfig("b", (EntryConfig("a", "random"), EntryConfig("a", "random")), (0,), space)
    with pytest.raises(GridError, match="reference 'x'"):
        BenchConfig("b", (EntryConfig("a", "random"),), (0,), space, reference="x")
    with pytest.raises(GridError, match="reference 'y'"):
        BenchConfig("b", (EntryConfig("a", "random"),), (0,), space, reference="a", more_references=("y",))
    with pytest.raises(GridError, match="references repeat"):
        BenchConfig("b", (EntryConfig("a", "random"),), (0,), space, reference="a", more_references=("a",))
    listed = tmp_path / "listed.toml"
    listed.write_text('name = "b"\nmore_references = "a"\n[space]\ntable = "t.csv"\n[[entries]]\nname = "a"\n'
                      'proposer = "random"\n')
    with pytest.raises(GridError, match="more_references: expected a list"):
        load_grid(listed)
    with pytest.raises(GridError, match="give its table"):
        BenchConfig("b", (EntryConfig("a", "random"),), (0,), SpaceConfig())
    with pytest.raises(GridError, match="max_stall"):
        BenchConfig("b", (EntryConfig("a", "random"),), (0,), space, max_stall=0)
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nseeds = 2\nbogus = 1\n')
    with pytest.raises(GridError, match="bad.toml: unknown key.*bogus"):
        load_grid(bad)


def test_report_budgets_include_the_max():
    cfg = BenchConfig("b", (EntryConfig("a", "random"),), (0,), SpaceConfig(table="t"), budgets=(10, 30, 100),
                      max_budget=50)
    assert cfg.report_budgets == (10, 30, 50)
