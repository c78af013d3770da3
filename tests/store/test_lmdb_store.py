"""LMDB-specific behaviour: persistence, map growth, readers in other processes, bad paths, kill -9 of a writer."""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import lmdb
import pytest

from llmnas_local.records import VAL_ACC, TrialStatus
from llmnas_local.store import FORMAT_VERSION, LmdbStore, StoreError, open_store
from tests.store.test_conformance import full_trial, make_run, make_trial

REPO = Path(__file__).resolve().parents[2]

# A reader process: opens the store read-only and answers one command per line of stdin.
READER = r"""
import sys
from llmnas_local.store import LmdbStore
s = LmdbStore(sys.argv[1], readonly=True, map_size=int(sys.argv[2]))
print("ready", flush=True)
for line in sys.stdin:
    cmd, arg = line.split()
    if cmd == "trials":
        trials = list(s.trials(arg))
        dense = all(t.seq == i and t.raw.startswith(f"ir_r1_k3_s1_e4_c16 #{i}") for i, t in enumerate(trials))
        print(s.num_trials(arg), len(trials), dense, flush=True)
    else:
        text = s.get_text(arg)
        print(-1 if text is None else len(text), flush=True)
"""

# A writer that records trials until it is killed; it prints each seq once its commit has returned.
WRITER = r"""
import sys
from llmnas_local.records import RunRecord, TrialRecord, TrialStatus
from llmnas_local.store import LmdbStore
s = LmdbStore(sys.argv[1], map_size=1 << 20)
if s.get_run("k") is None:
    s.put_run(RunRecord("k", "space", "random", {}, "train", {}, "rh", 0))
seq = s.num_trials("k")
while True:
    s.record_trial(TrialRecord("k", seq, "random", "x" * (seq * 7 % 3000), TrialStatus.COMPLETE, canonical=f"c{seq}",
                               arch_hash=f"h{seq}", recipe_hash="rh", metrics={"val_acc": float(seq)}))
    print(seq, flush=True)
    seq += 1
"""


def spawn(code: str, *args: object) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def ask(proc: subprocess.Popen, line: str) -> str:
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    answer = proc.stdout.readline().strip()
    assert answer, f"reader died: {proc.stderr.read() if proc.poll() is not None else '(no answer)'}"
    return answer


@pytest.fixture
def watchdog():
    """Kill registered processes after 120 s, so that a hung child fails the test instead of hanging it."""
    procs: list[subprocess.Popen] = []
    timer = threading.Timer(120, lambda: [p.kill() for p in procs])
    timer.start()
    yield procs
    timer.cancel()
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def fill(store: LmdbStore, run_id: str, n: int) -> None:
    start = store.num_trials(run_id)
    for seq in range(start, start + n):
        store.record_trial(make_trial(run_id, seq, arch=f"h{seq % 50}"))


# -- persistence ----------------------------------------------------------------------------------------------------------
def test_persistence_across_reopen(tmp_path):
    path = tmp_path / "store"
    trial = full_trial()
    with open_store(path) as s:
        s.put_run(make_run())
        s.put_run(make_run("run-b", seed=9))
        s.record_trial(trial)
        s.record_trial(make_trial(seq=1, arch="a1"))
        digest = s.put_text("prompt text")
        outcome = s.get_outcome(trial.arch_hash, trial.recipe_hash)
    for readonly in (False, True):
        with LmdbStore(path, readonly=readonly) as s:
            assert s.list_runs() == [make_run(), make_run("run-b", seed=9)]
            assert list(s.trials("run-a")) == [trial, make_trial(seq=1, arch="a1")]
            assert s.num_trials("run-a") == 2 and s.num_trials("run-b") == 0
            assert s.get_outcome(trial.arch_hash, trial.recipe_hash) == outcome is not None
            assert s.trials_of_arch("a1") == [make_trial(seq=1, arch="a1")]
            assert s.get_text(digest) == "prompt text"
    with open_store(path) as s:                       # and it still takes writes where it stopped
        s.record_trial(make_trial(seq=2))
        assert s.num_trials("run-a") == 3


def test_many_trials_cross_read_chunks(tmp_path):
    with LmdbStore(tmp_path / "s", durable=False) as s:
        for rid in ("r", "r2", "q"):
            s.put_run(make_run(rid))
        fill(s, "r", 4500)                            # more than two chunks of trials()
        fill(s, "r2", 30)
        fill(s, "q", 5)
        assert [t.seq for t in s.trials("r")] == list(range(4500))
        assert s.num_trials("r") == 4500 and s.num_trials("r2") == 30 and s.num_trials("q") == 5
        every = [(t.run_id, t.seq) for t in s.trials()]
        assert every == [("q", i) for i in range(5)] + [("r", i) for i in range(4500)] + [("r2", i) for i in range(30)]
        assert len(s.trials_of_arch("h7")) == 4500 // 50 + 1


