"""One way to build the evaluator of a search, for ``llmnas search``, ``llmnas bench`` and the API alike: the same
space, data and settings give the same evaluator, so the same recipe and recipe hash, whichever of them built it.

A space evaluated by table look-up (``space.tabular``: nb201) gets a :class:`TabularEvaluator` on ``table``; any other
space a :class:`TrainingEvaluator` on ``data``, with the proxy settings and caps fitted to the machine and the data's
size (:func:`~llmnas_local.evaluators.fit.fit_proxy`: on a GPU the method's proxy; on a CPU a subset, 32 px images,
batch 32, lr 0.05 and caps of 1 M parameters and 25 M FLOPs; on digits its measured defaults) wherever ``data``,
``recipe`` and the caps do not say otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

from llmnas_local.dsl import BaseSpace, get_space
from llmnas_local.evaluators.base import BaseEvaluator

# Options of a table look-up: columns that override the preset's, and the task of a column no preset has.
TABLE_OPTIONS = ("val_column", "test_column", "params_column", "flops_column", "num_classes", "input_size")


def create_evaluator(space: BaseSpace | str, *, data: Any = "digits", recipe: Mapping[str, Any] | None = None,
                     table: str | None = None, preset: str | None = "cifar10",
                     table_options: Mapping[str, Any] | None = None, max_params_m: float | None = None,
                     max_flops_m: float | None = None, on_fit: Callable[[str], None] | None = None,
                     machine: Any = None, executor: Any = None, **settings: Any) -> BaseEvaluator:
    """The evaluator of ``space`` (an instance or a registered name).

    Table look-up (``space.tabular``): ``table`` (the CSV, required), ``preset`` (None or ``"none"``: give the four
    columns), ``table_options`` (:data:`TABLE_OPTIONS`). Training: ``data`` (a source, a mapping of
    :class:`~llmnas_local.evaluators.data.DataSpec` fields or a ``DataSpec``), ``recipe``
    (:class:`~llmnas_local.evaluators.proxy.TrainingConfig` fields), ``settings`` (the evaluator's settings that do not
    change a result: ``time_limit_s``, ``threads``...), ``machine`` (a :class:`~llmnas_local.evaluators.fit.Machine`;
    None: this one, on the recipe's device) and ``on_fit`` (called with two lines saying which proxy settings and caps
    the fit chose and why). Both: the caps (None: the fitted default, if any), and ``executor`` (None or "local":
    evaluations in this process; "ray", a mapping or an
    :class:`~llmnas_local.evaluators.ray_executor.ExecutorConfig`: as Ray tasks, the same recipe).
    Raises ValueError for options the space's kind of evaluation does not take.
    """
    space = get_space(space) if isinstance(space, str) else space
    if executor is not None:
        from llmnas_local.evaluators.ray_executor import ExecutorConfig, create_ray_evaluator

        if ExecutorConfig.from_mapping(executor).kind == "ray":
            return create_ray_evaluator(create_evaluator, space, executor, data=data, recipe=recipe, table=table,
                                        preset=preset, table_options=table_options, max_params_m=max_params_m,
                                        max_flops_m=max_flops_m, on_fit=on_fit, machine=machine, **settings)
    if space.tabular:
        return _tabular(space, table, preset, dict(table_options or {}), recipe, settings, max_params_m, max_flops_m)
    given = [k for k, v in (("table", table), *(table_options or {}).items()) if v is not None]
    if given:
        raise ValueError(f"{given[0]} is for a space evaluated by table look-up, not {space.name}")
    return _training(data, dict(recipe or {}), settings, max_params_m, max_flops_m, on_fit, machine)


def _tabular(space: BaseSpace, table: str | None, preset: str | None, options: dict[str, Any], recipe, settings,
             max_params_m: float | None, max_flops_m: float | None) -> BaseEvaluator:
    from llmnas_local.evaluators.tabular import TabularEvaluator

    if table is None:
        raise ValueError(f"space {space.name} is evaluated by table look-up: give its table (a NAS-Bench-201 CSV)")
    unknown = sorted(set(options) - set(TABLE_OPTIONS))
    if unknown:
        raise ValueError(f"unknown table option(s) {', '.join(unknown)}; known: {', '.join(TABLE_OPTIONS)}")
    extra = [k for k, v in (("recipe", recipe), *settings.items()) if v]
    if extra:
        raise ValueError(f"{extra[0]} is for a space evaluated by training, not {space.name} (table look-ups)")
    return TabularEvaluator(table, preset=None if preset == "none" else preset, max_params_m=max_params_m,
                            max_flops_m=max_flops_m, **{k: v for k, v in options.items() if v is not None})


def _training(data: Any, recipe: dict[str, Any], settings: dict[str, Any], max_params_m: float | None,
              max_flops_m: float | None, on_fit: Callable[[str], None] | None, machine: Any) -> BaseEvaluator:
    from llmnas_local.evaluators.data import DataSpec, load_dataset
    from llmnas_local.evaluators.fit import CAP_KEYS, DATA_KEYS, RECIPE_KEYS, Machine, fit_proxy
    from llmnas_local.evaluators.proxy import TrainingConfig
    from llmnas_local.evaluators.training import TrainingEvaluator

    spec = data if isinstance(data, DataSpec) else DataSpec(**data) if isinstance(data, Mapping) else \
        DataSpec(source=str(data))
    machine = machine or Machine.detect(recipe.get("device", "auto"))
    if spec.source == "digits":          # its defaults do not depend on its size: no load here
        sizes = {"num_train": 0, "num_val": 0, "num_test": 0, "input_size": 0}
    else:
        ds = load_dataset(spec)          # as the user gave it (sizes, resolution); decoded once, then cached
        sizes = {"num_train": len(ds.y_train), "num_val": len(ds.y_val), "num_test": len(ds.y_test),
                 "input_size": ds.input_size}
        del ds
    fit = fit_proxy(spec.source, machine, **sizes)
    given = {**{k: getattr(spec, k) for k in DATA_KEYS}, **{k: recipe.get(k) for k in RECIPE_KEYS},
             "max_params_m": max_params_m, "max_flops_m": max_flops_m}
    chosen = {k: given[k] if given[k] is not None else fit.settings[k] for k in given}
    spec = dataclasses.replace(spec, **{k: chosen[k] for k in DATA_KEYS})
    config = TrainingConfig(**{**recipe, **{k: chosen[k] for k in RECIPE_KEYS}})
    evaluator = TrainingEvaluator(spec, config, **{k: chosen[k] for k in CAP_KEYS}, **settings)
    if on_fit is not None:
        on_fit(fit.describe(given))
    return evaluator
