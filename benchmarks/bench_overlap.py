"""Benchmark: proposing while training (``Search(lookahead=L)``, ``llmnas search --lookahead``). Claim, checked by the
figures this prints: with the embedded model proposing (SmolLM2-135M, in process) and real trainings of ``cnn``
networks on digits, one worker, the wall time per evaluation with ``--lookahead 1`` is within 15% of
max(propose, train) per evaluation, where the sequential loop (``--lookahead 0``) takes about propose + train.

What is timed: ``Search.run`` from its call to its return, in a fresh store, per distinct evaluation. "propose" is
the wall time spent inside the proposer's ``propose`` calls (the model's calls, prompts included) plus the checks of
its proposals (``build_s``: building each network to count its parameters and FLOPs), all on the main thread; "train"
the sum of the evaluated trials' ``eval_s`` (the evaluator's call: the worker round trip, building, training and
scoring); both divided by the evaluations. The training worker is started and warmed before the timed runs (one
training outside the store). On two cores the model and the training get one thread each (``torch.set_num_threads(1)``
here, ``threads=1`` for the worker), the split ``llmnas search`` makes with a lookahead. The conditions alternate
(0, 1, 0, 1...) so that a change of the machine's load hits both; the load average is printed before and after each.
A lookahead changes what the proposer sees (not the last evaluation), so the runs of the two conditions propose
different networks: their training times differ too, which is why each is compared with its own propose and train.

    python benchmarks/bench_overlap.py [--proposer llm] [--budget 12] [--repeats 2] [--seed 0] [--candidates N]
        [--out benchmarks/results/overlap/overlap.txt]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARM_UP = "stem_k3_s1_c16_nre cn_r1_k3_s1_c16_nre cn_r2_k3_s2_c24_nre head_c256_nre"   # a small network


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}, {platform.machine()}, Python {platform.python_version()}"


def git_sha() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):   # an exported tree (git archive): say which commit
        return os.environ.get("LLMNAS_GIT_SHA", "?")


def one_run(space, evaluator, proposer, lookahead: int, budget: int, seed: int) -> dict:
    from llmnas_local.records import BUILD_S, EVAL_S
    from llmnas_local.search import Search
    from llmnas_local.store import LmdbStore

    calls = []
    propose = proposer.propose

    def timed(*a, **k):
        t0 = time.perf_counter()
        try:
            return propose(*a, **k)
        finally:
            calls.append(time.perf_counter() - t0)
    proposer.propose = timed
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp, LmdbStore(Path(tmp) / "s") as store:
        study = Search(space, proposer, evaluator, store, seed=seed, lookahead=lookahead)
        t0 = time.perf_counter()
        study.run(budget)
        wall = time.perf_counter() - t0
        trials = list(study.history.trials)
    n = study.num_evaluated
    propose = (sum(calls) + sum(t.timings.get(BUILD_S, 0.0) for t in trials)) / n
    train = sum(t.timings.get(EVAL_S, 0.0) for t in trials if t.status.evaluated and not t.from_store) / n
    return {"lookahead": lookahead, "n": n, "trials": len(trials), "calls": len(calls), "wall": wall / n, "propose": propose,
            "train": train, "sum": propose + train, "max": max(propose, train),
            "complete": sum(t.status.name == "COMPLETE" for t in trials)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--proposer", default="llm", choices=["llm", "llm-edit"])
    ap.add_argument("--budget", type=int, default=12, help="distinct evaluations per run")
    ap.add_argument("--repeats", type=int, default=2, help="runs per condition (alternating)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--candidates", type=int, default=None, help="llm: completions per call [its default: 4]")
    ap.add_argument("--lookaheads", default="0,1")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "overlap" / "overlap.txt"))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators import create_evaluator
    from llmnas_local.llm import EMBEDDED, create_backend
    from llmnas_local.proposers import create_proposer

    lines: list[str] = []

    def say(text: str = "") -> None:
        print(text, flush=True)
        lines.append(text)

    say(f"bench_overlap at {git_sha()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    say(f"machine: {machine()}, no GPU; torch {torch.__version__}; load average at start {load()}")
    space = get_space("cnn")
    evaluator = create_evaluator(space, data={"source": "digits"}, recipe={"seed": 0, "device": "cpu"},
                                 time_limit_s=900.0, threads=1, on_fit=lambda text: say("evaluator: " + text))
    t0 = time.perf_counter()
    backend = create_backend("transformers", EMBEDDED)
    say(f"model {EMBEDDED} loaded in {time.perf_counter() - t0:.1f} s (1 torch thread); proposer {args.proposer}"
        + (f", candidates {args.candidates}" if args.candidates else ""))
    t0 = time.perf_counter()
    evaluator.evaluate(space, space.parse(WARM_UP))
    say(f"worker started and warmed in {time.perf_counter() - t0:.1f} s (one training outside the store)")

    def make_proposer():
        settings = {"backend": backend, "model": EMBEDDED, "hints": False}
        if args.proposer == "llm":
            settings.update(window=5, elites=5, improver=True)
            if args.candidates:
                settings["candidates"] = args.candidates
        else:
            settings.update(population=10, tournament=3, epsilon=0.5, window=0, slot_stats=False, choice="calibrated")
        return create_proposer(args.proposer, **settings)

    lookaheads = [int(x) for x in args.lookaheads.split(",")]
    results = []
    say(f"budget {args.budget} evaluations a run, seed {args.seed}, conditions {lookaheads} alternating, "
        f"{args.repeats} repeats")
    say("run  lookahead  evals  trials  calls  complete  wall/eval  propose/eval  train/eval  propose+train  max  "
        "wall/max  load(before->after)")
    try:
        for rep in range(args.repeats):
            for la in lookaheads:
                before = load()
                r = one_run(space, evaluator, make_proposer(), la, args.budget, args.seed)
                results.append(r)
                say(f"{rep:>3}  {la:>9}  {r['n']:>5}  {r['trials']:>6}  {r['calls']:>5}  {r['complete']:>8}  {r['wall']:>8.2f}s  "
                    f"{r['propose']:>11.2f}s  {r['train']:>9.2f}s  {r['sum']:>12.2f}s  {r['max']:>5.2f}s  "
                    f"{r['wall'] / r['max']:>7.2f}x  {before} -> {load()}")
    finally:
        evaluator.close()
    say()
    say("summary (mean over repeats; ratios per run, then their mean)")
    for la in lookaheads:
        rs = [r for r in results if r["lookahead"] == la]
        mean = {k: statistics.mean(r[k] for r in rs) for k in ("wall", "propose", "train", "sum", "max")}
        say(f"lookahead {la}: wall {mean['wall']:.2f} s/eval; propose {mean['propose']:.2f} + train "
            f"{mean['train']:.2f} = {mean['sum']:.2f} s; max {mean['max']:.2f} s; wall/(propose+train) "
            f"{statistics.mean(r['wall'] / r['sum'] for r in rs):.2f}; wall/max "
            f"{statistics.mean(r['wall'] / r['max'] for r in rs):.2f} (runs: "
            f"{', '.join('%.2f' % (r['wall'] / r['max']) for r in rs)})")
    if 0 in lookaheads and len(lookaheads) > 1:
        base = statistics.mean(r["wall"] for r in results if r["lookahead"] == 0)
        for la in lookaheads[1:]:
            w = statistics.mean(r["wall"] for r in results if r["lookahead"] == la)
            say(f"wall per evaluation, lookahead {la} / lookahead 0: {w / base:.2f}")
    say(f"load average at end {load()}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"written to {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
