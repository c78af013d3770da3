"""Answers for the ``nb201`` space from the NAS-Bench-201 table: a look-up instead of a training.

The table is a CSV with one row per cell, keyed by the benchmark's exact ``arch_str`` (what the space's ``format``
writes). The validation column is the selection signal (``val_acc``), the test column is reported (``test_acc``) and
never used for selection; parameters and FLOPs come from the table too (the caps are checked against them).

Presets (the literature's protocol: select by validation accuracy, report test accuracy):

=============== ======================== ====================== ================ ===============
preset          val_acc                  test_acc               params_m         flops_m
=============== ======================== ====================== ================ ===============
cifar10         c10valid_val_acc_200ep   c10_test_acc_200ep     params_M_c10     flops_M_c10
cifar100        c100_val_acc_200ep       c100_test_acc_200ep    params_M_c100    flops_M_c100
cifar10-12ep    c10valid_val_acc_12ep    c10_test_acc_12ep      params_M_c10     flops_M_c10
cifar100-12ep   c100_val_acc_12ep        c100_test_acc_12ep     params_M_c100    flops_M_c100
=============== ======================== ====================== ================ ===============

Any column can be overridden. The recipe names the table by the sha256 of its bytes, never by its path.
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import time
from pathlib import Path
from typing import Any

from llmnas_local.dsl.base import BaseSpace, Constraints, SemanticError
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.records import EVAL_S, FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, Outcome, TrialStatus

ARCH_COLUMN = "arch_str"


@dataclasses.dataclass(frozen=True)
class TablePreset:
    val_column: str
    test_column: str
    params_column: str
    flops_column: str
    num_classes: int


PRESETS: dict[str, TablePreset] = {
    "cifar10": TablePreset("c10valid_val_acc_200ep", "c10_test_acc_200ep", "params_M_c10", "flops_M_c10", 10),
    "cifar100": TablePreset("c100_val_acc_200ep", "c100_test_acc_200ep", "params_M_c100", "flops_M_c100", 100),
    "cifar10-12ep": TablePreset("c10valid_val_acc_12ep", "c10_test_acc_12ep", "params_M_c10", "flops_M_c10", 10),
    "cifar100-12ep": TablePreset("c100_val_acc_12ep", "c100_test_acc_12ep", "params_M_c100", "flops_M_c100", 100),
}


class TabularEvaluator(BaseEvaluator):
    """Looks architectures up in a benchmark table. Constraints default to the preset's task (32x32 RGB)."""

    name = "tabular"

    def __init__(self, table: str | Path, preset: str = "cifar10", constraints: Constraints | None = None, *,
                 max_params_m: float | None = None, max_flops_m: float | None = None, val_column: str | None = None,
                 test_column: str | None = None, params_column: str | None = None, flops_column: str | None = None):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        p = PRESETS[preset]
        self.preset = preset
        self.columns = {VAL_ACC: val_column or p.val_column, TEST_ACC: test_column or p.test_column,
                        PARAMS_M: params_column or p.params_column, FLOPS_M: flops_column or p.flops_column}
        if constraints is not None and (max_params_m is not None or max_flops_m is not None):
            raise ValueError("give the caps either in constraints or as max_params_m/max_flops_m, not both")
        super().__init__(constraints or Constraints(num_classes=p.num_classes, in_chans=3, input_size=32,
                                                    max_params_m=max_params_m, max_flops_m=max_flops_m))
        self.path = Path(table).expanduser()
        if not self.path.is_file():
            raise ValueError(f"benchmark table {str(table)!r} not found")
        data = self.path.read_bytes()
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._rows = self._read(data)

    def _read(self, data: bytes) -> dict[str, tuple[float, float, float, float]]:
        reader = csv.reader(io.StringIO(data.decode("utf-8")))
        header = next(reader, None) or []
        wanted = [ARCH_COLUMN, *self.columns.values()]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise ValueError(f"{self.path.name}: no column {', '.join(map(repr, missing))}; "
                             f"available: {', '.join(header)}")
        arch, *idx = (header.index(c) for c in wanted)
        rows: dict[str, tuple[float, float, float, float]] = {}
        for row in reader:
            if row:
                rows[row[arch]] = tuple(float(row[i]) if row[i] else float("nan") for i in idx)
        return rows

    def __len__(self) -> int:
        return len(self._rows)

    def recipe(self) -> dict[str, Any]:
        return {"evaluator": self.name, "table_sha256": self.sha256, "preset": self.preset,
                "columns": dict(self.columns)}

    def describe_task(self) -> str:
        return (f"NAS-Bench-201 cells on {self.preset.split('-')[0].upper().replace('CIFAR', 'CIFAR-')} "
                f"({self.constraints.num_classes} classes, 32x32 RGB), scored by the table's validation accuracy "
                f"({self.columns[VAL_ACC]})")

    def lookup(self, arch_str: str) -> dict[str, float] | None:
        """The metrics of a cell string, or None if the table has no such row."""
        row = self._rows.get(arch_str)
        return None if row is None else dict(zip(self.columns, row))

    def precheck(self, space: BaseSpace, spec: Any) -> dict[str, float]:
        from llmnas_local.builder.caps import ModelProfile, check_caps

        space.check(spec, self.constraints)
        metrics = self.lookup(space.format(spec))
        if metrics is None:
            raise SemanticError(f"{space.format(spec)} is not in the table {self.path.name}")
        check_caps(ModelProfile(params_m=metrics[PARAMS_M], flops_m=metrics[FLOPS_M]), self.constraints)
        return {PARAMS_M: metrics[PARAMS_M], FLOPS_M: metrics[FLOPS_M]}

    def evaluate(self, space: BaseSpace, spec: Any) -> Outcome:
        t0 = time.perf_counter()
        arch = space.format(spec)
        metrics = self.lookup(arch)
        if metrics is None:
            return Outcome(TrialStatus.FAILED, {}, f"{arch} is not in the table {self.path.name}",
                           {EVAL_S: time.perf_counter() - t0})
        empty = [self.columns[k] for k, v in metrics.items() if v != v]
        if empty:
            return Outcome(TrialStatus.FAILED, {}, f"{arch} has no value in {', '.join(empty)}",
                           {EVAL_S: time.perf_counter() - t0})
        return Outcome(TrialStatus.COMPLETE, metrics, "", {EVAL_S: time.perf_counter() - t0})
