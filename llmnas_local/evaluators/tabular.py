"""Answers for the ``nb201`` space from the NAS-Bench-201 table: a look-up instead of a training.

The table is a CSV with one row per cell, keyed by the benchmark's exact ``arch_str`` (what the space's ``format``
writes). The validation column is the selection signal (``val_acc``), the test column is reported (``test_acc``) and
never used for selection; parameters and FLOPs come from the table too (the caps are checked against them).

Presets (the literature's protocol: select by validation accuracy, report test accuracy):

=============== ======================== ====================== ================ =============== ================
preset          val_acc                  test_acc               params_m         flops_m         task
=============== ======================== ====================== ================ =============== ================
cifar10         c10valid_val_acc_200ep   c10_test_acc_200ep     params_M_c10     flops_M_c10     10 classes, 32x32
cifar100        c100_val_acc_200ep       c100_test_acc_200ep    params_M_c100    flops_M_c100    100 classes, 32x32
cifar10-12ep    c10valid_val_acc_12ep    c10_test_acc_12ep      params_M_c10     flops_M_c10     10 classes, 32x32
cifar100-12ep   c100_val_acc_12ep        c100_test_acc_12ep     params_M_c100    flops_M_c100    100 classes, 32x32
imagenet16-120  in16_val_acc_200ep       in16_test_acc_200ep    params_M_in16    flops_M_in16    120 classes, 16x16
=============== ======================== ====================== ================ =============== ================

Any column can be overridden; with ``preset=None`` all four are given. The task the prompts describe (data set,
classes, resolution) follows the validation column: a preset's column names its data set, any other column a task
the user describes (``num_classes``, ``input_size``) or, without them, only "a tabular benchmark scored by column X".
The description carries no benchmark knowledge and never names the test column.

The recipe names the table by the sha256 of its bytes, never by its path. A table that cannot be read raises
:class:`TableError`, one line that names the file and the line: binary or compressed files, rows of the wrong width,
values that are not numbers or not finite, two rows for one cell, missing columns. An empty value means "no value"
(that cell's evaluation fails).
"""
from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import math
import time
from pathlib import Path
from typing import Any

from llmnas_local.dsl.base import BaseSpace, Constraints, SemanticError
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.records import EVAL_S, FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC, Outcome, TrialStatus

ARCH_COLUMN = "arch_str"
_NAN = float("nan")


class TableError(ValueError):
    """A benchmark table that cannot be used: one line that names the file (and the line of the file)."""


@dataclasses.dataclass(frozen=True)
class TableTask:
    """What the table's networks were trained on, as the prompt states it; None where it is not known."""

    dataset: str | None = None
    num_classes: int | None = None
    input_size: int | None = None


@dataclasses.dataclass(frozen=True)
class TablePreset:
    val_column: str
    test_column: str
    params_column: str
    flops_column: str
    task: TableTask


_CIFAR10, _CIFAR100 = TableTask("CIFAR-10", 10, 32), TableTask("CIFAR-100", 100, 32)
PRESETS: dict[str, TablePreset] = {
    "cifar10": TablePreset("c10valid_val_acc_200ep", "c10_test_acc_200ep", "params_M_c10", "flops_M_c10", _CIFAR10),
    "cifar100": TablePreset("c100_val_acc_200ep", "c100_test_acc_200ep", "params_M_c100", "flops_M_c100", _CIFAR100),
    "cifar10-12ep": TablePreset("c10valid_val_acc_12ep", "c10_test_acc_12ep", "params_M_c10", "flops_M_c10", _CIFAR10),
    "cifar100-12ep": TablePreset("c100_val_acc_12ep", "c100_test_acc_12ep", "params_M_c100", "flops_M_c100",
                                 _CIFAR100),
    "imagenet16-120": TablePreset("in16_val_acc_200ep", "in16_test_acc_200ep", "params_M_in16", "flops_M_in16",
                                  TableTask("ImageNet16-120", 120, 16)),
}
_TASK_OF_COLUMN = {p.val_column: p.task for p in PRESETS.values()}   # the task follows the selection column


