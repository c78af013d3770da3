"""Offline data sets: formats, split, caps, cache, errors."""
from __future__ import annotations

import io
import os
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from llmnas_local.evaluators import data as data_mod
from llmnas_local.evaluators.data import DataSpec, describe_dataset, load_dataset


@pytest.fixture
def cache(tmp_path: Path) -> str:
    return str(tmp_path / "cache")


def indexed_npz(path: Path, n_train: int = 300, n_test: int = 50, size: int = 4) -> Path:
    """Images that carry their own index (pixels 0 and 1), so splits can be checked by index."""
    def images(n: int, offset: int) -> np.ndarray:
        x = np.zeros((n, size, size, 3), np.uint8)
        idx = np.arange(n) + offset
        x[:, 0, 0, 0], x[:, 0, 1, 0] = idx % 256, idx // 256
        return x

    np.savez(path, x_train=images(n_train, 0), y_train=np.arange(n_train) % 3, x_test=images(n_test, 1000),
             y_test=np.arange(n_test) % 3, classes=np.array(["a", "b", "c"]))
    return path


def ids(x: np.ndarray) -> set[int]:
    return set((x[:, 0, 0, 0].astype(int) + 256 * x[:, 0, 1, 0].astype(int)).tolist())


def test_digits(cache):
    ds = load_dataset("digits", cache_dir=cache)
    assert (ds.num_classes, ds.in_chans, ds.input_size) == (10, 1, 32)
    assert ds.classes == tuple("0123456789") and ds.x_train.dtype == np.uint8 and ds.y_train.dtype == np.int64
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (1294, 144, 359)
    assert ds.x_train.max() == 255
    small = load_dataset("digits", cache_dir=cache, resolution=8, train_size=100, val_size=20, test_size=30)
    assert small.x_train.shape == (100, 8, 8, 1) and len(small.y_val) == 20 and len(small.y_test) == 30
    info = describe_dataset(small)
    assert info["num_train"] == 100 and info["split_seed"] == 0 and len(info["fingerprint"]) == 64
    # the test split is fixed: it does not move with the split seed
    other = load_dataset("digits", cache_dir=cache, split_seed=5)
    assert np.array_equal(other.x_test, ds.x_test) and not np.array_equal(other.y_val, ds.y_val)


def test_split_is_seeded_disjoint_and_capped(tmp_path):
    src = str(indexed_npz(tmp_path / "toy.npz"))
    a, b = load_dataset(src, val_fraction=0.2), load_dataset(src, val_fraction=0.2)
    assert all(np.array_equal(getattr(a, k), getattr(b, k)) for k in ("x_train", "y_train", "x_val", "y_val"))
    train, val = ids(a.x_train), ids(a.x_val)
    assert len(val) == 60 and len(train) == 240 and not train & val and train | val == set(range(300))
    c = load_dataset(src, val_fraction=0.2, split_seed=1)
    assert ids(c.x_val) != val
    capped = load_dataset(src, val_fraction=0.2, train_size=50, val_size=10, test_size=7)
    assert ids(capped.x_train) <= train and ids(capped.x_val) <= val and len(ids(capped.x_test)) == 7
    assert np.array_equal(capped.x_train, a.x_train[:50])          # a cap keeps a prefix of the same split
    assert (a.num_classes, a.in_chans, a.input_size, a.classes) == (3, 3, 4, ("a", "b", "c"))


def test_npz_grey_and_resize(tmp_path):
    path = tmp_path / "grey.npz"
    np.savez(path, x_train=np.full((20, 6, 6), 7, np.uint8), y_train=np.arange(20) % 2,
             x_test=np.zeros((4, 6, 6), np.uint8), y_test=np.array([0, 1, 0, 1]))
    ds = load_dataset(str(path), resolution=12)
    assert ds.x_train.shape[1:] == (12, 12, 1) and ds.classes == ("0", "1") and ds.format == "npz"


def write_cifar10(root: Path, n: int = 4) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"labels": list(range(n))}
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"w", b"x", b"y", b"z"]}))
    return root


def test_cifar10_pickle_folder_and_tar(tmp_path, cache):
    root = write_cifar10(tmp_path / "src" / "cifar-10-batches-py")
    ds = load_dataset(str(tmp_path / "src"), cache_dir=cache, val_fraction=0.25)
    assert ds.format == "cifar" and ds.classes == ("w", "x", "y", "z")
    assert (len(ds.y_train) + len(ds.y_val), len(ds.y_test), ds.input_size, ds.in_chans) == (20, 4, 32, 3)
    raw = pickle.loads((root / "test_batch").read_bytes())
    assert np.array_equal(ds.x_test[1], raw[b"data"][1].reshape(3, 32, 32).transpose(1, 2, 0))
    tar = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(tar, "w:gz") as tf:
        tf.add(root, arcname="cifar-10-batches-py")
    from_tar = load_dataset(str(tar), cache_dir=cache, val_fraction=0.25)
    assert from_tar.format == "cifar-tar" and from_tar.fingerprint == ds.fingerprint


