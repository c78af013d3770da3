"""Searches on a real two-node Ray cluster (loopback only), against local runs of the same seed.

The cluster (tests/ray/loopback_cluster.py): a head and a second node, 1 CPU each, in a network namespace that has
only the loopback interface. The drivers are the ``llmnas search`` CLI with ``--executor ray``; the local runs the
same command without it. What is checked:

- nb201 (table look-ups), one trial at a time: the store of the Ray run is the local run's, record for record
  (architectures, statuses, metrics, order); same run id, so the same recipe hash.
- nb201, four trials in flight, the second node frozen (SIGSTOP) then killed (SIGKILL to its raylet and workers)
  mid-search: the search goes on on the head; the trials the node took down, if any (a look-up lasts a millisecond
  and the head takes most: in 4 runs here, 1 had a trial lost), are FAILED with Ray's reason and evaluated again;
  the budget counts
  distinct evaluations; every outcome is the table's (the local evaluator's) for its cell (space nb201-cells: a
  cell is its own canonical form, so a retry looks up the very row the lost trial asked for). A retry is a trial,
  and the proposer is seeded by the number of trials, so after the kill the proposals differ from a local run's: the
  records are compared per architecture, not in order.
- digits (real trainings): the driver killed with ``kill -9`` after its first trial is recorded; its training on
  the cluster ends (Ray ends a dead driver's tasks); the same command resumes and completes: the store then holds the local run's architectures with the same statuses, in order, each
  evaluated once.
- digits, the second node killed while it trains: the trial is FAILED (lost) and trained again on the head.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmnas_local.evaluators.ray_executor import LOST
from llmnas_local.records import TrialRecord, TrialStatus
from llmnas_local.store import LmdbStore, StoreError
from tests.ray.loopback_cluster import LoopbackCluster, namespace_reason

pytestmark = pytest.mark.slow
LLMNAS = [sys.executable, "-m", "llmnas_local.cli.main", "search"]
# Digits at their native 8x8 and small caps, seed 107: four networks of at most 2 MFLOPs among the first proposals
# (as in tests/search/test_resume_kill.py), so that a training takes seconds on two cores.
CNN_ARGS = ["--space", "cnn", "--data", "digits", "--proposer", "random", "--train-size", "256", "--val-size", "128",
            "--test-size", "128", "--input-size", "8", "--max-params-m", "0.5", "--max-flops-m", "8",
            "--device", "cpu", "-q"]
ENV = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cluster():
    reason = namespace_reason()
    if reason is not None:
        if os.environ.get("LLMNAS_REQUIRE_RAY") == "1":
            pytest.fail(f"LLMNAS_REQUIRE_RAY=1 but no loopback Ray cluster can be made: {reason}")
        pytest.skip(reason)
    with LoopbackCluster(cpus=1, env=ENV) as c:
        yield c


def nb201_args(table: Path, seed: int, budget: int, space: str = "nb201") -> list[str]:
    return ["--space", space, "--table", str(table), "--proposer", "evolution", "--seed", str(seed),
            "--budget", str(budget), "-q"]


def ray_args(cluster: LoopbackCluster, workers: int) -> list[str]:
    return ["--executor", "ray", "--ray-address", cluster.address, "--workers", str(workers)]


def run_local(args: list[str], store: Path, log: Path, timeout: float = 240) -> None:
    with open(log, "ab") as f:
        proc = subprocess.run([*LLMNAS, *args, "--store", str(store)], stdout=f, stderr=subprocess.STDOUT,
                              env={**os.environ, **ENV}, timeout=timeout)
    assert proc.returncode == 0, log.read_text()[-3000:]


def run_on(cluster: LoopbackCluster, args: list[str], store: Path, log: Path, timeout: float = 240) -> None:
    rc = cluster.run([*LLMNAS, *args, "--store", str(store)], timeout, log)
    assert rc == 0, log.read_text()[-3000:]


def trials(store: Path) -> list[TrialRecord]:
    try:
        with LmdbStore(store, readonly=True) as st:
            return [t for r in st.list_runs() for t in st.trials(r.run_id)]
    except StoreError:            # not created yet
        return []


def key(t: TrialRecord) -> tuple:
    return t.canonical, t.status, t.error, dict(t.metrics), t.from_store


def wait_for(ok, timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not ok():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not seen after {timeout} s: {log.read_text()[-3000:]}")
        time.sleep(0.1)


def check_counts(records: list[TrialRecord], budget: int) -> None:
    """Budget = distinct evaluated architectures; none evaluated twice except the retries of lost trials."""
    evaluated = [t for t in records if t.status.evaluated]
    assert len({t.arch_hash for t in evaluated}) == budget
    final = [t.arch_hash for t in evaluated if not t.error.startswith(LOST)]
    assert len(final) == len(set(final)) == budget
    assert [t.seq for t in records] == list(range(len(records)))


def test_the_cluster_listens_on_loopback_only(cluster):
    out = subprocess.run(cluster.command(["ss", "-ltnH"]), capture_output=True, text=True, check=True).stdout
    addresses = [line.split()[3].rsplit(":", 1)[0] for line in out.splitlines()]
    assert addresses and all(a in ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]") for a in addresses), out


def test_nb201_on_the_cluster_is_the_local_run(cluster, nb201_csv, tmp_path):
    args = nb201_args(nb201_csv, seed=3, budget=25)
    run_local(args, tmp_path / "local", tmp_path / "local.log")
    run_on(cluster, [*args, *ray_args(cluster, 1)], tmp_path / "ray", tmp_path / "ray.log")
    local, remote = trials(tmp_path / "local"), trials(tmp_path / "ray")
    assert [t.run_id for t in remote[:1]] == [t.run_id for t in local[:1]]
    assert [key(t) for t in remote] == [key(t) for t in local]
    assert sum(t.status is TrialStatus.COMPLETE for t in remote) == 25


def test_nb201_goes_on_when_a_node_dies(cluster, nb201_csv, tmp_path):
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators import create_evaluator

    budget = 150
    store, log = tmp_path / "ray", tmp_path / "ray.log"
    args = nb201_args(nb201_csv, seed=4, budget=budget, space="nb201-cells")
    proc = cluster.popen([*LLMNAS, *args, *ray_args(cluster, 4), "--store", str(store)], log)
    try:
        wait_for(lambda: len(trials(store)) >= 20, 120, "20 trials", log)
        os.killpg(cluster.node.pid, signal.SIGSTOP)     # frozen first: what Ray sends it meanwhile is in flight there
        time.sleep(2)
        cluster.kill_node()
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        cluster.start_node()          # for the next tests
    records = trials(store)
    check_counts(records, budget)
    lost = [t for t in records if t.error.startswith(LOST)]      # a look-up takes a millisecond: maybe none
    assert all(t.status is TrialStatus.FAILED for t in lost)
    retried = {t.arch_hash for t in records if t.status is TrialStatus.COMPLETE}
    assert all(t.arch_hash in retried for t in lost)
    space, table = get_space("nb201-cells"), create_evaluator("nb201-cells", table=str(nb201_csv))
    for t in records:
        if t.status is TrialStatus.COMPLETE:
            expected = table.evaluate(space, space.parse(t.canonical))
            assert t.metrics == {**t.metrics, **expected.metrics}, t.canonical


def test_digits_resumes_after_the_driver_is_killed(cluster, tmp_path):
    args = [*CNN_ARGS, "--seed", "107", "--budget", "4"]
    run_local(args, tmp_path / "local", tmp_path / "local.log")
    store, log = tmp_path / "ray", tmp_path / "ray.log"
    command = [*LLMNAS, *args, *ray_args(cluster, 1), "--store", str(store)]
    proc = cluster.popen(command, log)
    wait_for(lambda: any(t.status.evaluated for t in trials(store)) or proc.poll() is not None, 180,
             "a first evaluation", log)
    os.killpg(proc.pid, signal.SIGKILL)          # the driver: kill -9, in the middle of the next trial
    proc.wait()
    before = trials(store)
    assert 0 < sum(t.status.evaluated for t in before) < 4, "the driver was not killed mid-search"
    wait_for(lambda: not trainings(cluster), 60, "the end of the killed driver's trainings (Ray ends its tasks)", log)
    run_on(cluster, [*args, *ray_args(cluster, 1)], store, log)          # the same command
    local, remote = trials(tmp_path / "local"), trials(store)
    assert [t.to_json() for t in remote[:len(before)]] == [t.to_json() for t in before]    # untouched
    assert [(t.canonical, t.status) for t in remote] == [(t.canonical, t.status) for t in local]
    check_counts(remote, 4)


def test_digits_trial_on_a_dying_node_is_trained_again(cluster, tmp_path):
    store, log = tmp_path / "ray", tmp_path / "ray.log"
    proc = cluster.popen([*LLMNAS, *CNN_ARGS, "--seed", "107", "--budget", "3", *ray_args(cluster, 2),
                          "--store", str(store)], log)
    try:
        wait_for(lambda: training_on(cluster.node.pid) or proc.poll() is not None, 180, "a training on node 2", log)
        assert proc.poll() is None, log.read_text()[-3000:]
        cluster.kill_node()
        assert proc.wait(timeout=240) == 0, log.read_text()[-3000:]
    finally:
        cluster.start_node()
    records = trials(store)
    check_counts(records, 3)
    lost = [t for t in records if t.error.startswith(LOST)]
    assert lost and all(t.status is TrialStatus.FAILED for t in lost), [(t.status, t.error) for t in records]
    done = {t.arch_hash: t for t in records if t.status is TrialStatus.COMPLETE}
    assert all(t.arch_hash in done and done[t.arch_hash].seq > t.seq for t in lost)


def trainings(cluster: LoopbackCluster) -> list[int]:
    """Training worker processes in the cluster's namespace."""
    out = []
    for pid in cluster.processes():
        try:
            if b"llmnas_local.evaluators.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                out.append(pid)
        except OSError:
            continue
    return out


def training_on(node_group: int) -> bool:
    """Whether a training worker runs under the node whose ``ray start`` has process group ``node_group``: a process
    of the training worker module whose parent is a Ray worker whose parent is in that group."""
    stats = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                text = (entry / "stat").read_text()
                cmd = (entry / "cmdline").read_bytes()
            except OSError:
                continue
            fields = text.rsplit(")", 1)[1].split()
            stats[int(entry.name)] = (int(fields[1]), int(fields[2]), cmd)    # ppid, pgid, cmdline
    for pid, (ppid, _, cmd) in stats.items():
        if b"llmnas_local.evaluators.worker" in cmd and ppid in stats:
            grand = stats[ppid][0]
            if grand in stats and stats[grand][1] == node_group:
                return True
    return False
