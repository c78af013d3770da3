"""Benchmark of the search loop itself. Claims, checked by the figures this prints:

(a) the loop's own cost per trial (``ask()`` + ``tell()`` minus proposing and evaluating: parse, canonical form and
    hash, history look-ups, the store's outcome look-up and the trial's durable commit), with 10,000 trials of the run
    already in an LmdbStore with durable commits: median < 20 ms over 200 further trials;
(b) a 1,000-query NAS-Bench-201 table search with the random proposer, end to end in a fresh store, as a user runs it
    (``llmnas search --space nb201 --table ... --proposer random --budget 1000 --store TMP -q``, interpreter start-up
    included): < 10 s; the in-process ``Search.run`` time is printed beside it;
(c) resuming a store that holds a run of 100,000 trials, in a fresh process: ``LmdbStore`` open + ``Search(...)``
    (history load) + one more ask/tell: < 2 s.

(a) and (c) use a trivially cheap proposer and evaluator defined here (``TrivialProposer`` hands out prepared cell
strings, ``TrivialEvaluator`` scores a cell by a hash of its text) on the real ``nb201`` space, so what is timed is the
loop. The run's history is realistic for a long nb201 search: cells in random order, so about half the trials are
duplicates of a class already evaluated, plus the invalid all-zero cells. 200 classes are kept out of the fill, so that
every measured ask() finds a new architecture at once. Stores live in a temporary directory under ``--dir`` (default:
the system's), removed at the end; the file system and a bare durable LMDB commit on it are printed, since an fsync
is most of a durable trial. The machine may be shared: the load average is printed before and after.

    python benchmarks/bench_loop.py [--table ../shared/data/nb201/nb201_cifar.csv] [--fill 10000] [--measure 200]
        [--queries 1000] [--big 100000] [--repeats 3] [--only abc] [--profile]
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import io
import itertools
import json
import os
import platform
import pstats
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from pathlib import Path

import lmdb

from llmnas_local.dsl import Constraints, get_space
from llmnas_local.dsl.nb201 import EDGES, OPS, Nb201Spec, format_nb201, has_signal
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import PROPOSE_S, VAL_ACC, Outcome, TrialRecord, TrialStatus
from llmnas_local.search import Search
from llmnas_local.store import LmdbStore

REPO = Path(__file__).resolve().parents[1]
DEFAULT_TABLE = REPO.parent / "shared" / "data" / "nb201" / "nb201_cifar.csv"
LOOP_FILL = 10_000          # trials filled through the real loop; beyond that, duplicates are written directly
RESERVED = 256              # classes kept out of the fill (new architectures for the measured asks)


# -- the trivially cheap proposer and evaluator -------------------------------------------------------------------
class TrivialProposer(BaseProposer):
    """Hands out prepared texts in order; ``last_s`` is the time of its last ``propose`` call."""

    name = "trivial"

    def __init__(self, texts=()):
        self.texts: deque[str] = deque(texts)
        self.last_s = 0.0

    def propose(self, history, n, rng):
        t0 = time.perf_counter()
        out = [Proposal(self.texts.popleft())]
        self.last_s = time.perf_counter() - t0
        return out


class TrivialEvaluator(BaseEvaluator):
    """Scores a cell by a hash of its text (no table, no training); ``spent_s`` sums its precheck and evaluate time."""

    name = "trivial"

    def __init__(self):
        super().__init__(Constraints())
        self.spent_s = 0.0

    def recipe(self):
        return {"evaluator": "trivial-bench", "version": 1}

    def precheck(self, space, spec):
        t0 = time.perf_counter()
        try:
            space.check(spec, self.constraints)
            return {}
        finally:
            self.spent_s += time.perf_counter() - t0

    def evaluate(self, space, spec):
        t0 = time.perf_counter()
        score = int(hashlib.sha256(space.format(spec).encode()).hexdigest()[:6], 16) % 10000 / 100
        self.spent_s += time.perf_counter() - t0
        return Outcome(TrialStatus.COMPLETE, {VAL_ACC: score})


# -- machine, timing helpers ----------------------------------------------------------------------------------------
def describe_machine(workdir: Path) -> None:
    cpu = "?"
    if Path("/proc/cpuinfo").exists():
        cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name")), platform.processor() or "?")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    git = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True, cwd=REPO).stdout.strip()  # noqa: E731
    try:
        sha = git("rev-parse", "--short", "HEAD") + (" (+ uncommitted changes)" if git("status", "--porcelain") else "")
    except OSError:
        sha = "?"
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(workdir)], capture_output=True, text=True).stdout.strip()
    print(f"machine: {platform.platform()}, CPU {cpu}, {cores} cores usable ({os.cpu_count()} logical), "
          f"python {platform.python_version()}, py-lmdb {lmdb.__version__}")
    print(f"git {sha or '?'}; stores in {workdir} ({fs or '?'}); load average {load_average()}")


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"


def ms_summary(values: list[float]) -> str:
    v = sorted(values)
    p95 = v[min(len(v) - 1, round(0.95 * (len(v) - 1)))]
    return (f"median {1e3 * statistics.median(v):.2f} ms, p95 {1e3 * p95:.2f} ms, mean {1e3 * statistics.fmean(v):.2f} "
            f"ms, max {1e3 * v[-1]:.2f} ms (n={len(v)})")


def verdict(ok: bool) -> str:
    return "MET" if ok else "MISSED"


def bare_commit_s(path: Path, n: int = 100) -> list[float]:
    """Durable commits of one 1 KB put in a bare LMDB environment on the same disk: the file system's floor."""
    env = lmdb.open(str(path), map_size=64 << 20)
    value, out = os.urandom(1000), []
    for i in range(n):
        t0 = time.perf_counter()
        with env.begin(write=True) as txn:
            txn.put(b"%08d" % i, value)
        out.append(time.perf_counter() - t0)
    env.close()
    return out