def resolve_task(val_column: str, num_classes: int | None = None, input_size: int | None = None) -> TableTask:
    """The task of a table selected by ``val_column``: a preset's column gives its data set (``num_classes`` and
    ``input_size``, if given, must agree); any other column the task the user gives, each part None if not given."""
    for name, value in (("number of classes", num_classes), ("input size", input_size)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"the task's {name} must be a positive integer, got {value!r}")
    if input_size is not None and input_size % 4:
        raise ValueError(f"the task's input size {input_size} must be a multiple of 4 (the nb201 networks halve "
                         f"it twice)")
    known = _TASK_OF_COLUMN.get(val_column)
    if known is None:
        return TableTask(None, num_classes, input_size)
    for name, value, text in (("num_classes", num_classes, f"{num_classes} classes"),
                              ("input_size", input_size, f"{input_size}x{input_size} images")):
        if value is not None and value != getattr(known, name):
            raise ValueError(f"the task given ({text}) contradicts the column {val_column}: {known.dataset}, "
                             f"{known.num_classes} classes, {known.input_size}x{known.input_size}")
    return known


class TabularEvaluator(BaseEvaluator):
    """Looks architectures up in a benchmark table. Constraints default to the task of the validation column."""

    name = "tabular"

    def __init__(self, table: str | Path, preset: str | None = "cifar10", constraints: Constraints | None = None, *,
                 max_params_m: float | None = None, max_flops_m: float | None = None, val_column: str | None = None,
                 test_column: str | None = None, params_column: str | None = None, flops_column: str | None = None,
                 num_classes: int | None = None, input_size: int | None = None):
        given = {VAL_ACC: val_column, TEST_ACC: test_column, PARAMS_M: params_column, FLOPS_M: flops_column}
        if preset is None:
            missing = [k.split("_")[0] for k, v in given.items() if not v]
            if missing:
                raise ValueError(f"without a preset, name all four columns (val, test, params, flops); "
                                 f"missing: {', '.join(missing)}")
            self.columns = dict(given)
        elif preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; known: {', '.join(PRESETS)}")
        else:
            p = PRESETS[preset]
            defaults = {VAL_ACC: p.val_column, TEST_ACC: p.test_column, PARAMS_M: p.params_column,
                        FLOPS_M: p.flops_column}
            self.columns = {k: v or defaults[k] for k, v in given.items()}
        self.preset = preset
        self.task = resolve_task(self.columns[VAL_ACC], num_classes, input_size)
        self._task_given = self.columns[VAL_ACC] not in _TASK_OF_COLUMN and (num_classes, input_size) != (None, None)
        if constraints is not None and (max_params_m is not None or max_flops_m is not None):
            raise ValueError("give the caps either in constraints or as max_params_m/max_flops_m, not both")
        super().__init__(constraints or Constraints(num_classes=self.task.num_classes or 10, in_chans=3,
                                                    input_size=self.task.input_size or 32,
                                                    max_params_m=max_params_m, max_flops_m=max_flops_m))
        self.path = Path(table).expanduser()
        if not self.path.is_file():
            raise TableError(f"benchmark table {str(table)!r} not found" if not self.path.exists() else
                             f"benchmark table {str(table)!r} is not a file")
        try:
            data = self.path.read_bytes()
        except OSError as e:
            raise TableError(f"cannot read benchmark table {str(table)!r}: {e.strerror}") from None
        self.sha256 = hashlib.sha256(data).hexdigest()
        self._rows = self._read(data)

    def _read(self, data: bytes) -> dict[str, tuple[float, float, float, float]]:
        where = str(self.path)
        kind = next((k for magic, k in ((b"\x1f\x8b", "gzip"), (b"PK\x03\x04", "zip"), (b"BZh", "bzip2"),
                                        (b"\xfd7zXZ", "xz")) if data.startswith(magic)), None)
        if kind:
            raise TableError(f"{where}: a {kind} archive, not a CSV table (decompress it and give the .csv)")
        nul = data.find(b"\x00")
        if nul >= 0:
            raise TableError(f"{where}: binary data (a NUL byte at offset {nul}), not a CSV table")
        bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0       # a spreadsheet's UTF-8 mark
        try:
            text = data[bom:].decode("utf-8")
        except UnicodeDecodeError as e:
            raise TableError(f"{where}: not UTF-8 text (byte 0x{data[bom + e.start]:02x} at offset "
                             f"{bom + e.start}), not a CSV table") from None
        reader = csv.reader(io.StringIO(text), strict=True)
        try:
            return self._rows_of(reader, where)
        except csv.Error as e:
            raise TableError(f"{where}, line {reader.line_num}: not valid CSV ({e})") from None

    def _rows_of(self, reader, where: str) -> dict[str, tuple[float, float, float, float]]:
        header = next(reader, None)
        if not header:
            raise TableError(f"{where}: no header row (expected a CSV table with a column {ARCH_COLUMN!r})")
        wanted = [ARCH_COLUMN, *self.columns.values()]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise TableError(f"{where}: no column {', '.join(map(repr, missing))}; available: {', '.join(header)}")
        twice = sorted({c for c in wanted if header.count(c) > 1})
        if twice:
            raise TableError(f"{where}: column {', '.join(map(repr, twice))} appears more than once in the header")
        arch, *idx = (header.index(c) for c in wanted)
        width = len(header)
        rows: dict[str, tuple[float, float, float, float]] = {}
        lines: dict[str, int] = {}
        for row in reader:
            if not row:
                continue
            if len(row) != width:
                raise TableError(f"{where}, line {reader.line_num}: {len(row)} field(s), the header has {width}")
            key = row[arch]
            if not key:
                raise TableError(f"{where}, line {reader.line_num}: empty {ARCH_COLUMN}")
            if key in lines:
                raise TableError(f"{where}, line {reader.line_num}: {key} is also on line {lines[key]} "
                                 f"(one row per cell)")
            cells = [row[i] for i in idx]
            try:
                values = tuple(map(float, cells))
                ok = all(map(math.isfinite, values))
            except ValueError:
                ok = False
            rows[key] = values if ok else self._values(cells, where, reader.line_num)
            lines[key] = reader.line_num
        if not rows:
            raise TableError(f"{where}: no rows after the header")
        return rows

    def _values(self, cells: list[str], where: str, line: int) -> tuple[float, float, float, float]:
        """The slow path of a row: an empty value is "no value" (NaN); anything else must be a finite number."""
        out = []
        for column, text in zip(self.columns.values(), cells):
            if not text.strip():
                out.append(_NAN)
                continue
            try:
                value = float(text)
            except ValueError:
                raise TableError(f"{where}, line {line}: {column} is {text!r}, not a number") from None
            if not math.isfinite(value):
                raise TableError(f"{where}, line {line}: {column} is {text!r}, not a finite number "
                                 f"(leave it empty for no value)")
            out.append(value)
        return tuple(out)

    def __len__(self) -> int:
        return len(self._rows)

    def recipe(self) -> dict[str, Any]:
        out = {"evaluator": self.name, "table_sha256": self.sha256, "preset": self.preset,
               "columns": dict(self.columns)}
        if self._task_given:     # what the prompts say of a table the user describes (a preset's column implies it)
            out["task"] = {"num_classes": self.task.num_classes, "input_size": self.task.input_size}
        return out

    def describe_task(self) -> str:
        """The task for prompts: data set, classes and resolution as far as known; never the test column."""
        t, column = self.task, self.columns[VAL_ACC]
        if t.dataset is not None:
            return (f"NAS-Bench-201 cells on {t.dataset} ({t.num_classes} classes, {t.input_size}x{t.input_size} RGB), "
                    f"scored by the table's validation accuracy ({column})")
        scored = "one of its columns" if "test" in column.lower() else f"its column {column}"
        parts = [f"{t.num_classes} classes"] if t.num_classes is not None else []
        parts += [f"{t.input_size}x{t.input_size} images"] if t.input_size is not None else []
        task = f" of an image classification task ({', '.join(parts)})" if parts else ""
        return f"NAS-Bench-201 cells looked up in a tabular benchmark{task}, scored by {scored}"

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
