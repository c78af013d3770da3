"""Evaluators: score an architecture under a fixed recipe and return an Outcome.

- :class:`TrainingEvaluator` (``training``): the one-epoch proxy on local data, in an isolated worker process;
- :class:`TabularEvaluator` (``tabular``): a look-up in the NAS-Bench-201 table for the ``nb201`` space;
- :func:`load_dataset` / :class:`DataSpec`: the offline data sets the training evaluator reads;
- :class:`RayEvaluator` / :class:`ExecutorConfig` (``ray_executor``): the trials of any of them as Ray tasks;
- :func:`create_evaluator` (``factory``): the evaluator of a space, with the data set's proxy defaults (the CLI, the
  bench and the API build theirs with it).

Names are imported lazily, so importing this package does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from llmnas_local.evaluators.base import BaseEvaluator, recipe_hash

_LAZY = {
    "TrainingEvaluator": "training", "TrainingConfig": "training",
    "TabularEvaluator": "tabular", "PRESETS": "tabular",
    "DataSpec": "data", "Dataset": "data", "load_dataset": "data", "describe_dataset": "data",
    "create_evaluator": "factory", "TABLE_OPTIONS": "factory",
    "RayEvaluator": "ray_executor", "ExecutorConfig": "ray_executor",
}

__all__ = ["BaseEvaluator", "recipe_hash", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"llmnas_local.evaluators.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
