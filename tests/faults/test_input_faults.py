"""Untrusted data files: each bad one is one line naming the file, exit 2, no traceback; a crafted CIFAR batch runs
no code. (NAS-Bench-201 tables are checked in tests/evaluators/test_tabular.py.)"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from llmnas_local.cli.main import cli
from llmnas_local.evaluators.data import load_dataset

MARKER = "llmnas-pwned"


class _Exploit:
    """Unpickling this calls os.system: what a crafted batch file would do."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.path}",))


def _png(value: int = 7, size: int = 4) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buf, format="PNG")
    return buf.getvalue()


def _imagefolder(root: Path, bad: dict[str, bytes] | None = None, empty: str | None = None) -> Path:
    for split in ("train", "test"):
        for cls in ("a", "b"):
            d = root / split / cls
            d.mkdir(parents=True)
            if f"{split}/{cls}" == empty:
                continue
            for i in range(2):
                (d / f"{i}.png").write_bytes(_png(i))
    for name, data in (bad or {}).items():
        (root / name).write_bytes(data)
    return root


def _tar(src: Path, out: Path) -> Path:
    with tarfile.open(out, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return out


def _npz(path: Path, **arrays) -> Path:
    base = dict(x_train=np.zeros((6, 4, 4), np.uint8), y_train=np.array([0, 1, 2, 0, 1, 2]),
                x_test=np.zeros((3, 4, 4), np.uint8), y_test=np.array([0, 1, 2]))
    with open(path, "wb") as f:
        np.savez(f, **{**base, **arrays})
    return path


def crafted_cifar(tmp: Path) -> Path:
    root = tmp / "cifar-10-batches-py"
    root.mkdir()
    batch = {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (root / name).write_bytes(pickle.dumps(batch))
    (root / "data_batch_3").write_bytes(pickle.dumps({b"data": _Exploit(tmp / MARKER), b"labels": [0]}))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x", b"y"]}))
    return root


def truncated_tar(tmp: Path) -> Path:
    tar = _tar(_imagefolder(tmp / "imgs"), tmp / "imgs.tar.gz")
    tar.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    return tar


def not_gzip(tmp: Path) -> Path:
    (tmp / "x.tar.gz").write_bytes(b"this is not a gzip file at all" * 10)
    return tmp / "x.tar.gz"


def empty_class_tar(tmp: Path) -> Path:
    return _tar(_imagefolder(tmp / "imgs", empty="train/b"), tmp / "imgs.tar.gz")


CASES = {
    # name: (make the --data path, what the one line must say besides the path)
    "crafted CIFAR pickle": (crafted_cifar, "refused global posix.system"),
    "bad image": (lambda t: _imagefolder(t / "imgs", {"train/a/9.png": b"\x89PNG garbage"}), "9.png: not a readable"),
    "truncated image": (lambda t: _imagefolder(t / "imgs", {"train/b/9.png": _png()[:40]}), "9.png: not a readable"),
    "truncated tar.gz": (truncated_tar, "not a readable tar archive"),
    "non-gzip tar.gz": (not_gzip, "not a readable tar archive"),
    "random-bytes npz": (lambda t: (t / "d.npz").write_bytes(b"\x00" * 100) and t / "d.npz", "not a readable .npz"),
    "npy as npz": (lambda t: np.save(open(t / "d.npz", "wb"), np.zeros(3)) or t / "d.npz", "not a readable .npz"),
    "object array npz": (lambda t: _npz(t / "d.npz", y_train=np.array([0, "a", None, 1, 2, 0], dtype=object)),
                         "not a readable .npz"),
    "text labels": (lambda t: _npz(t / "d.npz", y_train=np.array(["a", "b", "c", "a", "b", "c"])),
                    "train labels are not integers"),
    "fractional labels": (lambda t: _npz(t / "d.npz", y_test=np.array([0.5, 1, 2])), "test labels are not integers"),
    "label 10^6": (lambda t: _npz(t / "d.npz", y_train=np.array([0, 1, 2, 0, 1, 10**6])),
                   "labels must be 0..K-1 with training images for each, got 4 distinct training labels from 0 to "
                   "1000000"),
    "float images": (lambda t: _npz(t / "d.npz", x_train=np.zeros((6, 4, 4), np.float32)), "images must be uint8"),
    "empty class folder": (lambda t: _imagefolder(t / "imgs", empty="train/b"), "train/b: empty class folder"),
    "empty class folder in a tar": (empty_class_tar, "empty class folder imgs/train/b"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_data_file_is_one_line_naming_it(tmp_path, monkeypatch, case):
    make, message = CASES[case]
    monkeypatch.setenv("LLMNAS_CACHE_DIR", str(tmp_path / "cache"))
    src = tmp_path / "src"
    src.mkdir()
    path = make(src)
    r = CliRunner().invoke(cli, ["search", "--space", "cnn", "--data", str(path), "--proposer", "random",
                                 "--budget", "1", "--store", str(tmp_path / "store"), "-q"])
    assert r.exit_code == 2, (r.output, r.exception)
    [line] = r.output.strip().splitlines()
    assert line.startswith(f"Error: {path}") and message in line, line
    assert not (src / MARKER).exists(), "the crafted pickle ran code"


def test_genuine_cifar_batches_still_load(tmp_path):
    """Batches as CIFAR ships them (protocol 2, from Python 2: str keys decoded as bytes) and as numpy 1/2 write them
    under every protocol pass the restricted unpickler."""
    for protocol in (2, 4, 5):
        root = tmp_path / f"p{protocol}" / "cifar-10-batches-py"
        root.mkdir(parents=True)
        rng = np.random.default_rng(protocol)
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {b"batch_label": b"x", b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
                     b"labels": [0, 1, np.int64(2)], b"filenames": [b"a.png", b"b.png", b"c.png"]}
            (root / name).write_bytes(pickle.dumps(batch, protocol=protocol))
        (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": [b"x", b"y", b"z"], b"num_vis": 3072},
                                                         protocol=protocol))
        ds = load_dataset(str(root), cache_dir="", val_fraction=0.2)
        assert ds.classes == ("x", "y", "z") and len(ds.y_test) == 3
