"""Benchmark of the LMDB store. Claims, checked by the figures this prints:

- opening a store that holds a run of 100,000 trials and loading all of them (``list(store.trials(run_id))``) takes
  under 2 s on the project's machine (2 cores);
- a durable ``record_trial`` (one fsync'd LMDB commit) costs about 0.5 ms: nothing next to a training;
- ``get_outcome`` (the "was this architecture already evaluated?" look-up) runs at tens of thousands per second.

Trials are realistic (about 900 bytes of JSON: DSL text, canonical form, hashes, 7 metrics, 3 timings, LLM info).
The store lives in a temporary directory that is removed at the end. The machine may be shared: the load average is
printed before and after, and every timing is given as wall and CPU seconds, mean +- std over ``--repeats``.

    python benchmarks/bench_store.py [--trials 100000] [--commits 1000] [--lookups 20000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lmdb

from llmnas_local.records import (BUILD_S, EVAL_S, FLOPS_M, PARAMS_M, PEAK_MEM_MB, PROPOSE_S, TEST_ACC, TRAIN_LOSS,
                                  TRAIN_S, VAL_ACC, RunRecord, TrialRecord, TrialStatus)
from llmnas_local.store import LmdbStore
from llmnas_local.store import lmdb_store

RECIPE = "9f" * 32
BLOCKS = ["ds_r1_k3_s1_e1_c16", "ir_r2_k3_s2_e6_c24_se0.25", "ir_r3_k5_s2_e6_c40_se0.25", "ir_r3_k3_s2_e6_c80",
          "ir_r2_k5_s1_e6_c112_se0.25", "cn_r1_k1_s1_c320"]


def arch_hash(i: int) -> str:
    """A sha256 like the space's: random key order, as in a real search."""
    return hashlib.sha256(str(i).encode()).hexdigest()


def make_trial(run_id: str, seq: int, rng: random.Random) -> TrialRecord:
    text = " ".join(rng.sample(BLOCKS, 5))
    return TrialRecord(
        run_id=run_id, seq=seq, proposer="llm", raw=text + "\n", status=TrialStatus.COMPLETE, canonical=text,
        arch_hash=arch_hash(seq), recipe_hash=RECIPE, parent_hash=arch_hash(max(seq - 1, 0)),
        metrics={VAL_ACC: rng.uniform(10, 95), TEST_ACC: rng.uniform(10, 95), PARAMS_M: rng.uniform(0.1, 5),
                 FLOPS_M: rng.uniform(5, 300), TRAIN_S: rng.uniform(10, 100), PEAK_MEM_MB: rng.uniform(300, 900),
                 TRAIN_LOSS: rng.uniform(0, 2)},
        timings={PROPOSE_S: rng.uniform(0, 3), BUILD_S: rng.uniform(0, 0.2), EVAL_S: rng.uniform(10, 100)},
        llm={"backend": "transformers", "model": "SmolLM2-135M-Instruct", "prompt_tokens": 812, "new_tokens": 41,
             "prompt": f"{rng.getrandbits(256):064x}"})


def make_run(run_id: str) -> RunRecord:
    return RunRecord(run_id=run_id, space="timm_cnn", proposer="llm", proposer_settings={"temperature": 0.7},
                     evaluator="train", recipe={"epochs": 3}, recipe_hash=RECIPE, seed=0)


def timed(fn) -> tuple[float, float, object]:
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - w, time.process_time() - c, out


def fmt(values: list[float], unit: str = "s", digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} +- {std:.{digits}f} {unit} (n={len(values)})"


