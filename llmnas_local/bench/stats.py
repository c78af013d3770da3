"""Statistics of a benchmark: curves over seeds, summaries at a budget, paired comparisons of seed-paired means.

Pure functions of numpy arrays; NaN marks a missing value (a run that stopped before the budget, or had no
completed evaluation yet). A paired comparison is a t-interval of the mean paired difference with its two-sided
p-value (paired t-test); the verdicts of a table's comparisons are Holm-adjusted over that table (:func:`holm`).
scipy is imported when a quantile is needed, not with the module.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

TIE_ATOL = 1e-9
LEVEL = 0.95            # of the t-intervals (table and plot bands)
ALPHA = 0.05            # family-wise error rate of a table's Holm-adjusted verdicts
BETTER, WORSE, TIE, TOO_FEW = "better", "worse", "tie", "too few seeds"


@dataclasses.dataclass(frozen=True)
class Summary:
    """Mean, sample standard deviation (ddof=1) and the half-width of the 95% t-interval of the mean (t quantile with
    n-1 degrees of freedom; NaN when n < 2), over ``n`` values."""

    n: int
    mean: float
    std: float
    ci95: float
    median: float
    min: float
    max: float

    def to_json(self) -> dict[str, Any]:
        return _rounded_fields(self)


def t_quantile(df: np.ndarray | float, level: float = LEVEL) -> np.ndarray | float:
    """The two-sided ``level`` quantile of Student's t with ``df`` degrees of freedom (NaN where df < 1)."""
    from scipy.stats import t

    df = np.asarray(df, dtype=float)
    with np.errstate(invalid="ignore"):
        q = np.where(df >= 1, t.ppf(0.5 + level / 2.0, np.maximum(df, 1.0)), np.nan)
    return float(q) if q.ndim == 0 else q


def summarize(values: Sequence[float]) -> Summary:
    """Summary of the finite values (NaNs are dropped: ``n`` says how many were left)."""
    x = np.asarray(values, dtype=float)
    x = x[np.isfinite(x)]
    n = int(x.size)
    if n == 0:
        return Summary(0, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan)
    std = float(x.std(ddof=1)) if n > 1 else 0.0
    half = t_quantile(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return Summary(n, float(x.mean()), std, half, float(np.median(x)), float(x.min()), float(x.max()))


def curve_matrix(curves: Sequence[Sequence[float]], length: int) -> np.ndarray:
    """Stack per-run curves into a (runs, length) array, padding short ones with NaN and cutting long ones."""
    out = np.full((len(curves), length), np.nan)
    for i, c in enumerate(curves):
        c = np.asarray(c, dtype=float)[:length]
        out[i, : c.size] = c
    return out


def band(matrix: np.ndarray, kind: str = "std", level: float = LEVEL
         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per column: mean, the lower/upper edge of the band and the number of runs ``n`` behind it. ``kind`` "std":
    mean ± std (ddof=1); "ci95": the ``level`` t-interval of the mean, t quantile with n-1 degrees of freedom (no band
    where n < 2)."""
    with np.errstate(invalid="ignore"), _quiet():
        n = np.sum(np.isfinite(matrix), axis=0)
        mean = np.nanmean(matrix, axis=0)
        std = np.where(n > 1, np.nanstd(matrix, axis=0, ddof=1), 0.0)
        half = std if kind == "std" else np.where(n > 1, t_quantile(n - 1, level) * std / np.sqrt(np.maximum(n, 1)),
                                                  0.0)
    return mean, mean - half, mean + half, n


def wins_ties_losses(diff: Sequence[float], atol: float = TIE_ATOL) -> tuple[int, int, int]:
    d = np.asarray(diff, dtype=float)
    return int(np.sum(d > atol)), int(np.sum(np.abs(d) <= atol)), int(np.sum(d < -atol))


def paired_t(diff: Sequence[float], level: float = LEVEL) -> tuple[float, float, float, float]:
    """Mean of the paired differences, its ``level`` t-interval (mean ± t_{n-1} sd / sqrt(n)) and the two-sided p-value
    of the paired t-test of mean 0. With no spread the interval is the mean itself and p is 1 (mean 0) or 0.
    NaNs when fewer than 2 differences."""
    from scipy.stats import t

    d = np.asarray(diff, dtype=float)
    n = d.size
    if n < 2:
        return (float(d.mean()) if n else math.nan), math.nan, math.nan, math.nan
    mean, se = float(d.mean()), float(d.std(ddof=1)) / math.sqrt(n)
    if se <= TIE_ATOL:
        return mean, mean, mean, 1.0 if abs(mean) <= TIE_ATOL else 0.0
    half = t_quantile(n - 1, level) * se
    return mean, mean - half, mean + half, float(2.0 * t.sf(abs(mean) / se, n - 1))


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in input order. NaNs (comparisons without a p-value) stay NaN and are not
    counted in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.size, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = idx.size
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


@dataclasses.dataclass(frozen=True)
class PairedComparison:
    """``entry`` minus ``reference`` seed by seed at one budget (positive: the entry is better). ``ci_low``/``ci_high``:
    the 95% t-interval of the mean difference, for this comparison alone; ``p_value``: the paired t-test's;
    ``p_holm``: adjusted over the comparison's family (:func:`holm_verdicts`), and ``verdict`` from it."""

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
    p_value: float
    p_holm: float = math.nan
    family: int = 1
    verdict: str = TOO_FEW

    def to_json(self) -> dict[str, Any]:
        return _rounded_fields(self) | {"p_value": _round(self.p_value, 6), "p_holm": _round(self.p_holm, 6)}


def paired_comparison(entry: str, reference: str, budget: int, values: dict[int, float],
                      ref_values: dict[int, float]) -> PairedComparison:
    """Compare two proposers on the seeds both have a finite value for. Alone (a family of one), "better"/"worse"
    where p < 0.05; :func:`holm_verdicts` adjusts the verdicts of a family."""
    seeds = sorted(s for s in set(values) & set(ref_values)
                   if math.isfinite(values[s]) and math.isfinite(ref_values[s]))
    d = np.array([values[s] - ref_values[s] for s in seeds], dtype=float)
    wins, ties, losses = wins_ties_losses(d)
    mean, lo, hi, p = paired_t(d)
    c = PairedComparison(entry, reference, budget, int(d.size), wins, ties, losses, mean, lo, hi, p)
    return holm_verdicts([c])[0]


def holm_verdicts(comps: Sequence[PairedComparison], alpha: float = ALPHA) -> list[PairedComparison]:
    """The comparisons with Holm-adjusted p-values over all of them that have one (the family) and their verdicts:
    "better"/"worse" (by the sign of the mean difference) where the adjusted p < ``alpha``, else "tie"; "too few
    seeds" where n < 2."""
    adjusted = holm([c.p_value for c in comps])
    family = sum(math.isfinite(p) for p in adjusted)
    out = []
    for c, q in zip(comps, adjusted):
        verdict = TOO_FEW if not math.isfinite(q) else TIE if q >= alpha else BETTER if c.mean_diff > 0 else WORSE
        out.append(dataclasses.replace(c, p_holm=q, family=family, verdict=verdict))
    return out


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
