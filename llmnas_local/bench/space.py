"""The space and evaluator of a benchmark, built from its :class:`SpaceConfig`.

What counts as one query matters for comparing with published numbers. The search loop counts *distinct architectures*,
identified by the space's canonical form: on NAS-Bench-201 that merges the 15,625 cells into 5,260 classes of equal
networks, so a proposal equivalent to an earlier cell is answered as a duplicate and costs nothing. The literature
counts distinct *cells* (table rows). ``distinct = "cell"`` gives the search loop the space's ``literal_space``
(``nb201-cells``, :class:`~llmnas_local.dsl.nb201.Nb201CellSpace`), whose canonical form is the cell itself, so the loop
counts queries as the literature does; ``distinct = "class"`` keeps the project's rule. Both are valid protocols, as
long as every entry of a comparison uses the same one; they differ by up to a few tenths of a point at small budgets.

With ``"class"``, the runs of one benchmark share a store, and an architecture is answered from the first equivalent
cell any run evaluated (equivalent cells have slightly different table values): a run's numbers can then depend on which
runs went before it. ``"cell"`` has no such coupling: every answer is the cell's own row.
"""
from __future__ import annotations

from typing import Any

from llmnas_local.bench.config import TABLE_KEYS, SpaceConfig
from llmnas_local.dsl import BaseSpace, get_space


def create_space(cfg: SpaceConfig) -> BaseSpace:
    space = get_space(cfg.name)
    if cfg.distinct == "cell" and space.literal_space is not None:
        return get_space(space.literal_space)
    return space


def create_evaluator(cfg: SpaceConfig, executor: Any = None):
    """The evaluator of the grid: :func:`llmnas_local.evaluators.create_evaluator`, as ``llmnas search`` builds it
    (``executor``: the grid's, where its trials run)."""
    from llmnas_local.evaluators import create_evaluator as create

    return create(cfg.name, data=cfg.data, recipe=cfg.recipe, table=cfg.table, preset=cfg.preset,
                  table_options={k: getattr(cfg, k) for k in TABLE_KEYS}, max_params_m=cfg.max_params_m,
                  max_flops_m=cfg.max_flops_m, executor=executor, **cfg.evaluator)


def describe_protocol(cfg: SpaceConfig, evaluator: Any) -> dict[str, Any]:
    """What is selected and what is reported, in words and column names (for the report)."""
    from llmnas_local.records import TEST_ACC, VAL_ACC

    out: dict[str, Any] = {"select_by": VAL_ACC, "report": TEST_ACC, "space": cfg.name,
                           "recipe": evaluator.recipe(), "recipe_hash": evaluator.recipe_hash()}
    columns = getattr(evaluator, "columns", None)
    if isinstance(columns, dict):
        out["select_by_column"], out["report_column"] = columns.get(VAL_ACC), columns.get(TEST_ACC)
    if get_space(cfg.name).tabular:
        out["task"] = evaluator.describe_task()
        out["distinct"] = cfg.distinct
        out["query"] = ("a distinct cell string (table row), as in the literature" if cfg.distinct == "cell" else
                        "a distinct network (the space's canonical class of equal cells)")
    else:
        out["query"] = "a distinct network (the space's canonical form)"
    return out
