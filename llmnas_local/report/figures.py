"""The report's figures (matplotlib, Agg, PNG), each drawn from :class:`~llmnas_local.report.collect.ReportData`."""
from __future__ import annotations

from pathlib import Path

from llmnas_local.bench.plots import _pyplot          # matplotlib on the Agg backend, imported on use
from llmnas_local.records import FLOPS_M, PARAMS_M, VAL_ACC
from llmnas_local.report.collect import ReportData
from llmnas_local.report.pareto import pareto_front

STATUS_ORDER = ("complete", "invalid", "failed", "timeout", "duplicate")
MAX_LABELLED = 8          # runs drawn and labelled one by one; more are grouped by proposer
STATUS_COLORS = {"complete": "C2", "invalid": "C7", "failed": "C3", "timeout": "C1", "duplicate": "C0"}


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, format="png")
    _pyplot().close(fig)
    return path


def plot_best_so_far(data: ReportData, path: Path) -> Path:
    """Best validation accuracy among the first k distinct evaluations, and the test accuracy of that trial, per run
    (with many runs: the validation curves only, coloured by proposer)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    many = len(data.runs) > MAX_LABELLED
    for i, r in enumerate(data.runs):
        if not r.curve_val:
            continue
        x = range(1, len(r.curve_val) + 1)
        color = f"C{i % 10}"
        if many:         # one thin line per run, coloured by proposer, one legend entry per proposer
            proposers = sorted({q.run.proposer for q in data.runs})
            k = proposers.index(r.run.proposer)
            first = all(q.run.proposer != r.run.proposer for q in data.runs[:i])
            ax.step(x, r.curve_val, where="post", color=f"C{k % 10}", lw=0.8, alpha=0.5,
                    label=f"{r.run.proposer}: val ({sum(q.run.proposer == r.run.proposer for q in data.runs)} runs)"
                    if first else None)
            continue
        ax.step(x, r.curve_val, where="post", color=color, lw=1.8, label=f"{r.run.run_id}: val")
        ax.step(x, r.curve_test, where="post", color=color, lw=1.2, ls="--", label=f"{r.run.run_id}: test of best-by-val")
    ax.set_xlabel("distinct evaluations")
    ax.set_ylabel("accuracy (%)")
    ax.set_title("best so far (selection by validation accuracy)", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no completed evaluation", ha="center", va="center", transform=ax.transAxes)
    return _save(fig, path)


def plot_pareto(data: ReportData, path: Path) -> Path:
    """Validation accuracy against parameters and against FLOPs; the Pareto front of each marked and joined."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 4.2), dpi=110)
    for ax, size, label in ((axes[0], PARAMS_M, "parameters (M)"), (axes[1], FLOPS_M, "FLOPs per image (M)")):
        pts = [t for t in data.archs if size in t.metrics]
        if pts:
            ax.scatter([t.metrics[size] for t in pts], [t.metrics[VAL_ACC] for t in pts], s=18, color="C0",
                       alpha=0.6, label=f"completed architectures ({len(pts)})")
            front = pareto_front(pts, lambda t: t.metrics[VAL_ACC], lambda t: t.metrics[size])
            ax.plot([t.metrics[size] for t in front], [t.metrics[VAL_ACC] for t in front], "-o", color="C3",
                    ms=6, lw=1.4, label=f"Pareto front ({len(front)})", drawstyle="steps-post")
            trained = [t for t in pts if t.arch_hash in data.finals]
            if trained:
                ax.scatter([t.metrics[size] for t in trained],
                           [max(f.metrics[VAL_ACC] for f in data.finals[t.arch_hash]) for t in trained],
                           marker="*", s=120, color="C2", label="final training (val)", zorder=3)
            if max(t.metrics[size] for t in pts) > 20 * max(min(t.metrics[size] for t in pts), 1e-9):
                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(plt.NullFormatter())
            ax.legend(fontsize=7, loc="best")
        else:
            ax.text(0.5, 0.5, "no completed evaluation", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(label)
        ax.set_ylabel("validation accuracy (%)")
        ax.grid(alpha=0.3)
    fig.suptitle("accuracy against size (front: no other architecture is more accurate and smaller)", fontsize=10)
    return _save(fig, path)


def plot_outcomes(data: ReportData, path: Path) -> Path:
    """Trials by outcome, per run (per proposer when there are many runs), as stacked bars."""
    plt = _pyplot()
    groups: dict[str, list] = {}          # a bar per run, or per proposer when there are many runs
    many = len(data.runs) > MAX_LABELLED
    for r in data.runs:
        groups.setdefault(f"{r.run.proposer} ({sum(q.run.proposer == r.run.proposer for q in data.runs)} runs)"
                          if many else r.run.run_id, []).append(r)
    fig, ax = plt.subplots(figsize=(max(5.0, 1.2 * len(groups) + 3), 4.0), dpi=110)
    bottom = [0] * len(groups)
    for status in STATUS_ORDER:
        values = [sum(r.counts.get(status, 0) for r in rs) for rs in groups.values()]
        if any(values):
            ax.bar(range(len(groups)), values, bottom=bottom, color=STATUS_COLORS[status],
                   label=f"{status} ({sum(values)})")
            bottom = [b + v for b, v in zip(bottom, values)]
    ax.set_xticks(range(len(groups)), list(groups), fontsize=7, rotation=15)
    ax.set_ylabel("trials")
    ax.set_title("outcomes of the proposals", fontsize=10)
    if any(bottom):
        ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def plot_llm_calls(data: ReportData, path: Path) -> Path:
    """Per model call: generated tokens and seconds, in call order."""
    plt = _pyplot()
    calls = data.calls
    fig, axes = plt.subplots(1, 2, figsize=(11.0, 3.8), dpi=110)
    x = range(1, len(calls) + 1)
    axes[0].bar(x, [c.tokens_out for c in calls], color="C0", label="generated")
    axes[0].bar(x, [c.tokens_in for c in calls], bottom=[c.tokens_out for c in calls], color="C7", alpha=0.6,
                label="prompt")
    axes[0].set_ylabel("tokens")
    axes[0].legend(fontsize=7)
    axes[1].bar(x, [c.seconds for c in calls], color="C1")
    axes[1].set_ylabel("seconds")
    for ax in axes:
        ax.set_xlabel("model call")
        ax.grid(alpha=0.3, axis="y")
    fig.suptitle(f"the LLM's calls ({len(calls)}; {sum(c.tokens_out for c in calls)} tokens generated, "
                 f"{sum(c.seconds for c in calls):.0f} s)", fontsize=10)
    return _save(fig, path)

