"""Claim: the transformers backend's prompt prefill -- most of an LLM proposer call on CPU -- is cut by (a) keeping the
KV caches of several recent prompts, so the improver's and the generator's prompts, which alternate, each reuse their
own previous call, and (b) running the LM head on one position during prefill instead of every prompt token.

The prompts are the real ones of the LLM proposer with the improver on (nb201, cifar10), their memory taken from a
random search on the NAS-Bench-201 table that grows by 8 cells a round, as a run's does between generator calls. Each
call decodes one token (max_tokens=1), so its time is the prefill. Three settings, interleaved round by round on one
loaded model: the old single cache with full logits, 4 caches with full logits, 4 caches with one logit. Prints the
seconds per round (improver + generator call) of each, the prompt tokens prefilled, and the machine.

    .venv/bin/python benchmarks/bench_prefill.py [--rounds 6] [--threads 1]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
TABLE = REPO.parent / "shared" / "data" / "nb201" / "nb201_cifar.csv"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (the grids run 1 per process)")
    ap.add_argument("--table", default=str(TABLE))
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators.tabular import TabularEvaluator
    from llmnas_local.llm import Constraint, TransformersBackend
    from llmnas_local.llm.prefix_cache import PrefixCache
    from llmnas_local.prompts import generator_messages, improver_messages
    from llmnas_local.proposers import create_proposer
    from llmnas_local.proposers.llm import DIAGNOSIS_SCHEMA, LLMProposer, LLMProposerConfig
    from llmnas_local.search import Search
    from llmnas_local.store import MemoryStore

    space = get_space("nb201")
    search = Search(space, create_proposer("random"), TabularEvaluator(args.table, "cifar10"), MemoryStore(), seed=0)
    backend = TransformersBackend("smollm2", device="cpu")
    proposer = LLMProposer(backend, LLMProposerConfig(improver=True, window=5, elites=5))
    diagnosis = {"problem": "few 3x3 convolutions", "modification": "use nor_conv_3x3 on edge 2"}
    grammar, schema = Constraint(grammar=space.grammar()), Constraint(json_schema=DIAGNOSIS_SCHEMA)

    settings = {"1 cache, all logits": (1, False), "4 caches, all logits": (4, False), "4 caches, one logit": (4, True)}
    caches = {name: PrefixCache(size) for name, (size, _) in settings.items()}
    one_logit = backend._one_logit
    seconds: dict[str, list[float]] = {name: [] for name in settings}
    tokens = []
    for r in range(args.rounds + 1):                     # round 0 fills the caches: not counted
        search.run(8 * (r + 1))
        ctx = proposer.context(search.history)
        calls = [(improver_messages(ctx), schema), (generator_messages(ctx, diagnosis), grammar)]
        for name, (_, keep_one) in settings.items():
            backend._prefixes, backend._one_logit = caches[name], (one_logit if keep_one else {})
            t0 = time.perf_counter()
            ins = [backend.generate([m], c, n=1, max_tokens=1, temperature=0)[0].tokens_in for m, c in calls]
            if r:
                seconds[name].append(time.perf_counter() - t0)
        if r:
            tokens.append(ins)
    print(f"prompt tokens per round (improver + generator): {statistics.mean(sum(t) for t in tokens):.0f}")
    base = statistics.mean(seconds["1 cache, all logits"])
    for name, s in seconds.items():
        mean = statistics.mean(s)
        print(f"{name:22s} {mean:6.2f} ± {statistics.stdev(s):.2f} s per round   x{base / mean:.2f}")
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    print(f"rounds {args.rounds}, torch threads {args.threads}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}, torch {torch.__version__}, git {sha.strip()}")


if __name__ == "__main__":
    main()