def profiled(enabled: bool, fn, label: str, top: int = 25):
    if not enabled:
        return fn()
    prof = cProfile.Profile()
    out = prof.runcall(fn)
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(top)
    print(f"--- cProfile of {label} (cumulative) ---\n{buf.getvalue()}")
    return out


# -- the run's cells --------------------------------------------------------------------------------------------
@dataclasses.dataclass
class Cells:
    fill: list[str]          # cells of non-reserved classes, shuffled
    reserved: list[str]      # one cell (not the canonical one where possible) per reserved, valid class


def make_cells(seed: int = 0) -> Cells:
    space = get_space("nb201")
    by_class: dict[str, list[str]] = {}
    for ops in itertools.product(OPS, repeat=len(EDGES)):
        spec = Nb201Spec(ops)
        by_class.setdefault(space.arch_hash(spec), []).append(format_nb201(spec))
    rng = random.Random(seed)
    valid = sorted(h for h, cells in by_class.items() if has_signal(get_space("nb201").parse(cells[0]).ops)[3])
    reserved = set(rng.sample(valid, RESERVED))
    fill = [c for h, cells in by_class.items() if h not in reserved for c in cells]
    rng.shuffle(fill)
    reps = [rng.choice(by_class[h][1:] or by_class[h]) for h in sorted(reserved)]
    rng.shuffle(reps)
    return Cells(fill, reps)


def fill_store(path: Path, n: int, cells: Cells) -> float:
    """A store with one run of ``n`` trials (without fsync: the layout is the same). The first LOOP_FILL go through
    the real loop; the rest are the duplicates the loop would record for cells already seen. Returns the seconds."""
    t0 = time.perf_counter()
    space = get_space("nb201")
    with LmdbStore(path, durable=False) as store:
        search = Search(space, TrivialProposer(cells.fill), TrivialEvaluator(), store, seed=0)
        while len(search.history) < min(n, LOOP_FILL):
            pending = search.ask()
            search.tell(pending, search.evaluate(pending))
        known = [t for t in search.history.trials if t.status is TrialStatus.COMPLETE]
        for seq in range(len(search.history), n):
            k = known[seq % len(known)]
            store.record_trial(TrialRecord(
                run_id=search.run_id, seq=seq, proposer=TrivialProposer.name, raw=k.raw, status=TrialStatus.DUPLICATE,
                canonical=k.canonical, arch_hash=k.arch_hash, recipe_hash=search.recipe_hash, metrics=dict(k.metrics),
                error=f"already evaluated in this run as trial {k.seq} (complete)", timings={PROPOSE_S: 1e-5}))
    return time.perf_counter() - t0


