"""Statistics of a benchmark: curves over seeds, summaries at a budget, paired comparisons with a bootstrap CI.

Pure functions of numpy arrays; NaN marks a missing value (a run that stopped before the budget, or had no
completed evaluation yet). Randomness comes only from an explicit seed.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

TIE_ATOL = 1e-9
BETTER, WORSE, NO_DIFFERENCE, TOO_FEW = "better", "worse", "no significant difference", "too few seeds"


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1) and the normal 95% CI half-width of the mean, over ``n`` values."""

    n: int
    mean: float
    std: float
    ci95: float
    median: float
    min: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return _rounded_fields(self)


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite values (NaNs are dropped: ``n`` says how many were left)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    return Summary(n, float(x.mean()), std, 1.96 * std / math.sqrt(n), float(np.median(x)), float(x.min()),
                   float(x.max()))


def curve_matrix(curves: Sequence[Sequence[float]], length: int) -> np.ndarray:
    """Stack per-run curves into a (runs, length) array, padding short ones with NaN and cutting long ones."""
    out = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        c = np.asarray(c, dtype=float)[:length]
        out[i, : c.size] = c
    return out


def band(matrix: np.ndarray, kind: str = "std") -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean and the lower/upper edge of the band (mean ± std, or the normal 95% CI of the mean)."""
    with np.errstate(invalid="ignore"), _quiet():
        n = np.sum(np.isfinite(matrix), axis=0)
        mean = np.nanmean(matrix, axis=0)
        std = np.where(n > 1, np.nanstd(matrix, axis=0, ddof=1), 0.0)
    half = std if kind == "std" else 1.96 * std / np.sqrt(np.maximum(n, 1))
    return mean, mean - half, mean + half


def wins_ties_losses(diff: Sequence[float], atol: float = TIE_ATOL) -> tuple[int, int, int]:
    d = np.asarray(diff, dtype=float)
    return int(np.sum(d > atol)), int(np.sum(np.abs(d) <= atol)), int(np.sum(d < -atol))


def bootstrap_ci(values: Sequence[float], *, resamples: int = 10_000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (numpy Generator seeded with ``seed``)."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    chunk = max(1, 2_000_000 // x.size)          # bound the index array's memory for long inputs
    for start in range(0, resamples, chunk):
        stop = min(resamples, start + chunk)
        means[start:stop] = x[rng.integers(0, x.size, size=(stop - start, x.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(lo), float(hi)


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """``entry`` minus ``reference`` seed by seed at one budget (positive: the entry is better)."""

    entry: str
    reference: str
    budget: int
    n: int
    wins: int
    ties: int
    losses: int
    mean_diff: float
    ci_low: float
    ci_high: float
    verdict: str

    def to_json(self) -> dict[str, Any]:
        return _rounded_fields(self)


def paired_comparison(entry: str, reference: str, budget: int, values: dict[int, float], ref_values: dict[int, float],
                      *, resamples: int = 10_000, seed: int = 0) -> PairedComparison:
    """Compare two proposers on the seeds both have a finite value for. "better"/"worse" only when the bootstrap
    95% CI of the mean difference excludes 0."""
    seeds = sorted(s for s in set(values) & set(ref_values)
                   if math.isfinite(values[s]) and math.isfinite(ref_values[s]))
    d = np.array([values[s] - ref_values[s] for s in seeds], dtype=float)
    w, t, l = wins_ties_losses(d)
    if d.size < 2:
        return PairedComparison(entry, reference, budget, int(d.size), w, t, l,
                                float(d.mean()) if d.size else math.nan, math.nan, math.nan, TOO_FEW)
    lo, hi = bootstrap_ci(d, resamples=resamples, seed=seed)
    verdict = BETTER if lo > 0 else WORSE if hi < 0 else NO_DIFFERENCE
    return PairedComparison(entry, reference, budget, int(d.size), w, t, l, float(d.mean()), lo, hi, verdict)


def published_check(measured: Summary, mean: float, std: float, *, slack: float = 0.05) -> dict[str, Any]:
    """Whether a measured mean is within noise of a published one: |delta| < 3 std / sqrt(n) + slack, with n the
    measured seeds (the published mean's own error, over more seeds, is smaller and covered by the slack)."""
    delta = measured.mean - mean
    tol = 3.0 * std / math.sqrt(max(measured.n, 1)) + slack
    return {"published_mean": mean, "published_std": std, "delta": _round(delta), "tolerance": _round(tol),
            "within_noise": bool(abs(delta) < tol)}


def _rounded_fields(record: Any) -> dict[str, Any]:
    """A dataclass's fields as JSON, floats rounded."""
    return {k: _round(v) for k, v in dataclasses.asdict(record).items()}


def _round(v: Any, digits: int = 4) -> Any:
    if isinstance(v, float):
        return None if not math.isfinite(v) else round(v, digits)
    return v


class _quiet:
    """Silence numpy's "mean of empty slice" warnings for all-NaN columns."""

    def __enter__(self):
        import warnings

        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("ignore", category=RuntimeWarning)

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
