"""Exact resume after ``kill -9``, with real parts: the CLI in a subprocess, the LMDB store, the training worker.

A search is killed (SIGKILL to its whole process group) in the middle of a training, then the same command is run
again to completion. The store must then hold exactly the run an uninterrupted search writes (run in another store at
the same time): the same proposals in the same order, each architecture evaluated once, every trial recorded before
the kill untouched, sequence numbers dense.

The cnn search uses seed 107, digits at their native 8x8 and small caps: the first six proposals of the grammar sampler
are then four networks of at most 2 MFLOPs, one rejected by a cap and one by the stride check, so the whole test stays
within about a minute on two cores (unconstrained random networks reach GFLOPs and train for minutes there).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmnas_local.records import TrialRecord
from llmnas_local.store import LmdbStore, StoreError

CNN_ARGS = ["--space", "cnn", "--data", "digits", "--proposer", "random", "--budget", "4", "--train-size", "256",
            "--val-size", "128", "--test-size", "128", "--seed", "107", "--input-size", "8", "--max-params-m", "0.5",
            "--max-flops-m", "8", "--device", "cpu", "-q"]
NB201_BUDGET = 100
pytestmark = [pytest.mark.slow,        # spawns searches and training workers, and kills them
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="watches processes through /proc (Linux)")]
WORKER_MODULE = "llmnas_local.evaluators.worker"
# One torch thread per process: two searches run side by side here, and OpenMP threads that outnumber the cores spin
# against each other (a 0.5 MFLOP model took 36 s instead of 1 s to train). Threads are not part of the recipe, and all
# three runs use the same setting.
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


# -- processes ------------------------------------------------------------------------------------------------------
def search_cmd(args: list[str], store: Path) -> list[str]:
    return [sys.executable, "-m", "llmnas_local.cli.main", "search", *args, "--store", str(store)]


@pytest.fixture
def start():
    """``start(args, store, log)``: the search in its own process group (its pid is the group id). Whatever is still
    running at the end of the test, the searches and their training workers, is killed."""
    procs: list[subprocess.Popen] = []

    def _start(args: list[str], store: Path, log: Path) -> subprocess.Popen:
        with open(log, "wb") as f:
            proc = subprocess.Popen(search_cmd(args, store), stdout=f, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True, env=ENV)
        procs.append(proc)
        return proc
    yield _start
    for proc in procs:
        if proc.poll() is None:
            workers = worker_pids(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            for w in workers:
                if alive(w):
                    os.kill(w, signal.SIGKILL)


def finish(proc: subprocess.Popen, log: Path, timeout: float = 240) -> str:
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        pytest.fail(f"search did not finish in {timeout} s: {log.read_text()[-2000:]}")
    out = log.read_text()
    assert proc.returncode == 0, out[-3000:]
    return out


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/PID/stat from the state on (index 0 is the state, 1 the ppid, 11/12 utime/stime)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def cpu_ticks(pid: int) -> int:
    s = _stat(pid)
    return int(s[11]) + int(s[12]) if s else -1


def alive(pid: int) -> bool:
    s = _stat(pid)
    return s is not None and s[0] not in ("Z", "X")


def worker_pids(parent: int) -> list[int]:
    """Training workers started by ``parent`` (they run in their own session, so killpg of the search misses them)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        s = _stat(int(entry.name))
        if s and int(s[1]) == parent and alive(int(entry.name)):
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            if WORKER_MODULE in cmdline:
                pids.append(int(entry.name))
    return pids


