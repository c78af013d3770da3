"""The durable store: one LMDB environment per store directory (see :class:`BaseStore` for the contract).

Layout (named databases of one environment; every value is JSON, every key bytes)::

    meta        b"kind" -> b"llmnas_local.store", b"format" -> b"1", b"trial_no" -> 8-byte BE count of all trials
    runs        run_id -> RunRecord JSON
    trials      run_id \\0 seq(8-byte BE) -> TrialRecord.dumps()       (a run's trials are one prefix, in seq order)
    arch_index  arch_hash \\0 trial_no(8-byte BE) -> trials key        (oldest first across runs)
    outcomes    arch_hash \\0 recipe_hash -> Outcome JSON              (first one wins, never overwritten)
    texts       sha256 hex -> UTF-8 text
    finals      arch_hash \\0 recipe_hash -> FinalRecord JSON          (``llmnas train``; created on first use, so a
                                                                      store written before it stays format 1)

Every write is one transaction committed with fsync (``sync=True``). The map starts at ``map_size`` and doubles on
``MapFullError``; a process whose map is smaller than the file adopts the new size on ``MapResizedError``. Reads use
short transactions (``trials()`` reads in chunks), so no transaction stays open between calls or between yields.

Damage: ``data.mdb`` is checked before it is mapped (empty, not LMDB, or shorter than its last committed page: a
read of a missing page would be a SIGBUS); any later LMDB error or undecodable record is a one-line
:class:`StoreError` naming the store, and a full disk is a :class:`StoreFullError`. A new store is created in a
sibling directory and renamed into place, so a crash never leaves a half-created one. ``locks/`` holds one lock file
per run being written (``lock_run``).
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import gc
import hashlib
import json
import os
import shutil
import struct
from pathlib import Path
from typing import Callable, Iterable, Iterator, TypeVar

import lmdb

from llmnas_local.records import FinalRecord, LLMCall, Outcome, RunRecord, TrialRecord, TrialStatus
from llmnas_local.store.base import (FORMAT_VERSION, BaseStore, StoreError, StoreFullError, stores_outcome,
                                     text_hash)

T = TypeVar("T")

KIND = b"llmnas_local.store"
_DBS = (b"meta", b"runs", b"trials", b"arch_index", b"outcomes", b"texts")
_FINALS = b"finals"            # optional: stores written before final trainings lack it
_U64 = struct.Struct(">Q")
_SEP = b"\x00"
_MAX_KEY = 511                 # LMDB's default maximum key size
_CHUNK = 2048                  # trials read per read transaction by trials()
_MAX_MAP = 1 << 40             # growth stops at 1 TiB
_MAGIC = 0xBEEFC0DE            # LMDB's meta page: magic u32 at 16, page size (FREE_DBI md_pad) u32 at 40,
_META = struct.Struct("<I")    # last page u64 at 136, txn id u64 at 144 (lmdb 0.9, 64-bit builds)
_LAST = struct.Struct("<QQ")
_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _one_line(e: object) -> str:
    return " ".join(str(e).split())


def check_data_file(store: Path) -> None:
    """Refuse a ``data.mdb`` that is empty, not LMDB's, or shorter than the last page its newest meta page commits:
    LMDB would map it and die of SIGBUS on the first read past the end. Reads the two meta pages only."""
    data = store / "data.mdb"
    try:
        size = data.stat().st_size
        with open(data, "rb") as f:
            head = f.read(16 << 10)
            metas = []
            for off in (0, None):
                if off is None:       # the second meta page is one page further
                    if not metas:
                        break
                    off = metas[0][0]
                    f.seek(off)
                    page = f.read(256)
                else:
                    page = head[:256]
                if len(page) >= 152 and _META.unpack_from(page, 16)[0] == _MAGIC:
                    psize = _META.unpack_from(page, 40)[0]
                    last_pg, txnid = _LAST.unpack_from(page, 136)
                    metas.append((psize, last_pg, txnid))
    except OSError as e:
        raise StoreError(f"{store}: cannot read data.mdb: {e.strerror}") from None
    if size == 0:
        raise StoreError(f"{store}: damaged store: data.mdb is empty (0 bytes); restore it from a copy, or remove "
                         f"{store} to start a new store")
    metas = [m for m in metas if m[0] >= 512 and m[0] & (m[0] - 1) == 0]
    if not metas:
        raise StoreError(f"{store}: cannot open as a store: data.mdb is not an LMDB file")
    psize, last_pg, _ = max(metas, key=lambda m: m[2])
    need = (last_pg + 1) * psize
    if size < need:
        raise StoreError(f"{store}: damaged store: data.mdb is truncated ({size:,} bytes, its last page ends at "
                         f"{need:,}); restore it from a copy")


def _one_error(path: Path, e: lmdb.Error, writing: bool = False) -> StoreError:
    """An LMDB error as one line naming the store; a full disk as StoreFullError."""
    code = getattr(e, "errno", None) or (e.args[0] if e.args and isinstance(e.args[0], int) else None)
    text = _one_line(e)
    if isinstance(e, lmdb.DiskError) or code in _FULL_ERRNOS or "No space left" in text:
        return StoreFullError(f"{path}: no space left to write the store ({text})")
    if writing and isinstance(e, (lmdb.ReadonlyError,)):
        return StoreError(f"{path}: cannot write the store: {text}")
    return StoreError(f"{path}: damaged store or read error: {text}; run llmnas store verify {path}")


def _key_part(value: str, what: str) -> bytes:
    if not isinstance(value, str) or _SEP.decode() in value:
        raise StoreError(f"{what} must be a string without NUL characters, got {value!r}")
    return value.encode()


def trial_key(run_id: str, seq: int) -> bytes:
    if not 0 <= seq < 1 << 63:
        raise StoreError(f"trial seq must be a non-negative int, got {seq!r}")
    return run_prefix(run_id) + _U64.pack(seq)


def run_prefix(run_id: str) -> bytes:
    key = _key_part(run_id, "run id") + _SEP
    if len(key) + 8 > _MAX_KEY:
        raise StoreError(f"run id too long ({len(key) - 1} bytes, at most {_MAX_KEY - 9})")
    return key


def outcome_key(arch_hash: str, recipe_hash: str) -> bytes:
    key = _key_part(arch_hash, "arch hash") + _SEP + _key_part(recipe_hash, "recipe hash")
    if len(key) > _MAX_KEY:
        raise StoreError(f"arch hash + recipe hash too long ({len(key)} bytes, at most {_MAX_KEY})")
    return key


# -- record codec: the records' own JSON, read and written faster than TrialRecord.loads/dumps --------------------------
try:                                   # optional: orjson parses the same JSON about 2x faster
    from orjson import loads as _fast_loads
except ImportError:                    # pragma: no cover - depends on the environment
    _fast_loads = json.loads

_TRIAL_NAMES = tuple(f.name for f in dataclasses.fields(TrialRecord))
_TRIAL_FIELDS = frozenset(_TRIAL_NAMES)
_STATUS = {int(s): s for s in TrialStatus}
_FAST_NEW = not hasattr(TrialRecord, "__slots__")    # what TrialRecord.__post_init__ does (read llm) is done here


def _loads(raw: bytes):
    try:
        return _fast_loads(raw)
    except ValueError:                 # orjson refuses NaN/Infinity, which json writes (a diverged loss): json takes them
        return json.loads(raw)


def _make_trial(d: dict) -> TrialRecord:
    return _make_trials([d])[0]


def _make_trials(ds: list[dict], fields=_TRIAL_FIELDS, statuses=_STATUS, new=object.__new__,
                 set_attr=object.__setattr__) -> list[TrialRecord]:
    """``[TrialRecord.from_json(d) for d in ds]``. A record with exactly the current fields skips the frozen dataclass
    ``__init__`` (one ``object.__setattr__`` per field) and takes ``d`` as its ``__dict__``; any other record (an older
    one, a bad status) goes through ``from_json``. Arguments are bound as defaults: this loop runs 100,000 times."""
    out = []
    append = out.append
    for d in ds:
        if _FAST_NEW and d.keys() == fields and (status := statuses.get(d["status"])) is not None:
            d["status"] = status
            llm = d["llm"]
            d["llm"] = (LLMCall.from_json(llm) if llm else None) if isinstance(llm, dict) else llm
            trial = new(TrialRecord)
            set_attr(trial, "__dict__", d)
            append(trial)
        else:
            append(TrialRecord.from_json(d))
    return out


def load_trial(raw: bytes) -> TrialRecord:
    """``TrialRecord.loads(raw)``, faster."""
    return _make_trial(_loads(raw))


def load_trials(raws: list[bytes]) -> list[TrialRecord]:
    """``[TrialRecord.loads(r) for r in raws]``, faster."""
    if not raws:
        return []
    with _gc_paused():
        return _load_array(b"[" + b",".join(raws) + b"]")


def _load_array(blob: bytes) -> list[TrialRecord]:
    """The trials of a JSON array of records: one array is parsed, so its keys are shared."""
    return _make_trials(_loads(blob))


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while records are read: they hold no cycles, and its passes over the records
    read so far (triggered by the allocations of the next ones) took a third of the time of loading a large run."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def dump_trial(trial: TrialRecord) -> bytes:
    """``trial.dumps()``, the same bytes, without ``dataclasses.asdict``'s deep copy (which is 80% of its time)."""
    d = {name: getattr(trial, name) for name in _TRIAL_NAMES}
    d["status"] = int(trial.status)
    d["llm"] = trial.llm.to_json() if trial.llm is not None else {}
    try:
        return _dumps(d)
    except TypeError:           # a value JSON does not take as it is (a tuple key, a nested dataclass): the slow way
        return trial.dumps()


