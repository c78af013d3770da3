"""The benchmark's report: ``results.json`` (everything, per-seed curves included), ``table.md`` (the main table,
published numbers when the grid gives them, paired comparisons), the plots and ``provenance.json``.

The protocol of the table: at budget b, each run's answer is the trial with the best validation accuracy among its
first b distinct evaluations, and the table reports that trial's test accuracy, mean ± std (ddof=1) over seeds.
"""
from __future__ import annotations

import collections
import hashlib
import json
import math
import re
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from llmnas_local.bench.config import BenchConfig, is_tabular
from llmnas_local.bench.plots import CURVES_PNG, DISTRIBUTION_PNG, plot_curves, plot_distribution
from llmnas_local.bench.runner import RunData
from llmnas_local.bench.stats import ALPHA, LEVEL, holm_verdicts, paired_comparison, published_check, summarize

TABLE_MD = "table.md"
RESULTS_JSON = "results.json"
PROVENANCE_JSON = "provenance.json"


def _value_at(run: RunData, budget: int) -> float:
    return run.curve_test[budget - 1] if len(run.curve_test) >= budget else math.nan


def entry_results(config: BenchConfig, runs: Sequence[RunData]) -> dict[str, dict[str, Any]]:
    """Per entry: summaries at each budget, rates and costs."""
    by_entry: dict[str, list[RunData]] = collections.defaultdict(list)
    for r in runs:
        by_entry[r.entry].append(r)
    out = {}
    for entry in config.entries:
        rs = by_entry.get(entry.name, [])
        trials = sum(r.n_trials for r in rs)
        evals = sum(r.n_evaluated for r in rs)
        counts = collections.Counter()
        for r in rs:
            counts.update(r.counts)
        tested = np.concatenate([np.asarray(r.evaluated_test, dtype=float) for r in rs]) if rs else np.array([])
        walls = [r.wall_s for r in rs if r.wall_s is not None]
        uses_llm = entry.uses_llm or any(r.llm_tokens or r.llm_s for r in rs)
        res: dict[str, Any] = {
            "proposer": entry.proposer, "settings": entry.settings, "runs": len(rs),
            "stalled_runs": sum(r.stalled is not None for r in rs),
            "incomplete_runs": sum(r.incomplete for r in rs),
            "at_budget": {str(b): summarize([_value_at(r, b) for r in rs]).to_json() for b in config.report_budgets},
            "trials": trials, "distinct_evaluations": evals, "status_counts": dict(counts),
            "answered_from_store": sum(r.from_store for r in rs),
            "uses_llm": uses_llm,
            "proposals_per_100_evals": _ratio(100 * trials, evals),
            "llm_s_per_100_evals": _ratio(100 * sum(r.llm_s for r in rs), evals) if uses_llm else None,
            "valid_rate": _ratio(trials - counts.get("invalid", 0), trials),
            "duplicate_rate": _ratio(counts.get("duplicate", 0), trials),
            "llm_tokens_per_eval": _ratio(sum(r.llm_tokens for r in rs), evals),
            "llm_s_per_eval": _ratio(sum(r.llm_s for r in rs), evals),
            "propose_s_per_eval": _ratio(sum(r.propose_s for r in rs), evals),
            "wall_s_per_run": summarize(walls).to_json() if walls else None,
            "evaluated_test_acc": _distribution(tested),
        }
        if entry.name in config.published:
            res["published"] = {str(b): published_check(summarize([_value_at(r, b) for r in rs]), m, s) | {
                "published_seeds": n} for b, (m, s, n) in sorted(config.published[entry.name].items())
                if b <= config.max_budget}
        out[entry.name] = res
    return out


def comparisons(config: BenchConfig, runs: Sequence[RunData]) -> list[dict[str, Any]]:
    """Paired comparisons of every other entry at every budget with each reference; the comparisons with one
    reference (one table) are one Holm family."""
    values: dict[str, dict[int, dict[int, float]]] = collections.defaultdict(lambda: collections.defaultdict(dict))
    for r in runs:
        for b in config.report_budgets:
            values[r.entry][b][r.seed] = _value_at(r, b)
    out = []
    for reference in config.references:
        family = [paired_comparison(entry.name, reference, b, values[entry.name][b], values[reference][b])
                  for entry in config.entries if entry.name != reference for b in config.report_budgets]
        out += [c.to_json() for c in holm_verdicts(family, ALPHA)]
    return out


