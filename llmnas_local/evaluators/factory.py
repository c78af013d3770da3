"""One way to build the evaluator of a search, for ``llmnas search``, ``llmnas bench`` and the API alike: the same
space, data and settings give the same evaluator, so the same recipe and recipe hash, whichever of them built it.

A space evaluated by table look-up (``space.tabular``: nb201) gets a :class:`TabularEvaluator` on ``table``; any other
space a :class:`TrainingEvaluator` on ``data``, with the data source's proxy defaults
(:func:`~llmnas_local.evaluators.proxy.proxy_defaults`: on digits 3 epochs, lr 0.05, batch 32, 16 px images and caps
of 1 M parameters and 25 M FLOPs) wherever ``data``, ``recipe`` and the caps do not say otherwise.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from llmnas_local.dsl import BaseSpace, get_space
from llmnas_local.evaluators.base import BaseEvaluator

# Options of a table look-up: columns that override the preset's, and the task of a column no preset has.
TABLE_OPTIONS = ("val_column", "test_column", "params_column", "flops_column", "num_classes", "input_size")
_RECIPE_DEFAULTS = ("epochs", "lr", "batch_size")      # the TrainingConfig fields proxy_defaults gives


def create_evaluator(space: BaseSpace | str, *, data: Any = "digits", recipe: Mapping[str, Any] | None = None,
                     table: str | None = None, preset: str | None = "cifar10",
                     table_options: Mapping[str, Any] | None = None, max_params_m: float | None = None,
                     max_flops_m: float | None = None, **settings: Any) -> BaseEvaluator:
    """The evaluator of ``space`` (an instance or a registered name).

    Table look-up (``space.tabular``): ``table`` (the CSV, required), ``preset`` (None or ``"none"``: give the four
    columns), ``table_options`` (:data:`TABLE_OPTIONS`). Training: ``data`` (a source, a mapping of
    :class:`~llmnas_local.evaluators.data.DataSpec` fields or a ``DataSpec``), ``recipe``
    (:class:`~llmnas_local.evaluators.proxy.TrainingConfig` fields), ``settings`` (the evaluator's settings that do not
    change a result: ``time_limit_s``, ``threads``...). Both: the caps (None: the data source's default, if any).
    Raises ValueError for options the space's kind of evaluation does not take.
    """
    space = get_space(space) if isinstance(space, str) else space
    if space.tabular:
        return _tabular(space, table, preset, dict(table_options or {}), recipe, settings, max_params_m, max_flops_m)
    given = [k for k, v in (("table", table), *(table_options or {}).items()) if v is not None]
    if given:
        raise ValueError(f"{given[0]} is for a space evaluated by table look-up, not {space.name}")
    return _training(data, dict(recipe or {}), settings, max_params_m, max_flops_m)


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
              max_flops_m: float | None) -> BaseEvaluator:
    from llmnas_local.evaluators.data import DataSpec
    from llmnas_local.evaluators.proxy import TrainingConfig, proxy_defaults
    from llmnas_local.evaluators.training import TrainingEvaluator

    spec = data if isinstance(data, DataSpec) else DataSpec(**data) if isinstance(data, Mapping) else \
        DataSpec(source=str(data))
    defaults = proxy_defaults(spec.source)
    if spec.resolution is None and defaults.get("resolution") is not None:
        spec = dataclasses.replace(spec, resolution=defaults["resolution"])
    config = TrainingConfig(**{**{k: defaults[k] for k in _RECIPE_DEFAULTS if k in defaults}, **recipe})
    return TrainingEvaluator(spec, config,
                             max_params_m=max_params_m if max_params_m is not None else defaults.get("max_params_m"),
                             max_flops_m=max_flops_m if max_flops_m is not None else defaults.get("max_flops_m"),
                             **settings)