def history_mix(path: Path) -> str:
    with LmdbStore(path, readonly=True) as store:
        counts: dict[str, int] = {}
        size = n = 0
        for t in store.trials():
            counts[t.status.name.lower()] = counts.get(t.status.name.lower(), 0) + 1
            size += len(t.dumps())
            n += 1
    return (f"{n} trials (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) +
            f"), {size / max(n, 1):.0f} bytes per record")


# -- (a) loop overhead ---------------------------------------------------------------------------------------------
def measure_overhead(path: Path, texts: list[str], durable: bool) -> dict[str, list[float]]:
    space = get_space("nb201")
    proposer, evaluator = TrivialProposer(texts), TrivialEvaluator()
    out: dict[str, list[float]] = {"loop": [], "ask": [], "tell": [], "propose": [], "evaluate": []}
    with LmdbStore(path, durable=durable) as store:
        search = Search(space, proposer, evaluator, store, seed=0)
        for i in range(len(texts)):
            evaluator.spent_s = 0.0
            t0 = time.perf_counter()
            pending = search.ask()
            t1 = time.perf_counter()
            outcome = search.evaluate(pending)
            t2 = time.perf_counter()
            search.tell(pending, outcome)
            t3 = time.perf_counter()
            assert pending.proposal.text == texts[i] and search.history.trials[-1].status is TrialStatus.COMPLETE
            if i < 3:           # warm-up: first look-ups and allocations
                continue
            ask = (t1 - t0) - proposer.last_s
            out["ask"].append(ask)
            out["tell"].append(t3 - t2)
            out["loop"].append(ask + (t3 - t2) - (evaluator.spent_s - (t2 - t1)))    # minus precheck time
            out["propose"].append(proposer.last_s)
            out["evaluate"].append(evaluator.spent_s)
    return out


def bench_a(tmp: Path, cells: Cells, fill: int, measure: int, profile: bool) -> None:
    print(f"\n(a) loop overhead per trial with {fill:,} trials stored (target: median < 20 ms)")
    base = tmp / "a-base"
    fill_s = fill_store(base, fill, cells)
    print(f"    fill: {fill_s:.1f} s without fsync; store holds {history_mix(base)}")
    texts = cells.reserved[: measure + 3]
    results = {}
    for durable in (True, False):
        path = tmp / f"a-{'durable' if durable else 'nosync'}"
        shutil.copytree(base, path)
        if durable and profile:
            profiled(True, lambda: measure_overhead(path, texts, durable), "(a) 200 durable ask/tell")
            shutil.rmtree(path)
            shutil.copytree(base, path)
        results[durable] = measure_overhead(path, texts, durable)
    floor = bare_commit_s(tmp / "a-bare")
    d, nd = results[True], results[False]
    print(f"    loop overhead, durable commits:   {ms_summary(d['loop'])}")
    print(f"      of which ask (triage, minus proposer): {ms_summary(d['ask'])}")
    print(f"      of which tell (record, durable commit): {ms_summary(d['tell'])}")
    print(f"    loop overhead, commits without fsync: {ms_summary(nd['loop'])}")
    print(f"    bare durable LMDB commit on the same disk (the fsync floor): {ms_summary(floor)}")
    print(f"    excluded: proposer {ms_summary(d['propose'])}; evaluator {ms_summary(d['evaluate'])}")
    med = statistics.median(d["loop"])
    print(f"    => (a) median {1e3 * med:.2f} ms per trial: target {verdict(med < 0.020)}")