# -- map growth and readers in other processes ----------------------------------------------------------------------------
def test_map_grows_past_initial_size(tmp_path):
    path = tmp_path / "s"
    texts = [f"{i}:" + "x" * (300_000 + i) for i in range(40)]        # about 12 MB into a 1 MiB map
    with LmdbStore(path, map_size=1 << 20) as s:
        s.put_run(make_run())
        digests = [s.put_text(t) for t in texts]
        fill(s, "run-a", 20)
        assert s.env.info()["map_size"] >= 8 << 20
        assert [s.get_text(d) for d in digests] == texts
    with LmdbStore(path, readonly=True, map_size=1 << 20) as s:
        assert [s.get_text(d) for d in digests] == texts and s.num_trials("run-a") == 20


@pytest.mark.slow    # spawns processes
def test_reader_process_sees_commits_and_growth(tmp_path, watchdog):
    path = tmp_path / "s"
    with LmdbStore(path, map_size=1 << 20) as s:
        s.put_run(make_run())
        reader = spawn(READER, path, 1 << 20)
        watchdog.append(reader)
        assert reader.stdout.readline().strip() == "ready", reader.stderr.read()
        assert ask(reader, "trials run-a") == "0 0 True"
        fill(s, "run-a", 10)
        assert ask(reader, "trials run-a") == "10 10 True"
        # Grow the map well past the reader's 1 MiB mapping: it must adopt the new size and keep reading.
        digests = [s.put_text(f"{i}" * 400_000) for i in range(1, 8)]
        fill(s, "run-a", 5)
        assert s.env.info()["map_size"] > 1 << 20
        assert ask(reader, f"text {digests[-1]}") == "400000"
        assert ask(reader, "trials run-a") == "15 15 True"
        fill(s, "run-a", 1)
        assert ask(reader, "trials run-a") == "16 16 True"
        reader.stdin.close()
        assert reader.wait(60) == 0, reader.stderr.read()


# -- bad paths ------------------------------------------------------------------------------------------------------------
def expect_error(path: Path, match: str, **kw) -> None:
    with pytest.raises(StoreError, match=match) as e:
        LmdbStore(path, **kw)
    assert "\n" not in str(e.value) and str(path) in str(e.value)


