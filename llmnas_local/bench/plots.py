"""The benchmark's figures (matplotlib, Agg backend, PNG): best-so-far curves, distribution of evaluated cells."""
from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Sequence

import numpy as np

from llmnas_local.bench.stats import LEVEL, band, curve_matrix

CURVES_PNG = "curves.png"
DISTRIBUTION_PNG = "distribution.png"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def band_label(kind: str, ns: Sequence[int], level: float = LEVEL) -> str:
    """What the band is, with the number of runs behind it (a range where entries or queries differ)."""
    ns = sorted({int(n) for n in ns if n > 0})
    n = "n=?" if not ns else f"n={ns[0]}" if len(ns) == 1 else f"n={ns[0]}-{ns[-1]}"
    if kind == "std":
        return f"band: ±1 std over seeds, {n}"
    return f"band: {level:.0%} t-interval of the mean (t quantile, n-1 df), {n}"


def plot_curves(path: str | Path, curves: dict[str, Sequence[Sequence[float]]], max_budget: int, *,
                kind: str = "std", budgets: Sequence[int] = (), title: str = "",
                published: dict[str, dict[int, tuple[float, float, int]]] | None = None) -> Path:
    """Best-so-far test accuracy vs distinct evaluations: the mean over seeds with a band (±std or the t-interval of
    the mean), one line per entry; published means (± std) as error bars at their budgets. Left: every query from the
    first, nothing clipped; right (budgets of 20 and more): the same from query ``max_budget // 10``, zoomed."""
    plt = _pyplot()
    zoom_from = max_budget // 10 if max_budget >= 20 else None
    fig, axes = plt.subplots(1, 2 if zoom_from else 1, figsize=(12.0 if zoom_from else 7.0, 4.5), dpi=120,
                             squeeze=False)
    axes = axes[0]
    x = np.arange(1, max_budget + 1)
    ns: list[int] = []
    zoomed: list[np.ndarray] = [np.array([np.nan])]     # what the zoom shows, for its y limits
    for i, (name, runs) in enumerate(curves.items()):
        mean, lo, hi, n = band(curve_matrix(runs, max_budget), kind)
        ns += [int(v) for v in n[np.isfinite(mean)]]
        zoomed += [lo[(zoom_from or 1) - 1:], hi[(zoom_from or 1) - 1:]]
        color, style = f"C{i % 10}", "-" if i < 10 else "--"      # 10 colours, then dashed
        for ax in axes:
            ax.plot(x, mean, color=color, ls=style, lw=1.6, label=f"{name} (n={len(runs)})")
            ax.fill_between(x, lo, hi, color=color, alpha=0.18, lw=0)
            for b, (pm, ps, _) in sorted((published or {}).get(name, {}).items()):
                if b <= max_budget:
                    ax.errorbar([b], [pm], yerr=[ps], fmt="x", color=color, ms=7, capsize=3, alpha=0.9)
                    if b >= (zoom_from or 1):
                        zoomed.append(np.array([pm - ps, pm + ps]))
    for k, ax in enumerate(axes):
        if k == 1:     # the zoom: x and y limits from the queries it shows
            ys = np.concatenate(zoomed)
            if np.isfinite(ys).any():
                lo_y, hi_y = float(np.nanmin(ys)), float(np.nanmax(ys))
                pad = 0.05 * max(hi_y - lo_y, 1e-3)
                ax.set_ylim(lo_y - pad, hi_y + pad)
            ax.set_xlim(zoom_from, max_budget)
            ax.set_title(f"zoom: queries {zoom_from}-{max_budget}", fontsize=9)
        elif max_budget >= 50:
            ax.set_xscale("log")
        for b in budgets:
            ax.axvline(b, color="gray", lw=0.5, ls=":")
        ax.set_xlabel("distinct evaluations (queries)")
        ax.grid(alpha=0.3)
    if published:
        axes[0].plot([], [], "x", color="gray", label="published mean ± std")
    axes[0].set_xlim(left=0.9)
    axes[0].set_ylabel("test accuracy of best-by-validation (%)")
    axes[0].legend(fontsize=8, loc="lower right")     # below the curves, which rise from query 1
    axes[0].text(0.01, 0.99, band_label(kind, ns), transform=axes[0].transAxes, fontsize=7, va="top", color="gray")
    fig.suptitle(textwrap.fill(title or "best so far", 100), fontsize=9)
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