def kill_group(proc: subprocess.Popen) -> list[int]:
    """SIGKILL the search's process group; wait until its workers are gone too (they exit when their parent does).
    Returns the pids of those workers."""
    workers = worker_pids(proc.pid)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while any(alive(w) for w in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [w for w in workers if alive(w)]
    for w in left:                           # do not leave a stray worker behind a failing test
        os.kill(w, signal.SIGKILL)
    assert not left, f"training workers {left} outlived their killed search by 15 s"
    return workers


# -- the store, read-only, alongside the writer --------------------------------------------------------------------
class Reader:
    """A read-only view of a store that another process writes (opened once the store exists)."""

    def __init__(self, path: Path):
        self.path, self.store = path, None

    def trials(self) -> list[TrialRecord]:
        if self.store is None:
            try:
                self.store = LmdbStore(self.path, readonly=True)
            except StoreError:              # not created yet
                return []
        return list(self.store.trials())

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def trials_after_kill(path: Path) -> list[TrialRecord]:
    """The trials of a store whose writer was killed, read by a fresh reader once no process has it open.

    A reader that stays open across the writer's death may miss the writer's last commit: LMDB readers take the latest
    transaction id from the lock file, which the writer updates after its commit reached the disk, so a SIGKILL in
    between leaves a durable commit that only a fresh opener (which re-reads the meta pages) or the next writer (which
    recovers the dead writer's mutex) sees."""
    with LmdbStore(path, readonly=True) as store:
        return list(store.trials())


def assert_lags_by_at_most_one(stale: list[TrialRecord], fresh: list[TrialRecord]) -> None:
    assert [t.dumps() for t in fresh[: len(stale)]] == [t.dumps() for t in stale]
    assert len(fresh) - len(stale) in (0, 1), (len(stale), len(fresh))


def read_all(path: Path) -> tuple[list[TrialRecord], list, LmdbStore]:
    store = LmdbStore(path, readonly=True)
    return list(store.trials()), store.list_runs(), store


# -- the checks --------------------------------------------------------------------------------------------------------
def check_exact_resume(resumed: Path, reference: Path, before: list[TrialRecord], budget: int) -> list[TrialRecord]:
    trials, runs, store = read_all(resumed)
    try:
        ref, ref_runs, ref_store = read_all(reference)
        ref_store.close()
        assert len(runs) == 1 and [r.run_id for r in ref_runs] == [runs[0].run_id], "one run, the same run id"
        run_id, recipe = runs[0].run_id, runs[0].recipe_hash
        assert all(t.run_id == run_id for t in trials)
        assert [t.seq for t in trials] == list(range(len(trials))), "sequence numbers are dense"
        # Every trial recorded before the kill is still there, byte for byte.
        assert [t.dumps() for t in trials[: len(before)]] == [t.dumps() for t in before]
        # Exactly `budget` distinct architectures evaluated, none twice, each outcome filed once by its trial.
        evaluated = [t for t in trials if t.status.evaluated]
        assert len(evaluated) == budget, [(t.seq, t.status.name) for t in trials]
        assert len({t.arch_hash for t in evaluated}) == budget, "an architecture was evaluated twice"
        assert not any(t.from_store for t in trials), "a fresh store has no outcome of another run to reuse"
        for t in evaluated:
            filed = [u for u in store.trials_of_arch(t.arch_hash) if u.status.evaluated]
            assert [u.seq for u in filed] == [t.seq], f"{t.arch_hash[:12]} evaluated by trials {[u.seq for u in filed]}"
            outcome = store.get_outcome(t.arch_hash, recipe)
            assert outcome is not None and (outcome.status, outcome.metrics) == (t.status, t.metrics)
        # The proposals after the resume are the ones the uninterrupted run made.
        assert [t.raw for t in trials] == [t.raw for t in ref], "proposals differ from the uninterrupted run's"
        assert [(t.status, t.arch_hash) for t in trials] == [(t.status, t.arch_hash) for t in ref]
        return trials
    finally:
        store.close()


# -- the tests ---------------------------------------------------------------------------------------------------------
def test_kill_9_during_a_training_then_resume_is_exact(tmp_path, start):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    ref_proc = start(CNN_ARGS, reference, tmp_path / "reference.log")   # in parallel: it only has to finish
    proc = start(CNN_ARGS, killed, tmp_path / "killed.log")
    reader = Reader(killed)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert time.monotonic() < deadline, "no training in flight after a trial within 180 s"
            assert proc.poll() is None, f"the search ended before the kill: {(tmp_path / 'killed.log').read_text()}"
            n = len(reader.trials())
            workers = worker_pids(proc.pid) if n >= 1 else []
            if workers:
                # In flight: the worker computes while the search waits for it, and no trial is recorded meanwhile.
                t0 = cpu_ticks(workers[0])
                time.sleep(0.1)
                if cpu_ticks(workers[0]) > t0 and (_stat(proc.pid) or ["?"])[0] == "S" and len(reader.trials()) == n:
                    killed_workers = kill_group(proc)
                    break
            time.sleep(0.05)
        stale = reader.trials()
    finally:
        reader.close()
    before = trials_after_kill(killed)
    assert_lags_by_at_most_one(stale, before)
    assert killed_workers and len(before) == n >= 1
    evaluated_before = sum(t.status.evaluated for t in before)
    assert evaluated_before < 4

    resume = start(CNN_ARGS, killed, tmp_path / "resume.log")
    out = finish(resume, tmp_path / "resume.log")
    if evaluated_before:
        assert f"resuming run {before[0].run_id}: {evaluated_before} evaluations already in" in out
    finish(ref_proc, tmp_path / "reference.log")
    trials = check_exact_resume(killed, reference, before, budget=4)
    # The training that was killed was of the proposal drawn at position len(before): the resumed run drew it again
    # and evaluated it, once.
    assert trials[len(before)].status.evaluated


def test_kill_9_mid_run_then_resume_is_exact_on_the_nb201_table(tmp_path, nb201_csv, start):
    args = ["--space", "nb201", "--table", str(nb201_csv), "--proposer", "random", "--budget", str(NB201_BUDGET),
            "--seed", "3", "-q"]
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    ref_proc = start(args, reference, tmp_path / "reference.log")
    proc = start(args, killed, tmp_path / "killed.log")
    reader = Reader(killed)
    try:
        deadline = time.monotonic() + 120
        while len(reader.trials()) < 10:
            assert proc.poll() is None, f"the search ended before the kill: {(tmp_path / 'killed.log').read_text()}"
            assert time.monotonic() < deadline, "fewer than 10 trials after 120 s"
            time.sleep(0.005)
        kill_group(proc)
        stale = reader.trials()
    finally:
        reader.close()
    before = trials_after_kill(killed)
    assert_lags_by_at_most_one(stale, before)
    evaluated_before = sum(t.status.evaluated for t in before)
    assert 1 <= evaluated_before < NB201_BUDGET

    resume = start(args, killed, tmp_path / "resume.log")
    out = finish(resume, tmp_path / "resume.log")
    assert f"resuming run {before[0].run_id}: {evaluated_before} evaluations already in" in out
    finish(ref_proc, tmp_path / "reference.log")
    check_exact_resume(killed, reference, before, budget=NB201_BUDGET)
