"""Ends of a search that must not look like success, or leave a traceback: nothing completed, a full disk, a full
stdout, SIGTERM with trainings in flight."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.store import LmdbStore

CNN = ["search", "--space", "cnn", "--data", "digits", "--proposer", "random", "--train-size", "256", "--val-size",
       "64", "--test-size", "64", "--input-size", "8", "--max-params-m", "0.5", "--max-flops-m", "8", "--device", "cpu",
       "-q"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def llmnas(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmnas_local.cli.main", *args], capture_output=True, text=True,
                          timeout=timeout, env=ENV)


@pytest.mark.slow
def test_a_search_where_everything_timed_out_exits_1_with_a_hint(tmp_path):
    r = llmnas(*CNN, "--budget", "1", "--seed", "107", "--timeout", "0.001", "--store", str(tmp_path / "s"))
    assert r.returncode == 1, r.stderr
    assert "timeout 1" in r.stdout
    [line] = r.stderr.strip().splitlines()
    assert line.startswith("Error: no architecture completed an evaluation (timeout 1") and "--timeout" in line, line


def test_a_full_disk_is_one_line_and_says_what_is_safe(tmp_path, nb201_csv, monkeypatch):
    import lmdb

    from llmnas_local.store import lmdb_store

    real_write, calls = lmdb_store.LmdbStore._write, {"n": 0}

    def failing_write(self, fn):
        calls["n"] += 1
        if calls["n"] > 8:
            raise lmdb_store._one_error(self.path, lmdb.DiskError("mdb_txn_commit: No space left on device"))
        return real_write(self, fn)
    monkeypatch.setattr(lmdb_store.LmdbStore, "_write", failing_write)
    args = ["search", "--space", "nb201", "--table", str(nb201_csv), "--proposer", "random", "--budget", "50",
            "--store", str(tmp_path / "s"), "-q"]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 1, r.output
    [line] = r.output.strip().splitlines()
    assert "no space left" in line and "trials of run" in line and "free space and rerun" in line, line
    monkeypatch.setattr(lmdb_store.LmdbStore, "_write", real_write)
    with LmdbStore(tmp_path / "s", readonly=True) as st:
        n = len(list(st.trials()))
    assert f"{n} trials of run" in line and n >= 5
    assert CliRunner().invoke(cli, args).exit_code == 0                   # space again: it resumes and finishes


@pytest.mark.slow    # spawns processes
def test_a_full_stdout_is_one_line(tmp_path, nb201_csv):
    store = str(tmp_path / "s")
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", "llmnas_local.cli.main", "search", "--space", "nb201", "--table",
                            str(nb201_csv), "--proposer", "random", "--budget", "5", "--store", store, "-q"],
                           stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
        assert r.returncode == 1 and r.stderr.strip().splitlines() == [
            "Error: cannot write the output: No space left on device; what a search recorded is in its store; free "
            "space and rerun the command"], r.stderr
        r = subprocess.run([sys.executable, "-m", "llmnas_local.cli.main", "export", store], stdout=full,
                           stderr=subprocess.PIPE, text=True, timeout=120)
        assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "No space left" in r.stderr


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] not in "ZX":
                out.append(int(entry.name))
    return out


def _cpu_ticks(pid: int) -> int:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0
    return int(fields[11]) + int(fields[12])


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="watches processes through /proc (Linux)")
def test_sigterm_with_trainings_in_flight_stops_within_5_s_without_traceback(tmp_path):
    store = tmp_path / "s"
    proc = subprocess.Popen([sys.executable, "-m", "llmnas_local.cli.main", *CNN, "--budget", "20", "--epochs",
                             "500", "--workers", "2", "--seed", "107", "--store", str(store)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:                  # both workers up and computing: trainings (or start-ups) in flight
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else ""
            workers = _children(proc.pid)
            if len(workers) == 2 and sum(map(_cpu_ticks, workers)) > 800:
                break
            time.sleep(0.2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)               # an impatient second Ctrl-C: ignored, no traceback
        out, err = proc.communicate(timeout=60)
        stop_s = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130, err
    assert stop_s < 5, f"took {stop_s:.1f} s to stop"
    assert "Traceback" not in err and "interrupted:" in err and "run the same command to resume" in err, err
    time.sleep(0.5)
    assert not any(_cpu_ticks(w) for w in workers if Path(f"/proc/{w}").exists() and
                   Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] not in "ZX"), "workers outlived"
    with LmdbStore(store, readonly=True) as st:          # what was committed reads back; in-flight ones left no trace
        assert all(t.status.name != "PENDING" for t in st.trials())