# -- (b) 1,000-query table search ----------------------------------------------------------------------------------
def cli_command() -> list[str]:
    script = Path(sys.executable).with_name("llmnas")
    return [str(script)] if script.exists() else [sys.executable, "-m", "llmnas_local.cli.main"]


def child_search(table: str, store: str, budget: int) -> dict:
    """In a fresh process: the in-process phases of what ``llmnas search`` does on nb201."""
    t0 = time.perf_counter()
    from llmnas_local.evaluators import TabularEvaluator
    from llmnas_local.proposers import create_proposer
    from llmnas_local.store import open_store
    t1 = time.perf_counter()
    evaluator = TabularEvaluator(table)
    t2 = time.perf_counter()
    with open_store(store) as st:
        search = Search(get_space("nb201"), create_proposer("random"), evaluator, st, seed=0)
        t3 = time.perf_counter()
        search.run(budget)
        t4 = time.perf_counter()
        counts = search.counts()
    return {"import_s": t1 - t0, "table_s": t2 - t1, "search_init_s": t3 - t2, "run_s": t4 - t3,
            "trials": sum(counts.values()), "counts": counts, "torch_imported_by_run": "torch" in sys.modules}


def bench_b(tmp: Path, table: Path, queries: int, repeats: int, profile: bool) -> None:
    print(f"\n(b) {queries:,}-query nb201 table search, random proposer, fresh store (target: < 10 s end to end)")
    cli = []
    for r in range(repeats):
        store = tmp / f"b-cli-{r}"
        cmd = cli_command() + ["search", "--space", "nb201", "--table", str(table), "--proposer", "random",
                               "--budget", str(queries), "--store", str(store), "-q"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        cli.append(time.perf_counter() - t0)
        if proc.returncode:
            sys.exit(f"llmnas search failed ({proc.returncode}): {proc.stderr[-2000:]}")
    print(f"    `{' '.join(Path(c).name if i == 0 else c for i, c in enumerate(cmd))}`")
    print("    CLI wall, interpreter start-up included: " + ", ".join(f"{s:.2f} s" for s in cli) +
          f" (median {statistics.median(cli):.2f} s)")
    kids = [run_child(["search", str(table), str(tmp / f"b-api-{r}"), str(queries)]) for r in range(repeats)]
    for k in kids:
        print(f"    in-process (fresh process): imports {k['import_s']:.2f} s, table load {k['table_s']:.2f} s, "
              f"Search() {k['search_init_s']:.3f} s, Search.run {k['run_s']:.2f} s for {k['trials']} trials "
              f"({', '.join(f'{n} {c}' for n, c in k['counts'].items() if c)}); torch imported: "
              f"{k['torch_imported_by_run']}")
    print(f"    store after the CLI run: {history_mix(tmp / 'b-cli-0')}; one durable commit per trial, duplicates "
          f"included")
    if profile:
        run_child(["search-profile", str(table), str(tmp / "b-prof"), str(queries)], show=True)
    med = statistics.median(cli)
    print(f"    => (b) {med:.2f} s end to end: target {verdict(med < 10)}")


# -- (c) resume a large store --------------------------------------------------------------------------------------
def child_resume(store: str, text: str) -> dict:
    """In a fresh process: open the store, resume the run, one more ask/tell (durable)."""
    t0 = time.perf_counter()
    space = get_space("nb201")
    proposer, evaluator = TrivialProposer([text]), TrivialEvaluator()
    t1 = time.perf_counter()
    store = LmdbStore(store)
    t2 = time.perf_counter()
    search = Search(space, proposer, evaluator, store, seed=0)
    t3 = time.perf_counter()
    pending = search.ask()
    t4 = time.perf_counter()
    search.tell(pending, search.evaluate(pending))
    t5 = time.perf_counter()
    n = len(search.history)
    store.close()
    assert search.history.trials[-1].status is TrialStatus.COMPLETE
    return {"space_s": t1 - t0, "open_s": t2 - t1, "search_init_s": t3 - t2, "ask_s": t4 - t3, "tell_s": t5 - t4,
            "ask_tell_s": t5 - t3, "total_s": t5 - t1, "trials": n}


def bench_c(tmp: Path, cells: Cells, big: int, repeats: int, profile: bool) -> None:
    print(f"\n(c) resume a store of {big:,} trials in a fresh process: open + Search() + one ask/tell (target: < 2 s)")
    path = tmp / "c-big"
    fill_s = fill_store(path, big, cells)
    size = sum(f.stat().st_size for f in path.iterdir())
    print(f"    fill: {fill_s:.1f} s without fsync; {history_mix(path)}; {size / 2**20:.0f} MiB on disk")
    texts = cells.reserved[-repeats:]
    runs = []
    for text in texts:
        t0 = time.perf_counter()
        k = run_child(["resume", str(path), text])
        k["process_s"] = time.perf_counter() - t0
        runs.append(k)
        print(f"    open {k['open_s']:.3f} s, Search() {k['search_init_s']:.3f} s, ask {k['ask_s']:.3f} s (the first "
              f"canonical form builds the nb201 class table), tell {k['tell_s']:.3f} s; total {k['total_s']:.3f} s "
              f"({k['trials']:,} trials after); whole process {k['process_s']:.2f} s")
    if profile:
        run_child(["resume-profile", str(path), cells.reserved[-repeats - 1]], show=True)
    med = statistics.median(k["total_s"] for k in runs)
    print(f"    => (c) median {med:.3f} s: target {verdict(med < 2)}")


# -- children ---------------------------------------------------------------------------------------------------
def run_child(args: list[str], show: bool = False) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, cwd=REPO)
    if proc.returncode:
        sys.exit(f"child {args[0]} failed ({proc.returncode}): {proc.stderr[-3000:]}")
    lines = proc.stdout.strip().splitlines()
    if show:
        print("\n".join(lines[:-1]))
    return json.loads(lines[-1])


