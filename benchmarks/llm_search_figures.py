"""Figures of an LLM-proposer search, read from its store: valid-proposal rate, semantic rejections, duplicates,
tokens, and the share of wall time spent proposing versus evaluating.

    llmnas search --budget 10 --store runs/embedded          # the embedded default: SmolLM2 on the CPU, digits
    python benchmarks/llm_search_figures.py runs/embedded
"""
from __future__ import annotations

import argparse
import collections
import platform

from llmnas_local.records import EVAL_S, PROPOSE_S, TrialStatus
from llmnas_local.store import LmdbStore


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--run", default=None, help="run id (default: every run of the store)")
    args = ap.parse_args()
    with LmdbStore(args.store, readonly=True) as st:
        trials = [t for t in st.trials(args.run) if t.llm]
    if not trials:
        raise SystemExit(f"no LLM-proposed trial in {args.store}")
    n = len(trials)
    status = collections.Counter(t.status for t in trials)
    finished = [t for t in trials if t.llm.get("finish_reason") == "stop"]
    parsed = [t for t in finished if t.canonical is not None]
    rejected = [t for t in trials if t.status is TrialStatus.INVALID and t.error.startswith("rejected")]
    propose_s = sum(t.timings.get(PROPOSE_S, 0.0) for t in trials)
    eval_s = sum(t.timings.get(EVAL_S, 0.0) for t in trials if not t.from_store)
    calls = {(t.llm.get("prompt_hash"), t.llm.get("gen_s")) for t in trials}
    tokens_out = sum(t.llm.get("tokens_out", 0) for t in trials)
    print(f"machine: {platform.machine()} {platform.processor() or ''}, store {args.store}")
    print(f"proposals: {n} from {len(calls)} generator calls; statuses: "
          + ", ".join(f"{s.name.lower()} {c}" for s, c in sorted(status.items())))
    print(f"finished completions that parse: {len(parsed)}/{len(finished)} "
          f"({100 * len(parsed) / max(1, len(finished)):.1f}%); cut off by max_tokens: {n - len(finished)}")
    print(f"semantic rejections: {len(rejected)}/{n} ({100 * len(rejected) / n:.1f}%); "
          f"duplicates (never re-trained): {status[TrialStatus.DUPLICATE]}/{n} "
          f"({100 * status[TrialStatus.DUPLICATE] / n:.1f}%)")
    print(f"generated tokens per proposal: {tokens_out / n:.1f}; decoded with the prefix guard enforced: "
          f"{sum(bool(t.llm.get('prefix_guard')) for t in trials)}/{n}")
    total = propose_s + eval_s
    print(f"wall time: proposing {propose_s:.0f} s ({100 * propose_s / total:.0f}%), evaluating {eval_s:.0f} s "
          f"({100 * eval_s / total:.0f}%)")
    for t in rejected[:5]:
        print(f"  rejected: {t.error}")


if __name__ == "__main__":
    main()