def test_cifar100_pickle_folder(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    rng = np.random.default_rng(0)
    for name, n in (("train", 10), ("test", 3)):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"fine_labels": [i % 3 for i in range(n)],
             b"coarse_labels": [0] * n}
        (root / name).write_bytes(pickle.dumps(d))
    (root / "meta").write_bytes(pickle.dumps({b"fine_label_names": [b"p", b"q", b"r"], b"coarse_label_names": [b"c"]}))
    ds = load_dataset(str(root), cache_dir="", val_fraction=0.2)
    assert ds.classes == ("p", "q", "r") and len(ds.y_test) == 3 and len(ds.y_val) == 2


@pytest.fixture(scope="module")
def small_cifar_tar(cifar10_tar, tmp_path_factory) -> Path:
    """A slice of the shared CIFAR-10 JPEG archive: 2 classes, 12 train and 4 test images each."""
    out = tmp_path_factory.mktemp("cifar") / "small.tar.gz"
    want = {("train", "airplane"): 12, ("train", "automobile"): 12, ("test", "airplane"): 4, ("test", "automobile"): 4}
    with tarfile.open(cifar10_tar, "r:gz") as src, tarfile.open(out, "w:gz") as dst:
        for m in src:
            where = data_mod._imagefolder_member(m.name) if m.isfile() else None
            if where in want and want[where] > 0:
                want[where] -= 1
                dst.addfile(m, src.extractfile(m))
            if not any(want.values()):
                break
    return out


def test_imagefolder_tar_and_dir(small_cifar_tar, tmp_path, cache):
    ds = load_dataset(str(small_cifar_tar), cache_dir=cache, val_fraction=0.25)
    assert ds.format == "imagefolder-tar" and ds.classes == ("airplane", "automobile")
    assert (len(ds.y_train), len(ds.y_val), len(ds.y_test)) == (18, 6, 8)
    assert ds.x_train.shape[1:] == (32, 32, 3) and ds.x_train.std() > 10
    with tarfile.open(small_cifar_tar) as tf:
        tf.extractall(tmp_path / "x", filter="data")
    as_dir = load_dataset(str(tmp_path / "x" / "CIFAR-10-images"), cache_dir=cache, val_fraction=0.25)
    assert as_dir.format == "imagefolder" and as_dir.fingerprint == ds.fingerprint    # content, not path


def test_imagefolder_sizes_differ(tmp_path):
    for split, cls, size in (("train", "a", (8, 8)), ("train", "b", (10, 12)), ("test", "a", (8, 8))):
        (tmp_path / split / cls).mkdir(parents=True)
        Image.new("RGB", size, (200, 10, 10)).save(tmp_path / split / cls / "0.png")
    with pytest.raises(ValueError, match="differ in size"):
        load_dataset(str(tmp_path), cache_dir="")
    ds = load_dataset(str(tmp_path), cache_dir="", resolution=6, val_fraction=0.5)
    assert ds.x_test.shape == (1, 6, 6, 3) and ds.x_test[0, 3, 3, 0] == 200


def test_cache_hit_and_invalidation(tmp_path, cache, monkeypatch):
    root = write_cifar10(tmp_path / "cifar-10-batches-py")
    first = load_dataset(str(root), cache_dir=cache)
    files = list(Path(cache).glob("*.npz"))
    assert len(files) == 1

    def fail(*a, **k):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setitem(data_mod._LOADERS, "cifar", fail)
    second = load_dataset(str(root), cache_dir=cache)
    assert second.fingerprint == first.fingerprint and np.array_equal(second.x_train, first.x_train)
    monkeypatch.undo()
    st = os.stat(root / "test_batch")
    os.utime(root / "test_batch", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # touched: decoded again
    load_dataset(str(root), cache_dir=cache)
    assert len(list(Path(cache).glob("*.npz"))) == 2


def test_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LLMNAS_CACHE_DIR", str(tmp_path / "env-cache"))
    load_dataset(str(write_cifar10(tmp_path / "c10")))
    assert list((tmp_path / "env-cache").glob("c10-*.npz"))


@pytest.mark.parametrize("make, pattern", [
    (lambda p: p / "absent", "not found"),
    (lambda p: (p / "notes.txt").write_text("x") and p / "notes.txt", "unknown data format"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "unknown data format"),
])
def test_errors_are_one_line(tmp_path, make, pattern):
    with pytest.raises(ValueError, match=pattern) as info:
        load_dataset(str(make(tmp_path)))
    assert "\n" not in str(info.value)


def test_spec_validation():
    with pytest.raises(ValueError, match="val_fraction"):
        DataSpec(val_fraction=0.0)
    with pytest.raises(ValueError, match="train_size"):
        DataSpec(train_size=0)


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "bad.npz", x_train=np.zeros((2, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="missing arrays y_train, x_test, y_test"):
        load_dataset(str(tmp_path / "bad.npz"))


def test_png_in_memory_roundtrip():
    """PIL decodes what PIL encodes: guards the decoder against mode mix-ups (grey stays one channel)."""
    buf = io.BytesIO()
    Image.new("L", (4, 4), 9).save(buf, format="PNG")
    x = data_mod._decode_imagefolder([("train", "k", "0.png", buf.getvalue()), ("test", "k", "1.png", buf.getvalue())],
                                     Path("mem"), None)
    assert x.x_train.shape == (1, 4, 4, 1) and x.x_train[0, 0, 0, 0] == 9