def _dumps(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


class LmdbStore(BaseStore):
    """A store in the directory ``path`` (created if missing, unless ``readonly``).

    ``readonly=True`` opens an existing store for reading, alongside the process that writes it; it sees every commit.
    ``map_size`` is the initial map size in bytes (the map grows by itself). ``durable=False`` skips the fsync of each
    commit (one at close instead): for bulk loads and benchmarks only, as a machine crash may lose the last commits.
    """

    def __init__(self, path: str | os.PathLike, readonly: bool = False, *, map_size: int = 64 << 20,
                 durable: bool = True):
        self.path = Path(path)
        self.readonly = readonly
        self._env: lmdb.Environment | None = None
        self._locks: dict[str, int] = {}
        self._options = dict(map_size=map_size, subdir=True, lock=True, max_dbs=len(_DBS) + 2, max_readers=126,
                             sync=durable, metasync=durable, meminit=False)
        if self._check_path():
            self._create_atomically()
        check_data_file(self.path)
        try:
            env = lmdb.open(str(self.path), readonly=readonly, create=False, **self._options)
        except lmdb.Error as e:
            raise StoreError(f"{self.path}: cannot open as a store: {_one_line(e)}") from None
        try:
            env.reader_check()        # free reader slots of killed processes (they would pin old pages)
            self._dbs = self._open_dbs(env)
        except lmdb.Error as e:
            env.close()
            raise _one_error(self.path, e) from None
        except BaseException:
            env.close()
            raise
        self._env = env
        self._meta, self._runs, self._trials, self._arch, self._outcomes, self._texts = self._dbs
        self._finals = None            # opened on first use (see _finals_db)

    # -- opening ------------------------------------------------------------------------------------------------------
    def _check_path(self) -> bool:
        """Whether the store must be created (no directory, or an empty one)."""
        p = self.path
        if not p.exists():
            if self.readonly:
                raise StoreError(f"no store at {p}")
            return True
        if not p.is_dir():
            raise StoreError(f"{p}: not a store (a file, not a store directory)")
        names = set(os.listdir(p))
        if "data.mdb" not in names:
            if names - {"lock.mdb"}:
                raise StoreError(f"{p}: not a store (the directory holds other files and no data.mdb)")
            if self.readonly:
                raise StoreError(f"no store at {p}")
            return True
        return False

    def _create_atomically(self) -> None:
        """Create the store in a sibling directory and rename it into place (onto a missing or empty directory): a
        crash leaves either no store or a whole one, never an empty data.mdb. Another process that creates the same
        store at the same time wins or loses the rename; either way one whole store is there."""
        p = self.path
        tmp = p.parent / f".{p.name}.creating-{os.getpid()}-{id(self):x}"
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            env = lmdb.open(str(tmp), create=True, **{**self._options, "sync": True, "metasync": True})
            try:
                self._create(env)
            finally:
                env.close()
            leftover = p / "lock.mdb"
            if p.is_dir() and set(os.listdir(p)) == {"lock.mdb"}:    # an older creation that died before data.mdb
                leftover.unlink(missing_ok=True)
            try:
                os.rename(tmp, p)
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not (p / "data.mdb").exists():
                    raise
        except OSError as e:
            raise StoreError(f"{p}: cannot create the store: {e.strerror}") from None
        except lmdb.Error as e:
            raise _one_error(p, e, writing=True) from None
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _open_dbs(self, env: lmdb.Environment) -> tuple:
        p = self.path
        try:
            meta = env.open_db(b"meta", create=False)
        except lmdb.Error:
            with env.begin() as txn:
                empty = txn.stat()["entries"] == 0
            if empty and not self.readonly:      # a fresh environment (or one whose creation never committed)
                return self._create(env)
            if any(self._has_db(env, name) for name in _DBS[1:]):
                raise StoreError(f"{p}: damaged store: its meta database is unreadable; run llmnas store verify "
                                 f"{p}") from None
            raise StoreError(f"{p}: not a store (an LMDB environment without llmnas_local meta), or a store whose "
                             f"main page is damaged") from None
        with env.begin() as txn:
            kind, fmt = txn.get(b"kind", db=meta), txn.get(b"format", db=meta)
        if kind != KIND or fmt is None or not fmt.isdigit():
            raise StoreError(f"{p}: not a store (LMDB meta has no llmnas_local kind/format)")
        if int(fmt) > FORMAT_VERSION:
            raise StoreError(f"{p}: store format {int(fmt)} is newer than this llmnas_local reads "
                             f"(format {FORMAT_VERSION}); upgrade llmnas_local")
        try:
            return tuple(env.open_db(name, create=False) for name in _DBS)
        except lmdb.Error:
            raise StoreError(f"{p}: damaged store (a named database is missing)") from None

    @staticmethod
    def _has_db(env: lmdb.Environment, name: bytes) -> bool:
        try:
            env.open_db(name, create=False)
            return True
        except lmdb.Error:
            return False

    def _create(self, env: lmdb.Environment) -> tuple:
        with env.begin(write=True) as txn:
            dbs = tuple(env.open_db(name, txn=txn, create=True) for name in _DBS)
            txn.put(b"kind", KIND, db=dbs[0])
            txn.put(b"format", str(FORMAT_VERSION).encode(), db=dbs[0])
            txn.put(b"trial_no", _U64.pack(0), db=dbs[0])
        return dbs

    # -- transactions -------------------------------------------------------------------------------------------------
    @property
    def env(self) -> lmdb.Environment:
        if self._env is None:
            raise StoreError(f"{self.path}: store is closed")
        return self._env

    def _read(self, fn: Callable[[lmdb.Transaction], T], buffers: bool = False) -> T:
        env = self.env
        while True:
            try:
                with env.begin(buffers=buffers) as txn:
                    return fn(txn)
            except lmdb.MapResizedError:     # another process grew the map past ours: adopt its size
                env.set_mapsize(0)
            except lmdb.Error as e:
                raise _one_error(self.path, e) from None
            except (ValueError, TypeError, KeyError) as e:   # a record that does not decode
                raise self._damaged(e) from None

    def _write(self, fn: Callable[[lmdb.Transaction], T]) -> T:
        env = self.env
        if self.readonly:
            raise StoreError(f"{self.path}: store opened read-only")
        while True:
            try:
                with env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                size = env.info()["map_size"] * 2
                if size > _MAX_MAP:
                    raise StoreError(f"{self.path}: store map would exceed {_MAX_MAP >> 30} GiB") from None
                env.set_mapsize(size)
            except lmdb.MapResizedError:
                env.set_mapsize(0)
            except lmdb.Error as e:
                raise _one_error(self.path, e, writing=True) from None
            except (ValueError, TypeError, KeyError) as e:
                raise self._damaged(e) from None

    def _damaged(self, e: Exception) -> StoreError:
        return StoreError(f"{self.path}: damaged store: a record does not decode ({type(e).__name__}: "
                          f"{_one_line(e)[:200]}); run llmnas store verify {self.path}")

    # -- writers ----------------------------------------------------------------------------------------------------
    def lock_run(self, run_id: str) -> None:
        """Hold ``run_id`` for this store object until ``close()``: another writer of the run, in any process, is
        refused with the holder's PID. The lock is an ``flock`` on ``locks/<sha256 of the run id>.lock``: it dies with
        its process, so a killed search leaves nothing to clean up."""
        if self.readonly:
            raise StoreError(f"{self.path}: store opened read-only")
        if run_id in self._locks:
            return
        name = hashlib.sha256(run_id.encode()).hexdigest()[:32] + ".lock"
        try:
            (self.path / "locks").mkdir(exist_ok=True)
            fd = os.open(self.path / "locks" / name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"{self.path}: cannot create the lock of run {run_id!r}: {e.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip()
            os.close(fd)
            raise StoreError(f"run {run_id!r} in {self.path} is in use by PID {holder or '(starting)'}: one writer "
                             f"per run; wait for it to finish or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._locks[run_id] = fd

    # -- runs -----------------------------------------------------------------------------------------------------------
    def put_run(self, run: RunRecord) -> None:
        key = run_prefix(run.run_id)[:-1]

        def put(txn: lmdb.Transaction) -> None:
            if not txn.put(key, _dumps(run.to_json()), overwrite=False, db=self._runs):
                raise StoreError(f"run {run.run_id!r} already exists in {self.path}")
        self._write(put)

    def get_run(self, run_id: str) -> RunRecord | None:
        key = run_prefix(run_id)[:-1]
        raw = self._read(lambda txn: txn.get(key, db=self._runs))
        try:
            return None if raw is None else RunRecord.from_json(json.loads(raw))
        except (ValueError, TypeError, KeyError) as e:
            raise self._damaged(e) from None

    def list_runs(self) -> list[RunRecord]:
        raws = self._read(lambda txn: list(txn.cursor(db=self._runs).iternext(keys=False)))
        try:
            return [RunRecord.from_json(json.loads(r)) for r in raws]
        except (ValueError, TypeError, KeyError) as e:
            raise self._damaged(e) from None

    # -- trials ---------------------------------------------------------------------------------------------------------
    def record_trial(self, trial: TrialRecord) -> None:
        key = trial_key(trial.run_id, trial.seq)
        value = dump_trial(trial)
        okey = outcome_key(trial.arch_hash, trial.recipe_hash) if stores_outcome(trial) else None
        akey = _key_part(trial.arch_hash, "arch hash") + _SEP if trial.arch_hash is not None else None
        if akey is not None and len(akey) + 8 > _MAX_KEY:
            raise StoreError(f"arch hash too long ({len(akey) - 1} bytes)")

        def write(txn: lmdb.Transaction) -> None:
            if txn.get(_key_part(trial.run_id, "run id"), db=self._runs) is None:
                raise StoreError(f"trial of unknown run {trial.run_id!r}: put_run first")
            if txn.get(key, db=self._trials) is not None:
                raise StoreError(f"trial {trial.seq} of run {trial.run_id!r} exists; finished trials are immutable")
            n = self._count(txn, trial.run_id)
            if trial.seq != n:
                raise StoreError(f"trial seq {trial.seq} of run {trial.run_id!r} breaks density: the next seq is {n}")
            last = txn.cursor(db=self._trials)
            # Appending (the newest run's trials) fills pages instead of splitting them in half: half the size.
            txn.put(key, value, append=not last.last() or last.key() < key, db=self._trials)
            if akey is not None:
                no = _U64.unpack(txn.get(b"trial_no", db=self._meta))[0]
                txn.put(akey + _U64.pack(no), key, db=self._arch)
                txn.put(b"trial_no", _U64.pack(no + 1), db=self._meta)
            if okey is not None:
                outcome = _dumps(Outcome(trial.status, trial.metrics, trial.error, trial.timings).to_json())
                if not txn.put(okey, outcome, overwrite=False, db=self._outcomes) and not trial.from_store:
                    if Outcome.from_json(_loads(txn.get(okey, db=self._outcomes))).transient:
                        txn.put(okey, outcome, db=self._outcomes)     # a new evaluation replaces a transient one
        self._write(write)

    def _count(self, txn: lmdb.Transaction, run_id: str) -> int:
        """Trials of a run: one past the last seq under its prefix (seqs are dense). O(log n)."""
        prefix = run_prefix(run_id)
        cur = txn.cursor(db=self._trials)
        # The first key after the run's prefix range is prefix[:-1] + b"\x01"; the one before it is the run's last.
        found = cur.set_range(prefix[:-1] + b"\x01")
        if not (cur.prev() if found else cur.last()):
            return 0
        last = cur.key()
        if not last.startswith(prefix) or len(last) != len(prefix) + 8:
            return 0
        return _U64.unpack_from(last, len(prefix))[0] + 1

    def num_trials(self, run_id: str) -> int:
        return self._read(lambda txn: self._count(txn, run_id))

    def trials(self, run_id: str | None = None) -> Iterator[TrialRecord]:
        prefix = b"" if run_id is None else run_prefix(run_id)
        start = prefix
        while True:
            with _gc_paused():
                blob, count, last = self._read(lambda txn: self._scan(txn, start, prefix), buffers=True)
                try:
                    chunk = _load_array(blob) if count else []
                except (ValueError, TypeError, KeyError) as e:
                    raise self._damaged(e) from None
            yield from chunk
            if count < _CHUNK:
                return
            start = last + _SEP      # the smallest key after the last one read

    def _scan(self, txn: lmdb.Transaction, start: bytes, prefix: bytes) -> tuple[bytes, int, bytes]:
        """Up to _CHUNK trial values from ``start`` on, under ``prefix``: as one JSON array, copied once out of the
        map (the transaction gives buffers), with their number and the key of the last one."""
        cur = txn.cursor(db=self._trials)
        parts: list = [b"["]
        last = b""
        if cur.set_range(start):
            n = len(prefix)
            for key, value in cur.iternext():
                if key[:n] != prefix:
                    break
                parts += (value, b",")
                last = key
                if len(parts) == 2 * _CHUNK + 1:
                    break
        count = (len(parts) - 1) // 2
        if not count:
            return b"", 0, b""
        parts[-1] = b"]"
        return b"".join(parts), count, bytes(last)

    def trials_of_arch(self, arch_hash: str) -> list[TrialRecord]:
        prefix = _key_part(arch_hash, "arch hash") + _SEP
        if len(prefix) + 8 > _MAX_KEY:
            return []

        def read(txn: lmdb.Transaction) -> list[bytes]:
            cur = txn.cursor(db=self._arch)
            if not cur.set_range(prefix):
                return []
            keys = []
            for key, tkey in cur.iternext():
                if not key.startswith(prefix):
                    break
                keys.append(tkey)
            return [txn.get(k, db=self._trials) for k in keys]
        raws = self._read(read)
        if any(r is None for r in raws):
            raise StoreError(f"{self.path}: damaged store: the index of arch {arch_hash[:12]} names a missing trial; "
                             f"run llmnas store verify {self.path}")
        try:
            return load_trials(raws)
        except (ValueError, TypeError, KeyError) as e:
            raise self._damaged(e) from None

    # -- outcomes -------------------------------------------------------------------------------------------------------
    def get_outcome(self, arch_hash: str, recipe_hash: str) -> Outcome | None:
        key = outcome_key(arch_hash, recipe_hash)
        raw = self._read(lambda txn: txn.get(key, db=self._outcomes))
        try:
            return None if raw is None else Outcome.from_json(_loads(raw))
        except (ValueError, TypeError, KeyError) as e:
            raise self._damaged(e) from None

    def forget_outcomes(self, statuses: Iterable[TrialStatus]) -> int:
        """Delete the stored outcomes with one of ``statuses`` (trials stay as they are), so that the next run that
        proposes those architectures evaluates them again. Returns how many were deleted."""
        wanted = {int(s) for s in statuses}

        def forget(txn: lmdb.Transaction) -> int:
            cur = txn.cursor(db=self._outcomes)
            doomed = [bytes(k) for k, v in cur.iternext() if _loads(v)["status"] in wanted]
            for k in doomed:
                txn.delete(k, db=self._outcomes)
            return len(doomed)
        return self._write(forget)

    # -- final trainings -------------------------------------------------------------------------------------------------
    def _finals_db(self, create: bool):
        """The finals database; None while it does not exist and ``create`` is false (a store written before it)."""
        if self._finals is None:
            if self._has_db(self.env, _FINALS):
                self._finals = self.env.open_db(_FINALS, create=False)
            elif create:
                self._finals = self._write(lambda txn: self.env.open_db(_FINALS, txn=txn, create=True))
        return self._finals

    def put_final(self, final: FinalRecord) -> None:
        key = outcome_key(final.arch_hash, final.recipe_hash)
        value = _dumps(final.to_json())
        db = self._finals_db(create=True)

        def put(txn: lmdb.Transaction) -> None:
            if not txn.put(key, value, overwrite=False, db=db):
                raise StoreError(f"a final training of {final.arch_hash[:12]} with recipe {final.recipe_hash[:12]} "
                                 f"exists in {self.path}; final trainings are immutable")
        self._write(put)

    def finals(self, arch_hash: str | None = None) -> list[FinalRecord]:
        db = self._finals_db(create=False)
        if db is None:
            return []
        prefix = b"" if arch_hash is None else _key_part(arch_hash, "arch hash") + _SEP

        def read(txn: lmdb.Transaction) -> list[bytes]:
            cur = txn.cursor(db=db)
            if not cur.set_range(prefix):
                return []
            return [bytes(v) for k, v in cur.iternext() if k.startswith(prefix)]
        raws = self._read(read)
        try:
            out = [FinalRecord.from_json(_loads(r)) for r in raws]
        except (ValueError, TypeError, KeyError) as e:
            raise self._damaged(e) from None
        return sorted(out, key=lambda f: f.created_at)

    # -- texts ----------------------------------------------------------------------------------------------------------
    def put_text(self, text: str) -> str:
        digest = text_hash(text)
        key = digest.encode()
        if self._read(lambda txn: txn.get(key, db=self._texts)) is None:
            self._write(lambda txn: txn.put(key, text.encode(), overwrite=False, db=self._texts))
        return digest

    def get_text(self, digest: str) -> str | None:
        key = digest.encode()
        if not key or len(key) > _MAX_KEY:
            return None
        raw = self._read(lambda txn: txn.get(key, db=self._texts))
        return None if raw is None else raw.decode()

    # -- life cycle -----------------------------------------------------------------------------------------------------
    def close(self) -> None:
        for fd in self._locks.values():
            os.close(fd)             # releases the flock
        self._locks.clear()
        if self._env is not None:
            try:
                if not self.readonly:
                    self._env.sync(True)
            except lmdb.Error as e:
                raise _one_error(self.path, e, writing=True) from None
            finally:
                self._env.close()
                self._env = None

    def __repr__(self) -> str:
        mode = "read-only" if self.readonly else "read-write"
        return f"LmdbStore({str(self.path)!r}, {mode}{', closed' if self._env is None else ''})"