def test_bad_paths(tmp_path):
    (tmp_path / "file").write_text("hello")
    expect_error(tmp_path / "file", "not a store")
    expect_error(tmp_path / "file", "not a store", readonly=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    expect_error(tmp_path / "other", "other files")
    expect_error(tmp_path / "missing", "no store at", readonly=True)
    (tmp_path / "empty").mkdir()
    expect_error(tmp_path / "empty", "no store at", readonly=True)
    assert not (tmp_path / "missing").exists()

    env = lmdb.open(str(tmp_path / "foreign"))
    with env.begin(write=True) as txn:
        txn.put(b"key", b"value")
    env.close()
    expect_error(tmp_path / "foreign", "without llmnas_local meta")
    expect_error(tmp_path / "foreign", "without llmnas_local meta", readonly=True)

    env = lmdb.open(str(tmp_path / "foreign-db"), max_dbs=2)
    env.open_db(b"meta")
    env.close()
    expect_error(tmp_path / "foreign-db", "no llmnas_local kind")

    (tmp_path / "garbage").mkdir()
    (tmp_path / "garbage" / "data.mdb").write_bytes(random.Random(0).randbytes(64 << 10))
    expect_error(tmp_path / "garbage", "cannot open")


def test_newer_format(tmp_path):
    path = tmp_path / "s"
    open_store(path).close()
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        txn.put(b"format", str(FORMAT_VERSION + 1).encode(), db=env.open_db(b"meta", txn=txn))
    env.close()
    expect_error(path, "newer")
    expect_error(path, "newer", readonly=True)


def test_interrupted_creation_is_completed(tmp_path):
    lmdb.open(str(tmp_path / "s")).close()             # an environment whose first commit never happened
    with open_store(tmp_path / "s") as s:
        s.put_run(make_run())
    with open_store(tmp_path / "s", readonly=True) as s:
        assert s.get_run("run-a") == make_run()


def test_open_twice_in_one_process(tmp_path):
    with open_store(tmp_path / "s"):
        expect_error(tmp_path / "s", "already open")
        expect_error(tmp_path / "s", "already open", readonly=True)


def test_readonly_refuses_writes(tmp_path):
    open_store(tmp_path / "s").close()
    with LmdbStore(tmp_path / "s", readonly=True) as s:
        for write in (lambda: s.put_run(make_run()), lambda: s.record_trial(make_trial()),
                      lambda: s.put_text("t")):
            with pytest.raises(StoreError, match="read-only"):
                write()


def test_bad_keys(tmp_path):
    with open_store(tmp_path / "s") as s:
        with pytest.raises(StoreError, match="NUL"):
            s.put_run(make_run("a\x00b"))
        with pytest.raises(StoreError, match="too long"):
            s.put_run(make_run("r" * 600))
        s.put_run(make_run())
        with pytest.raises(StoreError, match="NUL"):
            s.record_trial(make_trial(arch="a\x00"))
        assert s.num_trials("run-a") == 0


# -- crash safety -----------------------------------------------------------------------------------------------------------
@pytest.mark.slow    # spawns processes
def test_kill_9_loses_no_committed_trial(tmp_path, watchdog):
    path = tmp_path / "s"
    rng = random.Random(1)
    last = -1
    for _ in range(3):
        writer = spawn(WRITER, path)
        watchdog.append(writer)
        target = last + rng.randint(40, 200)
        while last < target:
            line = writer.stdout.readline()
            assert line, f"writer died: {writer.stderr.read()}"
            last = int(line)
        writer.send_signal(signal.SIGKILL)
        writer.wait(60)
        assert writer.returncode == -signal.SIGKILL
        with LmdbStore(path, readonly=True) as s:
            n = s.num_trials("k")
            assert n >= last + 1                       # every trial whose commit returned is there
            trials = list(s.trials("k"))
            assert [t.seq for t in trials] == list(range(n))
            for t in trials:
                assert t.raw == "x" * (t.seq * 7 % 3000) and t.canonical == f"c{t.seq}"
                assert s.get_outcome(f"h{t.seq}", "rh").metrics == {VAL_ACC: float(t.seq)}
            last = n - 1                               # the next writer resumes after the last committed trial
    with open_store(path) as s:                       # and the store still takes writes
        s.record_trial(make_trial("k", s.num_trials("k"), arch="final", recipe_hash="rh"))
        assert s.get_outcome("final", "rh").status is TrialStatus.COMPLETE
        assert s.env.info()["map_size"] > 1 << 20     # the writers grew the map on the way


# -- the fast record codec ---------------------------------------------------------------------------------------------------
def test_fast_codec_matches_records():
    from llmnas_local.store.lmdb_store import dump_trial, load_trial
    for trial in (full_trial(), make_trial(arch=None, status=TrialStatus.PENDING)):
        assert dump_trial(trial) == trial.dumps()
        back = load_trial(trial.dumps())
        assert back == trial and type(back.status) is TrialStatus
    old = make_trial().to_json()
    del old["created_at"]                               # a record written before a field existed: the slow way
    assert load_trial(json.dumps(old).encode()).seq == 0


def test_codec_falls_back_when_the_fast_parser_refuses(monkeypatch, tmp_path):
    """orjson (used when installed) refuses NaN, which json writes: the stdlib parser must take over."""
    from llmnas_local.store import lmdb_store

    def refuse(raw):
        raise ValueError("NaN")
    monkeypatch.setattr(lmdb_store, "_fast_loads", refuse)
    with open_store(tmp_path / "s") as s:
        s.put_run(make_run())
        s.record_trial(make_trial(metrics={VAL_ACC: float("nan")}))
        assert next(s.trials("run-a")).seq == 0 and s.get_outcome("a0", make_trial().recipe_hash) is not None


@pytest.mark.slow    # spawns processes
def test_reader_while_a_writer_streams(tmp_path, watchdog):
    """A reader that polls while another process commits (and grows the map) always sees a dense, intact prefix."""
    path = tmp_path / "s"
    writer = spawn(WRITER, path)
    watchdog.append(writer)
    assert writer.stdout.readline(), writer.stderr.read()            # the store exists and holds a trial
    seen = []
    with LmdbStore(path, readonly=True, map_size=1 << 20) as s:
        while len(seen) < 25 or seen[-1] < 150:
            trials = list(s.trials("k"))
            assert [t.seq for t in trials] == list(range(len(trials)))
            assert all(t.raw == "x" * (t.seq * 7 % 3000) for t in trials)
            assert s.num_trials("k") >= len(trials)
            seen.append(len(trials))
            assert writer.poll() is None, writer.stderr.read()
    writer.kill()
    assert seen == sorted(seen) and seen[-1] > seen[0]


def test_texts_stored_once_on_disk(tmp_path):
    with open_store(tmp_path / "s") as s:
        for _ in range(3):
            s.put_text("the same prompt")
        with s.env.begin() as txn:
            assert txn.stat(s._texts)["entries"] == 1
