"""Damaged store files, a second writer, a full disk: one line naming the store, never a crash or a silent loss."""
from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmnas_local.cli.main import cli
from llmnas_local.dsl import get_space
from llmnas_local.search import Search
from llmnas_local.store import LmdbStore, StoreError, open_store
from tests.faults.common import ScriptedEvaluator, ScriptedProposer, assert_kept

SPACE = get_space("nb201")
TEXTS = list(dict.fromkeys(SPACE.canonical(SPACE.parse(SPACE.sample(random.Random(i)))) for i in range(600)))[:300]
assert len(TEXTS) == 300
COMMANDS = (["top"], ["export"], ["store", "verify"])


def make_store(path: Path, n: int = 300):
    with open_store(path) as st:
        search = Search(SPACE, ScriptedProposer(TEXTS[:n]), ScriptedEvaluator(), st, seed=0)
        search.run(n)
        return list(st.trials()), search.run_id


def run_cli(*args: str):
    """The CLI in a subprocess: a SIGBUS must show as a signal, not kill the test."""
    return subprocess.run([sys.executable, "-m", "llmnas_local.cli.main", *args], capture_output=True, text=True,
                          timeout=120)


def assert_one_line_error(r, *needles: str) -> None:
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), r.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.slow    # spawns processes
def test_a_truncated_data_file_is_an_error_not_a_sigbus(tmp_path):
    path = tmp_path / "s"
    make_store(path)
    data = path / "data.mdb"
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size // 2)
    for command in COMMANDS:
        assert_one_line_error(run_cli(*command, str(path)), str(path), "truncated")
    assert_one_line_error(run_cli("search", "--space", "nb201", "--table", "/nonexistent.csv", "--proposer", "random",
                                  "--store", str(path), "-q"), "/nonexistent.csv")   # the table is checked first
    with pytest.raises(StoreError, match="truncated"):
        LmdbStore(path)


@pytest.mark.slow    # spawns processes
def test_an_empty_data_file_is_refused_not_recreated(tmp_path):
    path = tmp_path / "s"
    make_store(path, 5)
    (path / "data.mdb").write_bytes(b"")
    for command in COMMANDS:
        assert_one_line_error(run_cli(*command, str(path)), str(path), "empty")
    with pytest.raises(StoreError, match="empty"):
        open_store(path)
    assert (path / "data.mdb").stat().st_size == 0          # left as it was, for the user to restore


@pytest.mark.slow    # spawns processes
def test_zeroed_meta_pages_are_not_lmdb(tmp_path):
    path = tmp_path / "s"
    make_store(path, 5)
    with open(path / "data.mdb", "r+b") as f:
        f.write(bytes(8192))
    assert_one_line_error(run_cli("top", str(path)), str(path), "not an LMDB file")


def garble(path: Path, page: int, seed: int = 0) -> None:
    with open(path / "data.mdb", "r+b") as f:
        f.seek(page * 4096 + 16)                 # keep the page header: LMDB reads the page as what it claims to be
        f.write(random.Random(seed).randbytes(4096 - 16))


