"""A CIFAR-10 search as a new user runs it, with the defaults fitted to the machine. Claim, checked by what this
prints: on the 2-core CPU,

    llmnas search --space cnn --data ../shared/data/cifar10/cifar10_jpg.tar.gz --proposer random --budget 5

finishes in under 15 minutes with every trial completed (none timed out, failed or rejected), first decode of the
JPEGs included (a fresh cache directory and a fresh store, both temporary).

It prints the machine and its load before and after, the command's own output (the fitted settings, the decode's
progress, the result), its wall time, and each trial's status, parameters, FLOPs, training and evaluation seconds and
accuracies (from ``llmnas export``).

    python benchmarks/bench_cifar10_cpu.py [--data ../shared/data/cifar10/cifar10_jpg.tar.gz] [--proposer random]
        [--budget 5] [--limit-s 900] [-- extra search flags]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cpu_model() -> str:
    from llmnas_local.bench.provenance import machine_info

    return machine_info().get("cpu_model") or "?"


def _llmnas() -> list[str]:
    return [sys.executable, "-c", "from llmnas_local.cli.main import cli; cli()"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"))
    ap.add_argument("--proposer", default="random")
    ap.add_argument("--budget", type=int, default=5)
    ap.add_argument("--limit-s", type=float, default=900.0, help="the claim's wall-time bound")
    ap.add_argument("extra", nargs="*", help="further llmnas search flags (after --)")
    args = ap.parse_args()
    sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}, no GPU assumed; "
          f"commit {sha.strip()}; load before {os.getloadavg()}")
    with tempfile.TemporaryDirectory() as tmp:
        store = os.path.join(tmp, "store")
        cmd = [*_llmnas(), "search", "--space", "cnn", "--data", args.data, "--proposer", args.proposer,
               "--budget", str(args.budget), "--store", store, *args.extra]
        shown = ["llmnas", *cmd[3:]]
        print("command:", " ".join(shown).replace(store, "STORE"), "(fresh store, fresh data cache)")
        env = {**os.environ, "LLMNAS_CACHE_DIR": os.path.join(tmp, "cache")}
        t0 = time.perf_counter()
        run = subprocess.run(cmd, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        print("--- output ---")
        text = run.stderr + run.stdout           # the progress bar redraws with \r: keep each line's last state
        text = "\n".join(line.split("\r")[-1] for line in text.split("\n"))
        print(text.replace(store, "STORE").replace(tmp, "TMP").rstrip())
        print(f"--- exit {run.returncode}, wall {wall:.0f} s ({wall / 60:.1f} min); load after {os.getloadavg()}")
        export = subprocess.run([*_llmnas(), "export", store], capture_output=True, text=True, env=env)
        trials = [json.loads(line) for line in export.stdout.splitlines() if line.strip()]
    statuses = {}
    for t in trials:
        statuses[t["status"]] = statuses.get(t["status"], 0) + 1
        m, tm = t["metrics"], t["timings"]
        print(f"  {t['status']:<9} {m.get('params_m', 0):6.3f}M {m.get('flops_m', 0):6.1f}MF  "
              f"train {m.get('train_s', 0):6.1f} s  eval {tm.get('eval_s', 0):6.1f} s  "
              f"val {m.get('val_acc', float('nan')):5.2f}  test {m.get('test_acc', float('nan')):5.2f}  "
              f"{t.get('canonical') or t['raw']}")
    complete = statuses.get("complete", 0)
    ok = run.returncode == 0 and complete == args.budget and len(trials) == args.budget and wall < args.limit_s
    print(f"trials: {statuses}; claim (exit 0, {args.budget} trials all complete, none rejected, under "
          f"{args.limit_s:g} s): {'holds' if ok else 'FAILS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
