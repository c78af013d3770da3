"""A synthetic benchmark table for the nb201 space, written by tests: every cell (or the first ``n``), made-up values.

Not NAS-Bench-201's numbers: a deterministic function of the row index, so a test can say which value a column
holds without the shared table.
"""
from __future__ import annotations

import csv
import itertools
from pathlib import Path

from llmnas_local.dsl.nb201 import OPS

IN16 = ("in16_val_acc_200ep", "in16_test_acc_200ep", "params_M_in16", "flops_M_in16")


def cells(n: int | None = None) -> list[str]:
    """Cell strings in a fixed order (the first is all none, whose output is zero: not a valid architecture)."""
    out = [f"|{a}~0|+|{b}~0|{c}~1|+|{d}~0|{e}~1|{f}~2|" for a, b, c, d, e, f in itertools.product(OPS, repeat=6)]
    return out if n is None else out[:n]


def value(column: str, i: int) -> float:
    """The value of ``column`` in row ``i``: distinct per column and row, finite, with 4 decimals."""
    return round(10 + (i * 7919 + sum(map(ord, column)) * 104729) % 80000 / 1000, 4)


def write_table(path: Path, columns=IN16, n: int | None = None, extra_rows: list[list[str]] = ()) -> list[str]:
    """Write ``arch_str`` + ``columns`` for the first ``n`` cells (all by default), then ``extra_rows`` as given;
    return the cell strings written."""
    arches = cells(n)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["arch_index", "arch_str", *columns])
        for i, a in enumerate(arches):
            w.writerow([i, a, *(value(c, i) for c in columns)])
        w.writerows(extra_rows)
    return arches