def child_main(args: list[str]) -> None:
    kind, *rest = args
    profile = kind.endswith("-profile")
    kind = kind.removesuffix("-profile")
    if kind == "search":
        fn = lambda: child_search(rest[0], rest[1], int(rest[2]))  # noqa: E731
    elif kind == "resume":
        fn = lambda: child_resume(rest[0], rest[1])  # noqa: E731
    else:
        sys.exit(f"unknown child {kind!r}")
    print(json.dumps(profiled(profile, fn, f"child {kind}", top=30)))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        return child_main(sys.argv[2:])
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--table", type=Path, default=DEFAULT_TABLE, help="NAS-Bench-201 CSV for (b)")
    p.add_argument("--fill", type=int, default=10_000, help="(a) trials stored before measuring")
    p.add_argument("--measure", type=int, default=200, help="(a) trials measured")
    p.add_argument("--queries", type=int, default=1000, help="(b) budget of the table search")
    p.add_argument("--big", type=int, default=100_000, help="(c) trials in the store that is resumed")
    p.add_argument("--repeats", type=int, default=3, help="(b) and (c) repetitions")
    p.add_argument("--only", default="abc", help="which of a, b, c to run")
    p.add_argument("--dir", type=Path, default=None, help="where the temporary stores go")
    p.add_argument("--profile", action="store_true", help="also print cProfile reports of each part")
    a = p.parse_args()
    if a.measure + 3 > RESERVED - a.repeats - 1:
        p.error(f"--measure must be at most {RESERVED - a.repeats - 4}")
    if "b" in a.only and not a.table.is_file():
        p.error(f"no table at {a.table} (give --table)")
    with tempfile.TemporaryDirectory(prefix="bench_loop-", dir=a.dir) as d:
        tmp = Path(d)
        describe_machine(tmp)
        cells = make_cells() if set(a.only) & set("ac") else None
        if "a" in a.only:
            bench_a(tmp, cells, a.fill, a.measure, a.profile)
        if "b" in a.only:
            bench_b(tmp, a.table.resolve(), a.queries, a.repeats, a.profile)
        if "c" in a.only:
            bench_c(tmp, cells, a.big, a.repeats, a.profile)
    print(f"\nload average after: {load_average()}")


if __name__ == "__main__":
    main()
