"""``llmnas report``: a page a person reads about a search. :func:`write_report` writes ``index.html`` (self-contained)
and its figures as PNG files into a folder. matplotlib is imported on use."""
from __future__ import annotations

from pathlib import Path

from llmnas_local.report.collect import ReportData, collect
from llmnas_local.report.pareto import pareto_front
from llmnas_local.store.base import BaseStore

INDEX = "index.html"
FIGURES = {"best": "best_so_far.png", "pareto": "accuracy_vs_size.png", "outcomes": "outcomes.png",
           "llm": "llm_calls.png"}


def write_report(store: BaseStore, out: str | Path, run_id: str | None = None, source: str = "") -> Path:
    """Write the report of ``run_id`` (every run when None) of ``store`` into ``out``; return the page's path."""
    from llmnas_local.report.figures import plot_best_so_far, plot_llm_calls, plot_outcomes, plot_pareto
    from llmnas_local.report.html import render_page

    data = collect(store, run_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {"best": plot_best_so_far(data, out / FIGURES["best"]),
               "pareto": plot_pareto(data, out / FIGURES["pareto"]),
               "outcomes": plot_outcomes(data, out / FIGURES["outcomes"])}
    if data.calls:
        figures["llm"] = plot_llm_calls(data, out / FIGURES["llm"])
    title = f"Search report: {run_id}" if run_id else f"Search report: {len(data.runs)} run(s)"
    page = out / INDEX
    page.write_text(render_page(data, figures, title, source or str(getattr(store, "path", "memory store"))),
                    encoding="utf-8")
    return page


__all__ = ["INDEX", "ReportData", "collect", "pareto_front", "write_report"]