def describe_machine() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent).stdout.strip()
    except OSError:
        sha = "?"
    parser = lmdb_store._fast_loads.__module__
    if parser == "orjson":
        import orjson
        parser = f"orjson {orjson.__version__}"
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, "
          f"py-lmdb {lmdb.__version__} (liblmdb {'.'.join(map(str, lmdb.version()))}), JSON parser: {parser}, "
          f"git {sha or '?'}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def bench_commits(tmp: Path, n: int, repeats: int, rng: random.Random) -> None:
    """Durable commits: one record_trial = one fsync'd transaction (trial + arch index + outcome), beside the disk's
    own limit measured at the same time (one 1 KB put per durable commit in a bare LMDB environment)."""
    rates, bare_rates = [], []
    with LmdbStore(tmp / "durable") as store:
        for r in range(repeats):
            store.put_run(make_run(f"durable-{r}"))
            trials = [make_trial(f"durable-{r}", i, rng) for i in range(n)]
            wall, _, _ = timed(lambda: [store.record_trial(t) for t in trials])
            rates.append(n / wall)
    env = lmdb.open(str(tmp / "bare"), map_size=1 << 30)
    value = os.urandom(1000)

    def bare(r: int) -> None:
        for i in range(n):
            with env.begin(write=True) as txn:
                txn.put(f"{r}:{i:08d}".encode().ljust(32, b"."), value)
    for r in range(repeats):
        wall, _, _ = timed(lambda: bare(r))
        bare_rates.append(n / wall)
    env.close()
    print(f"durable record_trial: {fmt(rates, 'commits/s', 0)}  ({n} commits each, fsync per commit)")
    print(f"bare LMDB, 1 KB put per durable commit (same disk, same time): {fmt(bare_rates, 'commits/s', 0)}")


def bench_fill(path: Path, n: int, rng: random.Random) -> None:
    """A store with one run of n trials, filled without fsync (the layout is the same)."""
    with LmdbStore(path, durable=False) as store:
        store.put_run(make_run("big"))
        trials = [make_trial("big", i, rng) for i in range(n)]
        wall, _, _ = timed(lambda: [store.record_trial(t) for t in trials])
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"fill {n} trials without fsync: {wall:.1f} s ({n / wall:.0f} trials/s), store {size / 2**20:.0f} MiB")


def bench_load(path: Path, n: int, repeats: int) -> None:
    """Open the store and load every trial of the run, as a resumed search does."""
    def open_and_load() -> int:
        with LmdbStore(path, readonly=True) as s:
            loaded = list(s.trials("big"))
        assert len(loaded) == n and loaded[-1].seq == n - 1
        return len(loaded)
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu, _ = timed(open_and_load)
        walls.append(wall)
        cpus.append(cpu)
    verdict = ("PASS" if statistics.fmean(walls) < 2.0 else "FAIL") if n >= 100_000 else "n/a, run 100,000"
    print(f"open + load {n} trials: wall {fmt(walls)}, cpu {fmt(cpus)}  [claim < 2 s for 100,000: {verdict}]")
    if lmdb_store._fast_loads.__module__ != "orjson":
        print("  (parsed with the standard json module: with orjson installed, loads parse about 2x faster)")


def bench_lookups(path: Path, n_trials: int, n: int, repeats: int, rng: random.Random) -> None:
    """get_outcome: hits on random architectures of the run, and misses."""
    hits, misses = [], []
    with LmdbStore(path, readonly=True) as s:
        for _ in range(repeats):
            for keys, rates, found in (([arch_hash(rng.randrange(n_trials)) for _ in range(n)], hits, True),
                                       ([arch_hash(n_trials + i) for i in range(n)], misses, False)):
                wall, _, outcomes = timed(lambda: [s.get_outcome(k, RECIPE) for k in keys])
                assert all((o is not None) == found for o in outcomes)
                rates.append(n / wall)
    print(f"get_outcome: hits {fmt(hits, 'lookups/s', 0)}, misses {fmt(misses, 'lookups/s', 0)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--trials", type=int, default=100_000, help="trials in the run that is opened and loaded")
    ap.add_argument("--commits", type=int, default=1000, help="durable commits per repeat")
    ap.add_argument("--lookups", type=int, default=20_000, help="get_outcome calls per repeat")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    describe_machine()
    print(f"load average at start: {load_average()}")
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="bench_store_") as tmp:
        bench_commits(Path(tmp), args.commits, args.repeats, rng)
        bench_fill(Path(tmp) / "big", args.trials, rng)
        bench_load(Path(tmp) / "big", args.trials, args.repeats)
        bench_lookups(Path(tmp) / "big", args.trials, args.lookups, args.repeats, rng)
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    sys.exit(main())