def leaf_pages(path: Path) -> list[int]:
    data = (path / "data.mdb").read_bytes()
    return [i for i in range(2, len(data) // 4096) if int.from_bytes(data[i * 4096 + 10:i * 4096 + 12], "little") & 2]


@pytest.mark.slow    # spawns processes
def test_a_garbled_page_is_one_line_and_verify_names_it(tmp_path):
    path = tmp_path / "s"
    before, _ = make_store(path)
    pages = leaf_pages(path)
    assert pages
    for i, page in enumerate(pages[:6]):                  # a few leaf pages, each in a fresh copy
        copy = tmp_path / f"copy{i}"
        copy.mkdir()
        (copy / "data.mdb").write_bytes((path / "data.mdb").read_bytes())
        garble(copy, page, seed=i)
        for command in (["top"], ["export"]):
            r = run_cli(*command, str(copy))
            assert r.returncode in (0, 2) and "Traceback" not in r.stderr, r.stderr
            if r.returncode == 2:
                assert_one_line_error(r, str(copy))
        r = run_cli("store", "verify", str(copy))
        assert r.returncode in (0, 1, 2) and "Traceback" not in r.stderr, r.stderr
        if r.returncode == 1:
            assert "problem:" in r.stdout
        elif r.returncode == 0:                           # what verify passes must read back as it was written
            with LmdbStore(copy, readonly=True) as st:
                assert [t.dumps() for t in st.trials()] == [t.dumps() for t in before]


def test_verify_reports_lost_outcomes(tmp_path):
    """An outcome that vanished (the effect of a garbled outcomes page) is reported, not silently retrained."""
    import lmdb

    path = tmp_path / "s"
    before, _ = make_store(path, 20)
    r = CliRunner().invoke(cli, ["store", "verify", str(path)])
    assert r.exit_code == 0 and "ok: every record reads back" in r.output and "20 trials" in r.output, r.output
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin(write=True) as txn:
        db = env.open_db(b"outcomes", txn=txn)
        key = next(iter(txn.cursor(db=db).iternext(values=False)))
        txn.delete(key, db=db)
        texts = env.open_db(b"texts", txn=txn)
        txn.put(b"0" * 64, b"not the text of this hash", db=texts)
    env.close()
    r = CliRunner().invoke(cli, ["store", "verify", str(path)])
    assert r.exit_code == 1, r.output
    assert "is missing" in r.output and "does not match its hash" in r.output and "2 problem(s)" in r.output


@pytest.mark.slow    # spawns processes
def test_a_second_writer_of_a_run_is_refused_at_once_and_readers_go_on(tmp_path):
    path = tmp_path / "s"
    with open_store(path) as st:
        first = Search(SPACE, ScriptedProposer(TEXTS[:3]), ScriptedEvaluator(), st, seed=0)
        first.run(2)
        before = list(st.trials())
        # Another process: the same search is refused before it evaluates anything.
        code = ("import sys; from llmnas_local.store import open_store, StoreError\n"
                f"s = open_store({str(path)!r})\n"
                f"try:\n    s.lock_run({first.run_id!r})\nexcept StoreError as e:\n    print(e); sys.exit(3)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert r.returncode == 3 and f"is in use by PID {os.getpid()}" in r.stdout, r.stdout + r.stderr
        for command in (["top"], ["export"]):            # readers are not writers: they go on
            r = run_cli(*command, str(path))
            assert r.returncode == 0 and r.stdout, r.stderr
        first.run(3)
    with open_store(path) as st:                            # the lock went with the store: the run resumes
        Search(SPACE, ScriptedProposer(TEXTS[5:8]), ScriptedEvaluator(), st, seed=0).run(4)
        assert_kept(before, list(st.trials(first.run_id)))


@pytest.mark.slow    # spawns processes
def test_the_lock_dies_with_its_process(tmp_path):
    path = tmp_path / "s"
    open_store(path).close()
    code = (f"import os; from llmnas_local.store import open_store\ns = open_store({str(path)!r})\n"
            f"s.lock_run('r'); os.kill(os.getpid(), 9)")
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == -9
    with open_store(path) as st:
        st.lock_run("r")


def test_a_full_disk_keeps_every_committed_trial(tmp_path, monkeypatch):
    """lmdb.DiskError at a commit: a one-line StoreFullError; a rerun with space again resumes."""
    import lmdb

    from llmnas_local.store import StoreFullError
    from llmnas_local.store import lmdb_store

    path = tmp_path / "s"
    real_write = lmdb_store.LmdbStore._write
    calls = {"n": 0}

    def failing_write(self, fn):
        calls["n"] += 1
        if calls["n"] > 6:
            return real_write(self, lambda txn: (_ for _ in ()).throw(lmdb.DiskError("mdb_txn_commit: No space left "
                                                                                     "on device")))
        return real_write(self, fn)
    monkeypatch.setattr(lmdb_store.LmdbStore, "_write", failing_write)
    with open_store(path) as st:
        search = Search(SPACE, ScriptedProposer(TEXTS[:20]), ScriptedEvaluator(), st, seed=0)
        with pytest.raises(StoreFullError, match=f"{path}: no space left") as e:
            search.run(20)
        assert "\n" not in str(e.value)
        before = list(st.trials())
    monkeypatch.setattr(lmdb_store.LmdbStore, "_write", real_write)
    assert len(before) >= 4
    with open_store(path) as st:
        Search(SPACE, ScriptedProposer(TEXTS[:20]), ScriptedEvaluator(), st, seed=0).run(20)
        after = list(st.trials())
    assert_kept(before, after)
    assert len({t.arch_hash for t in after if t.status.evaluated}) == 20
