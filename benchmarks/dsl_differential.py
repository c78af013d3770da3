"""Claim: every space's strict parser accepts exactly the language that xgrammar reads from the space's grammar.

Runs the differential check of tests/dsl/test_differential.py at a larger size: N strings sampled from each grammar
must parse, be accepted by xgrammar and round-trip through the canonical form with the same hash; M distinct
near-miss mutants must be accepted by both or rejected by both. Prints the environment, then counts per space;
exits 1 on any disagreement.

    python benchmarks/dsl_differential.py --samples 10000 --mutants 10000 --seed 0
"""
from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the check lives beside its test

from llmnas_local.dsl import get_space, list_spaces  # noqa: E402
from tests.dsl.test_differential import run_differential  # noqa: E402


def environment() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO, capture_output=True, text=True).stdout
        sha += "+dirty" if dirty.strip() else ""
    except (OSError, subprocess.CalledProcessError):
        sha = "unknown"
    return (f"git {sha} | python {platform.python_version()} | xgrammar {importlib.metadata.version('xgrammar')} | "
            f"{platform.machine()} {os.cpu_count()} cpus")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=10_000)
    ap.add_argument("--mutants", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--spaces", nargs="*", default=None, help="default: every registered space")
    ap.add_argument("--examples", type=int, default=10, help="failing strings shown per kind")
    args = ap.parse_args()
    print(environment())
    print(f"samples={args.samples} mutants={args.mutants} seed={args.seed}")
    ok = True
    for name in args.spaces or list_spaces():
        t0 = time.perf_counter()
        report = run_differential(get_space(name), args.samples, args.mutants, args.seed)
        print(report.summary(args.examples))
        print(f"  time {time.perf_counter() - t0:.1f} s")
        ok &= report.ok
    print("OK: no disagreements" if ok else "FAILED: see above")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
