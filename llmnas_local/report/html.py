"""The report page: one self-contained HTML file (figures embedded as PNG data URIs, styles inline, no script or
font from anywhere else) beside the same PNGs as files. A small inline script records, once the page has loaded, how
many of its images decoded (``<body data-images-loaded="N/M">``), for a headless browser to check."""
from __future__ import annotations

import base64
import html
import time
from pathlib import Path

from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC
from llmnas_local.report.collect import ReportData

LEADERBOARD_ROWS = 20
DIAGNOSES_SHOWN = 20

_STYLE = """body{font-family:sans-serif;margin:2em auto;max-width:1150px;color:#222}
table{border-collapse:collapse;font-size:13px;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 7px;text-align:right}
td.t,th.t{text-align:left;font-family:monospace;font-size:12px}img{max-width:100%;border:1px solid #eee}
.note{color:#666;font-size:13px}"""
_LOADED = """<script>window.addEventListener("load",function(){var i=Array.prototype.slice.call(document.images);
document.body.setAttribute("data-images-loaded",i.filter(function(x){return x.complete&&x.naturalWidth>0}).length+"/"+
i.length)})</script>"""


def _e(v: object) -> str:
    return html.escape(str(v))


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode()
    return f'<p><img src="data:image/png;base64,{data}" alt="{_e(alt)}" title="{_e(path.name)}"></p>'


def _leaderboard(data: ReportData) -> str:
    rows = []
    for i, t in enumerate(data.archs[:LEADERBOARD_ROWS], 1):
        m = t.metrics
        finals = data.finals.get(t.arch_hash, [])
        f = max(finals, key=lambda r: r.metrics.get(VAL_ACC, -1.0)) if finals else None
        final = (f"{_pct(f.metrics.get(VAL_ACC))}</td><td>{_pct(f.metrics.get(TEST_ACC))}</td><td>"
                 f"{len(f.history)}" if f else "-</td><td>-</td><td>-")
        rows.append(f"<tr><td>{i}</td><td>{_pct(m.get(VAL_ACC))}</td><td>{_pct(m.get(TEST_ACC))}</td>"
                    f"<td>{final}</td><td>{m.get(PARAMS_M, 0):.4f}</td><td>{m.get(FLOPS_M, 0):.1f}</td>"
                    f"<td class=t>{_e(t.arch_hash[:12])}</td><td class=t>{_e(t.canonical)}</td></tr>")
    head = ("<tr><th>#</th><th>val_acc</th><th>test_acc</th><th>final val</th><th>final test</th><th>epochs</th>"
            "<th>params M</th><th>FLOPs M</th><th class=t>hash</th><th class=t>architecture</th></tr>")
    return f"<table>{head}{''.join(rows)}</table>" if rows else "<p>No architecture completed an evaluation.</p>"


def _calls_table(data: ReportData) -> str:
    with_diag = [c for c in data.calls if c.diagnoses][-DIAGNOSES_SHOWN:]
    if not with_diag:
        return "<p class=note>No call recorded a diagnosis.</p>"
    rows = []
    for c in with_diag:
        diag = "<br>".join(_e("; ".join(f"{k}: {v}" for k, v in sorted(d.items()))) for d in c.diagnoses)
        rows.append(f"<tr><td>{_e(c.run_id)}</td><td>{c.first_seq}</td><td>{c.tokens_in}</td><td>{c.tokens_out}</td>"
                    f"<td>{c.seconds:.1f}</td><td class=t>{_e(', '.join(c.statuses))}</td><td class=t>{diag}</td></tr>")
    return ("<table><tr><th>run</th><th>first trial</th><th>tokens in</th><th>tokens out</th><th>s</th>"
            "<th class=t>outcomes</th><th class=t>diagnosis</th></tr>" + "".join(rows) + "</table>")


def _llm_summary(llm: dict[str, float]) -> str:
    n, total = int(llm["proposals"]), llm["propose_s"] + llm["eval_s"]
    share = (f"; wall time proposing {llm['propose_s']:.0f} s ({100 * llm['propose_s'] / total:.0f}%), evaluating "
             f"{llm['eval_s']:.0f} s" if total > 0 else "")
    return (f"<p>{n} proposals; finished completions that parse: {int(llm['parsed'])}/{int(llm['finished'])}; "
            f"cut off by the token limit: {int(llm['cut_off'])}; rejected on meaning: {int(llm['rejected'])}; repeats (never "
            f"trained again): {int(llm['duplicates'])}; {llm['tokens_per_proposal']:.1f} generated tokens per "
            f"proposal; decoded under the prefix guard: {int(llm['prefix_guard'])}/{n}{share}.</p>")


def render_page(data: ReportData, figures: dict[str, Path], title: str, source: str) -> str:
    """The page's HTML. ``figures``: name -> PNG (best, pareto, outcomes and, with LLM calls, llm)."""
    counts = data.counts
    runs = "".join(f"<tr><td class=t>{_e(r.run.run_id)}</td><td class=t>{_e(r.run.space)}</td>"
                   f"<td class=t>{_e(r.run.proposer)}</td><td>{r.run.seed}</td><td>{r.trials}</td>"
                   f"<td>{len(r.curve_val)}</td><td>{_pct(r.curve_val[-1] if r.curve_val else None)}</td>"
                   f"<td>{_pct(r.curve_test[-1] if r.curve_test else None)}</td></tr>" for r in data.runs)
    parts = [
        f"<!DOCTYPE html><html lang=en><head><meta charset=utf-8><title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body>{_LOADED}",
        f"<h1>{_e(title)}</h1><p class=note>Store {_e(source)}; written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}."
        f" Architectures are selected by validation accuracy; test accuracy is shown, never used to select.</p>",
        "<h2>Runs</h2><table><tr><th class=t>run</th><th class=t>space</th><th class=t>proposer</th><th>seed</th>"
        f"<th>trials</th><th>evaluations</th><th>best val</th><th>its test</th></tr>{runs}</table>",
        "<h2>Best so far</h2>", _img(figures["best"], "best-so-far curve"),
        "<h2>Accuracy against size</h2>", _img(figures["pareto"], "accuracy against parameters and FLOPs"),
        "<h2>Outcomes</h2><p>" + ", ".join(f"{_e(k)} {v}" for k, v in counts.items()) + "</p>",
        _img(figures["outcomes"], "outcomes by status"),
    ]
    if "llm" in figures:
        parts += ["<h2>The LLM's calls</h2>", _llm_summary(data.llm),
                  _img(figures["llm"], "LLM calls: tokens and seconds"), _calls_table(data)]
    parts += [f"<h2>Leaderboard</h2><p class=note>The best {LEADERBOARD_ROWS} distinct architectures by validation "
              "accuracy (of the search's proxy training); final: <code>llmnas train</code>, its best epoch by "
              "validation.</p>", _leaderboard(data), "</body></html>"]
    return "\n".join(parts) + "\n"
