"""``llmnas search --lookahead``: a real search on the NAS-Bench-201 table, killed with SIGKILL mid-run and resumed,
writes what an uninterrupted one writes; a lookahead with more workers is one line naming the flag."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.store import LmdbStore, StoreError


def args(csv, store, lookahead="1", budget=60):
    return ["search", "--space", "nb201", "--table", str(csv), "--proposer", "evolution", "--budget", str(budget),
            "--seed", "4", "--lookahead", lookahead, "--store", str(store), "-q"]


def trials(path):
    with LmdbStore(path, readonly=True) as st:
        return [(t.seq, t.raw, t.status, t.arch_hash, t.metrics, t.error) for t in st.trials()], st.list_runs()


def count(path) -> int:
    try:
        with LmdbStore(path, readonly=True) as st:
            return sum(1 for _ in st.trials())
    except StoreError:                      # not created yet
        return 0


@pytest.mark.slow                           # two CLI processes and a kill
def test_kill_9_then_resume_with_a_lookahead_is_exact(tmp_path, nb201_csv):
    killed, reference = tmp_path / "killed", tmp_path / "reference"
    cmd = [sys.executable, "-m", "llmnas_local.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd + args(nb201_csv, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, env=env)
    try:
        deadline = time.monotonic() + 120
        while count(killed) < 12:
            assert proc.poll() is None, "the search ended before the kill"
            assert time.monotonic() < deadline, "fewer than 12 trials after 120 s"
            time.sleep(0.005)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    before, _ = trials(killed)
    assert 12 <= len(before) and sum(t[2].evaluated for t in before) < 60
    for store in (killed, reference):
        done = subprocess.run(cmd + args(nb201_csv, store), capture_output=True, text=True, env=env, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
    resumed, runs = trials(killed)
    ref, ref_runs = trials(reference)
    assert [r.run_id for r in runs] == [r.run_id for r in ref_runs] and len(runs) == 1
    assert resumed[: len(before)] == before and resumed == ref
    assert sum(t[2].evaluated for t in resumed) == 60


def test_the_lookahead_is_part_of_the_run_id(tmp_path, nb201_csv):
    ids = []
    for lookahead in ("0", "1"):
        r = CliRunner().invoke(cli, args(nb201_csv, tmp_path / lookahead, lookahead, budget=5))
        assert r.exit_code == 0, r.output
        ids.append(r.output.split("run ")[1].split(":")[0])
    assert ids[0] != ids[1]


def test_a_lookahead_with_more_workers_is_one_line(tmp_path, nb201_csv):
    r = CliRunner().invoke(cli, args(nb201_csv, tmp_path / "s", "2") + ["--workers", "2"])
    assert r.exit_code == 2 and "--lookahead 2 needs --workers 1" in r.output and "Traceback" not in r.output
