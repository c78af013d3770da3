"""Claim: the prefix guard keeps LLM proposals within the caps (semantic rejections under 5%) at little cost in
decoding speed.

Replays the generator prompts an LLM search recorded in its store -- the real prompts, with their memory, at their
recorded temperature -- on the in-process transformers backend, each with the space's grammar alone and with the grammar
plus the prefix guard (same seeds, alternating). Every completion is checked as the search checks it (parse, structural
check, parameters and FLOPs against the caps); prints the rejection rate and the generated tokens/s of both modes.

    llmnas search --budget 10 --store runs/embedded                   # the embedded default: digits, SmolLM2
    .venv/bin/python benchmarks/bench_guard.py runs/embedded           # caps: the digits defaults, 1M / 25M
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmnas_local.dsl import get_space  # noqa: E402
from llmnas_local.dsl.base import Constraints, DslError, SemanticError  # noqa: E402
from llmnas_local.llm import Constraint  # noqa: E402
from llmnas_local.llm.transformers_backend import TransformersBackend  # noqa: E402
from llmnas_local.store import LmdbStore  # noqa: E402


def recorded_prompts(store: str, run: str | None, limit: int):
    """(run record, [(messages, temperature)]) of the first ``limit`` distinct generator prompts of a run."""
    with LmdbStore(store, readonly=True) as st:
        runs = list(st.list_runs())
        rec = next((r for r in runs if run in (None, r.run_id) and r.proposer in ("llm", "llm-evo")), None)
        if rec is None:
            raise SystemExit(f"no LLM run {run or ''} in {store}")
        seen, prompts = set(), []
        for t in st.trials(rec.run_id):
            digest = (t.llm or {}).get("prompt_hash")
            if digest and digest not in seen:
                seen.add(digest)
                prompts.append((json.loads(st.get_text(digest)), float(t.llm.get("temperature", 0.8))))
    return rec, prompts[:limit]


def verdict(space, text: str, caps: Constraints) -> str:
    from llmnas_local.dsl.cnn_cost import cnn_cost

    try:
        spec = space.parse(text)
        space.check(spec, caps)
    except DslError:
        return "unparsed"
    except SemanticError:
        return "invalid"
    return "ok" if cnn_cost(spec, caps.num_classes, caps.in_chans, caps.input_size).within(caps) else "over caps"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--run", default=None, help="run id (default: the store's first LLM run)")
    ap.add_argument("--prompts", type=int, default=6, help="distinct recorded prompts to replay")
    ap.add_argument("--seeds", type=int, default=2, help="seeds per prompt and mode")
    ap.add_argument("-n", type=int, default=4, help="completions per call (the proposer's default)")
    ap.add_argument("--max-params-m", type=float, default=1.0)
    ap.add_argument("--max-flops-m", type=float, default=25.0)
    args = ap.parse_args()
    rec, prompts = recorded_prompts(args.store, args.run, args.prompts)
    if rec.space != "cnn":
        raise SystemExit(f"run {rec.run_id} searches {rec.space}: the guard is the cnn space's")
    data = rec.recipe["data"]
    caps = Constraints(num_classes=data["num_classes"], in_chans=data["in_chans"], input_size=data["input_size"],
                       max_params_m=args.max_params_m, max_flops_m=args.max_flops_m)
    space = get_space("cnn")
    backend = TransformersBackend(rec.proposer_settings.get("model", "smollm2"))
    modes = {"grammar": Constraint(grammar=space.grammar()),
             "grammar + guard": Constraint(grammar=space.grammar(), prefix_guard=space.prefix_guard(caps))}
    counts = {m: {} for m in modes}
    speed = {m: [] for m in modes}
    for i, (messages, temperature) in enumerate(prompts):
        for seed in range(args.seeds):
            for mode, constraint in modes.items():
                [g] = backend.generate([messages], constraint, n=args.n, max_tokens=256, temperature=temperature,
                                       top_p=0.95, seed=seed)
                speed[mode].append(g.tokens_out / g.gen_s)
                for c in g.completions:
                    v = verdict(space, c.text.strip(), caps) if c.finish_reason == "stop" else "cut off"
                    counts[mode][v] = counts[mode].get(v, 0) + 1
            print(f"prompt {i + 1}/{len(prompts)} seed {seed}: "
                  + "; ".join(f"{m} {counts[m]}" for m in modes), flush=True)
    print(f"\nmachine: {platform.machine()} {platform.processor()}, store {args.store}, run {rec.run_id}, caps "
          f"{caps.max_params_m}M params / {caps.max_flops_m}M FLOPs at {caps.input_size}x{caps.input_size}")
    for mode in modes:
        total = sum(counts[mode].values())
        rejected = total - counts[mode].get("ok", 0)
        print(f"{mode:16s} completions {total}, rejected {rejected} ({100 * rejected / total:.1f}%) "
              f"{dict(sorted(counts[mode].items()))}; tokens/s {statistics.mean(speed[mode]):.2f} "
              f"± {statistics.stdev(speed[mode]) if len(speed[mode]) > 1 else 0:.2f}")
    ratio = statistics.mean(speed["grammar + guard"]) / statistics.mean(speed["grammar"])
    print(f"throughput with the guard / without: {ratio:.2f}x")


if __name__ == "__main__":
    main()
