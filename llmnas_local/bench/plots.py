"""The benchmark's figures (matplotlib, Agg backend, PNG): best-so-far curves, distribution of evaluated cells."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from llmnas_local.bench.stats import band, curve_matrix

CURVES_PNG = "curves.png"
DISTRIBUTION_PNG = "distribution.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_curves(path: str | Path, curves: dict[str, Sequence[Sequence[float]]], max_budget: int, *,
                kind: str = "std", budgets: Sequence[int] = (), title: str = "",
                published: dict[str, dict[int, tuple[float, float, int]]] | None = None) -> Path:
    """Best-so-far test accuracy vs distinct evaluations: the mean over seeds with a band (±std or 95% CI), one line
    per entry; published means (± std) as error bars at their budgets."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.0, 4.5), dpi=120)
    x = np.arange(1, max_budget + 1)
    lows = []
    for i, (name, runs) in enumerate(curves.items()):
        m = curve_matrix(runs, max_budget)
        mean, lo, hi = band(m, kind)
        color = f"C{i}"
        ax.plot(x, mean, color=color, lw=1.6, label=f"{name} (n={len(runs)})")
        ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
        start = min(len(x) - 1, max(0, min(10, max_budget // 10)))
        if np.isfinite(lo[start:]).any():
            lows.append(np.nanmin(lo[start:]))
        for b, (pm, ps, _) in sorted((published or {}).get(name, {}).items()):
            if b <= max_budget:
                ax.errorbar([b], [pm], yerr=[ps], fmt="x", color=color, ms=7, capsize=3, alpha=0.9)
    if published:
        ax.plot([], [], "x", color="gray", label="published mean ± std")
    if max_budget >= 50:
        ax.set_xscale("log")
    for b in budgets:
        ax.axvline(b, color="gray", lw=0.5, ls=":")
    if lows:
        ymax = ax.get_ylim()[1]
        ax.set_ylim(bottom=min(lows) - 0.1 * (ymax - min(lows)), top=ymax)
    ax.set_xlabel("distinct evaluations (queries)")
    ax.set_ylabel("test accuracy of best-by-validation (%)")
    ax.set_title(textwrap.fill(title or "best so far", 80), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    band_text = "band: ±1 std over seeds" if kind == "std" else "band: 95% CI of the mean"
    ax.text(0.01, 0.99, band_text, transform=ax.transAxes, fontsize=7, va="top", color="gray")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path


def plot_distribution(path: str | Path, values: dict[str, Sequence[float]], *, title: str = "") -> Path:
    """Violin plot of the test accuracies of every evaluated cell, per entry (all seeds pooled), with quartiles."""
    plt = _pyplot()
    names = list(values)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(names) + 2), 4.5), dpi=120)
    data = [np.asarray(values[n], dtype=float) for n in names]
    data = [d[np.isfinite(d)] for d in data]
    pos = [i + 1 for i, d in enumerate(data) if d.size]
    if pos:
        parts = ax.violinplot([data[p - 1] for p in pos], positions=pos, showmedians=True, widths=0.8)
        for i, body in enumerate(parts["bodies"]):
            body.set_facecolor(f"C{pos[i] - 1}")
            body.set_alpha(0.45)
        for p in pos:
            q1, q3 = np.percentile(data[p - 1], [25, 75])
            ax.vlines(p, q1, q3, color="k", lw=3)
    ax.set_xticks(range(1, len(names) + 1), [f"{n}\n(n={d.size})" for n, d in zip(names, data)], fontsize=8)
    ax.set_ylabel("test accuracy of evaluated cells (%)")
    ax.set_title(textwrap.fill(title or "what each proposer evaluated", 60), fontsize=9)
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, format="png")
    plt.close(fig)
    return path