def _distribution(x: np.ndarray) -> dict[str, Any]:
    x = x[np.isfinite(x)]
    if x.size == 0:
        return {"n": 0}
    counts, edges = np.histogram(x, bins=np.arange(0.0, 100.0 + 1e-9, 1.0))
    q = np.percentile(x, [5, 25, 50, 75, 95])
    quantiles = {k: round(float(v), 4) for k, v in zip(("p5", "p25", "p50", "p75", "p95"), q)}
    return {"n": int(x.size), "mean": round(float(x.mean()), 4), "quantiles": quantiles,
            "histogram_1pt": {"edges_from": 0.0, "counts": counts.tolist()}}


def _ratio(a: float, b: float) -> float | None:
    return None if not b else round(a / b, 6)


# -- Markdown ---------------------------------------------------------------------------------------------------------
def _pm(s: dict[str, Any]) -> str:
    if not s or s.get("n", 0) == 0 or s.get("mean") is None:
        return "-"
    return f"{s['mean']:.2f} ± {s['std']:.2f}"


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def _p(v: float | None) -> str:
    return "-" if v is None else "<0.001" if v < 0.001 else f"{v:.3f}"


def render_table(config: BenchConfig, protocol: dict[str, Any], entries: dict[str, dict[str, Any]],
                 comps: list[dict[str, Any]]) -> str:
    budgets = config.report_budgets
    lines = [f"# Benchmark `{config.name}`", ""]
    sel, rep = protocol.get("select_by_column") or protocol["select_by"], protocol.get("report_column") or \
        protocol["report"]
    recipe = protocol.get("recipe", {})
    data = config.space.data
    if isinstance(data, dict):
        data = f"{data.get('source', 'digits')}" + "".join(f", {k} {v}" for k, v in data.items() if k != "source")
    where = (f"{config.space.name}, table preset `{recipe.get('preset')}`" if is_tabular(config.space.name)
             else f"{config.space.name} on `{data}`, {recipe.get('epochs')} epoch(s) of training")
    seeds = config.seeds
    if len(seeds) == 1:
        seed_text = f"seed {seeds[0]}"
    elif list(seeds) == list(range(seeds[0], seeds[-1] + 1)):
        seed_text = f"seeds {seeds[0]}-{seeds[-1]}"
    else:
        seed_text = "seeds " + ",".join(map(str, seeds))
    lines += [
        f"{where}. Each run selects by `{sel}` and reports the `{rep}` of the selected architecture: at budget b, the "
        f"best-by-validation among its first b distinct evaluations (a query is "
        f"{protocol.get('query', 'a distinct architecture')}). "
        f"Mean ± std (ddof=1) over {len(seeds)} run(s) ({seed_text}); test accuracy in %.", ""]
    head = ["proposer", "seeds", *[f"{b}" for b in budgets], "proposals / 100 evals", "model s / 100 evals",
            "valid %", "duplicate %", "LLM tokens / eval", "wall s / run"]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, e in entries.items():
        wall = e["wall_s_per_run"]
        notes = [f"{e[k]} {w}" for k, w in (("stalled_runs", "stalled"), ("incomplete_runs", "unfinished")) if e[k]]
        row = [name, str(e["runs"]) + (f" ({', '.join(notes)})" if notes else ""),
               *[_pm(e["at_budget"][str(b)]) for b in budgets],
               _num(e["proposals_per_100_evals"], ".0f"), _num(e["llm_s_per_100_evals"], ".1f"),
               _num(None if e["valid_rate"] is None else 100 * e["valid_rate"], ".1f"),
               _num(None if e["duplicate_rate"] is None else 100 * e["duplicate_rate"], ".1f"),
               _num(e["llm_tokens_per_eval"] if e["uses_llm"] else None, ".0f"),
               "-" if wall is None else f"{wall['mean']:.2f}"]
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "Proposals / 100 evals: every proposal the search received (repeats of architectures the run had "
              "already evaluated and invalid ones included) per 100 distinct evaluations, all seeds pooled. Model s / "
              "100 evals: seconds inside the model's calls (generator and improver) per 100 distinct evaluations; "
              "\"-\" for a proposer without a model. Valid %: proposals that parsed and passed the checks, of all "
              "proposals. Duplicate %: proposals of an architecture the run had already evaluated (not counted), of "
              "all proposals. LLM tokens are per distinct evaluation (prompt + completion, generator and improver). "
              "Wall s / run: this run's own time; an architecture another run of the benchmark had already evaluated "
              "is answered from the shared store at no cost."]
    published = {n: e["published"] for n, e in entries.items() if "published" in e}
    if published:
        lines += ["", "## Against the published numbers", "",
                  "Within noise: |measured - published| < 3 x published std / sqrt(seeds) + 0.05.", ""]
        head = ["proposer", "queries", "measured", "published", "delta", "tolerance", "within noise"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for name, rows in published.items():
            for b, p in rows.items():
                m = entries[name]["at_budget"][b]
                lines.append(f"| {name} | {b} | {_pm(m)} | {p['published_mean']:.2f} ± {p['published_std']:.2f} "
                             f"(n={p['published_seeds']}) | {p['delta']:+.2f} | {p['tolerance']:.2f} | "
                             f"{'yes' if p['within_noise'] else '**no**'} |")
    for reference in config.references:
        rows = [c for c in comps if c["reference"] == reference]
        if not rows:
            continue
        family = max(c.get("family", 1) for c in rows)
        lines += ["", f"## Paired comparisons against `{reference}` (a family of {family} comparisons, Holm)", "",
                  f"Seed by seed (the same seed for both proposers), difference = proposer - {reference} in test "
                  f"accuracy points; n: the seeds both have. {LEVEL:.0%} t-interval of the mean difference "
                  f"(t quantile with n-1 degrees of freedom), for each comparison alone; p: two-sided paired t-test. "
                  f"Verdict: the {family} comparisons of this table (every other entry at every budget) are one "
                  f"family, Holm-adjusted (Holm p): \"better\" / \"worse\" where Holm p < {ALPHA} (family-wise "
                  f"error {ALPHA}), else \"tie\" (no difference shown, not equality).", ""]
        head = ["proposer", "queries", "n", "wins / ties / losses", "mean diff", f"{LEVEL:.0%} t-interval", "p",
                "Holm p", "verdict"]
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in rows:
            ci = "n < 2: no interval" if c["ci_low"] is None else f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
            md = "-" if c["mean_diff"] is None else f"{c['mean_diff']:+.3f}"
            lines.append(f"| {c['entry']} | {c['budget']} | {c['n']} | {c['wins']} / {c['ties']} / {c['losses']} | "
                         f"{md} | {ci} | {_p(c.get('p_value'))} | {_p(c.get('p_holm'))} | {c['verdict']} |")
    stalled = {n: e["stalled_runs"] for n, e in entries.items() if e["stalled_runs"]}
    if stalled:
        lines += ["", "Stalled runs (" + ", ".join(f"{n}: {k}" for n, k in stalled.items()) + ") stopped before "
                  f"{config.max_budget} evaluations because the proposer offered only architectures the run already "
                  "knew (or invalid ones) many times in a row; they keep their best (at budget b: the best among "
                  "their first min(b, n) evaluations)."]
    unfinished = {n: e["incomplete_runs"] for n, e in entries.items() if e["incomplete_runs"]}
    if unfinished:
        lines += ["", "Unfinished runs (" + ", ".join(f"{n}: {k}" for n, k in unfinished.items()) + ") were "
                  "interrupted: the budgets they did not reach are left out of the means (run again to finish them)."]
    lines += ["", f"Figures: [{CURVES_PNG}]({CURVES_PNG}), [{DISTRIBUTION_PNG}]({DISTRIBUTION_PNG}). Everything, with "
              f"per-seed curves: [{RESULTS_JSON}]({RESULTS_JSON}); code, versions, machine and file hashes: "
              f"[{PROVENANCE_JSON}]({PROVENANCE_JSON}).", ""]
    return "\n".join(lines)


# -- writing ----------------------------------------------------------------------------------------------------------
def write_report(config: BenchConfig, runs: Sequence[RunData], out_dir: str | Path, protocol: dict[str, Any], *,
                 run_settings: dict[str, dict[str, Any]] | None = None, timings: dict[str, Any] | None = None,
                 models: Sequence[str] = (), provenance: bool = True,
                 grid: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write every report file into ``out_dir``; returns their paths by kind. ``grid``: the grid as recorded, when
    the report is rebuilt (default ``config.to_json()``)."""
    from llmnas_local.bench.provenance import collect_provenance

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries = entry_results(config, runs)
    comps = comparisons(config, runs)
    results = {"name": config.name, "grid": grid or config.to_json(), "protocol": protocol, "entries": entries,
               "comparisons": comps, "timings": timings or {},
               "runs": [r.to_json() for r in runs]}
    paths = {"results": out / RESULTS_JSON, "table": out / TABLE_MD, "curves": out / CURVES_PNG,
             "distribution": out / DISTRIBUTION_PNG}
    _write_text(paths["results"], dump_json(results))
    _write_text(paths["table"], render_table(config, protocol, entries, comps))
    curves = {e.name: [r.curve_test for r in runs if r.entry == e.name] for e in config.entries}
    title = f"{config.name}: {protocol.get('report_column') or protocol['report']} of best-by-validation"
    plot_curves(paths["curves"], curves, config.max_budget, kind=config.band, budgets=config.report_budgets,
                title=title, published=config.published)
    plot_distribution(paths["distribution"], {e.name: [v for r in runs if r.entry == e.name for v in r.evaluated_test]
                                              for e in config.entries},
                      title=f"{config.name}: test accuracy of every evaluated architecture (all seeds)")
    if provenance:
        models = sorted({str(s["model"]) for s in (run_settings or {}).values() if s.get("model")} | set(models))
        extra = {"table_md_sha256": hashlib.sha256(paths["table"].read_bytes()).hexdigest(),
                 "results_json_sha256": hashlib.sha256(paths["results"].read_bytes()).hexdigest(),
                 "protocol": protocol}
        prov = collect_provenance(config.to_json(), table=config.space.table if is_tabular(config.space.name) else None,
                                  models=models, extra=extra)
        paths["provenance"] = out / PROVENANCE_JSON
        _write_text(paths["provenance"], dump_json(prov))
    return paths


def rebuild_report(out_dir: str | Path) -> dict[str, Path]:
    """Write the report of ``out_dir`` again from its ``results.json`` (the grid, protocol and per-run data it
    recorded), running nothing: for a change of the statistics or the figures. ``provenance.json`` keeps what it says
    of the runs (code, machine, models); its hashes of the new files are updated and ``report_rebuilt`` says when
    and by which code the report was rewritten."""
    from llmnas_local.bench.config import config_from_dict
    from llmnas_local.bench.provenance import git_info, package_versions

    out = Path(out_dir)
    try:
        recorded = json.loads((out / RESULTS_JSON).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(f"{out / RESULTS_JSON}: no results to rebuild the report from") from None
    config = config_from_dict(recorded["grid"])
    runs = [RunData(**{k: [math.nan if v is None else v for v in r[k]] if k in _CURVES else r[k] for k in r})
            for r in recorded["runs"]]
    paths = write_report(config, runs, out, recorded["protocol"], timings=recorded.get("timings"), provenance=False,
                         grid=recorded["grid"])
    prov_path = out / PROVENANCE_JSON
    if prov_path.exists():
        prov = json.loads(prov_path.read_text())
        prov["table_md_sha256"] = hashlib.sha256(paths["table"].read_bytes()).hexdigest()
        prov["results_json_sha256"] = hashlib.sha256(paths["results"].read_bytes()).hexdigest()
        prov["report_rebuilt"] = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_info(),
                                  "packages": package_versions(("numpy", "scipy", "matplotlib")),
                                  "from": RESULTS_JSON}
        _write_text(prov_path, dump_json(prov))
        paths["provenance"] = prov_path
    return paths


_CURVES = ("curve_test", "curve_val", "evaluated_test")


_NUMBER_LIST = re.compile(r"\[\s*((?:-?[0-9.e+-]+|null|true|false)(?:,\s*(?:-?[0-9.e+-]+|null|true|false))*)\s*\]")


def dump_json(obj: Any) -> str:
    """Indented JSON with lists of scalars on one line (curves stay one line each); NaN written as null."""
    text = json.dumps(_clean(obj), indent=1, allow_nan=False)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(x.strip() for x in m.group(1).split(",")) + "]", text) + "\n"


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def _clean(obj: Any) -> Any:
    """JSON-safe: NaN/inf -> None, numpy scalars -> Python."""
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj
