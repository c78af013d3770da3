"""The final-training records of the store contract (llmnas_local/store/base.py), on every implementation."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from llmnas_local.records import TEST_ACC, VAL_ACC, FinalRecord
from llmnas_local.store import LmdbStore, MemoryStore, StoreError, open_store


def make_final(arch: str = "a" * 64, recipe: str = "f" * 64, created_at: float = 10.0, **kw) -> FinalRecord:
    fields = dict(space="cnn", canonical="stem_c16 | ir_r1_k3_s1_e4_c16 | head_c64", run_id="run-a",
                  trial_recipe_hash="r" * 64, recipe={"epochs": 3, "data": {"fingerprint": "x"}},
                  metrics={VAL_ACC: 97.5, TEST_ACC: 96.25}, best_epoch=2,
                  history=[{"epoch": 1, "val_acc": 90.0}, {"epoch": 2, "val_acc": 97.5}],
                  weights="finals/a/weights.safetensors", weights_sha256="0" * 64, code_version="0.1.0+abc")
    return FinalRecord(arch_hash=arch, recipe_hash=recipe, created_at=created_at, **{**fields, **kw})


@pytest.fixture(params=["memory", "lmdb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else open_store(tmp_path / "store")
    yield s
    s.close()


def test_put_and_list_finals(store):
    assert store.finals() == [] and store.finals("a" * 64) == []
    late, early, other = make_final(created_at=20.0), make_final(recipe="e" * 64, created_at=5.0), \
        make_final(arch="b" * 64, created_at=7.0)
    for f in (late, early, other):
        store.put_final(f)
    assert store.finals("a" * 64) == [early, late]           # oldest first
    assert store.finals() == [early, other, late]
    assert store.finals("c" * 64) == []


def test_final_is_immutable(store):
    store.put_final(make_final())
    with pytest.raises(StoreError, match="immutable") as e:
        store.put_final(make_final(metrics={VAL_ACC: 1.0}))
    assert "\n" not in str(e.value)
    assert store.finals()[0].metrics[VAL_ACC] == 97.5


def test_lmdb_store_without_finals_reads_none_and_gains_them(tmp_path):
    """A store written before final trainings existed (no finals database) reads as holding none, read-only too, and
    a reader opened before the first final sees it once written."""
    path = tmp_path / "store"
    LmdbStore(path).close()
    write = ("import sys; from llmnas_local.store import LmdbStore; from llmnas_local.records import FinalRecord; "
             "import json; LmdbStore(sys.argv[1]).put_final(FinalRecord.from_json(json.loads(sys.argv[2])))")
    with LmdbStore(path, readonly=True) as reader:
        assert reader.finals() == []
        subprocess.run([sys.executable, "-c", write, str(path), json.dumps(make_final().to_json())], check=True)
        assert [f.arch_hash for f in reader.finals()] == ["a" * 64]
    with LmdbStore(path, readonly=True) as again:
        assert again.finals("a" * 64) == [make_final()]
