"""Offline image-classification data sets as uint8 arrays, with a seeded validation split carved from the training data.

Sources (``DataSpec.source``):

- ``"digits"``: scikit-learn's bundled 8x8 grey digits (1,797 images), upscaled to ``resolution`` (default 32). It has
  no test split: a fixed 20% (seed 0, independent of ``split_seed``) is carved off as the test set.
- an ImageFolder directory, or a ``.tar.gz``/``.tgz``/``.tar`` of one, holding ``train/<class>/*`` and
  ``test/<class>/*`` (at any depth, e.g. ``CIFAR-10-images/train/cat/0001.jpg``), decoded with PIL;
- a CIFAR-10/100 python-pickle folder (``cifar-10-batches-py``, ``cifar-100-python``, fine labels), its parent, or the
  official ``.tar.gz`` of one;
- an ``.npz`` with ``x_train, y_train, x_test, y_test`` (NHWC or NHW uint8) and optionally ``classes``.

Every file is untrusted input: CIFAR batches are read by an unpickler that admits only what the format holds (dicts,
lists, bytes, numpy arrays: no other global, so a crafted batch cannot run code), and a file that cannot be read
(a truncated or non-gzip archive, an undecodable image, a bad .npz, labels that are not 0..K-1, an empty class
folder) is a one-line ``ValueError`` naming it.

Decoding is slow for image files, so the decoded arrays are cached as an uncompressed ``.npz`` in ``cache_dir``
(default ``$LLMNAS_CACHE_DIR`` or ``~/.cache/llmnas/data``), keyed by the source's path, size and mtime and the
resolution; a first decode of image files or CIFAR batches says on stderr what it reads, how far it is (every tenth of
a set of 10,000 images or more) and where the cache goes. The fingerprint that goes into recipes is a sha256 of the
decoded content, so it does not depend on where the data lives.

Split: the training data is permuted with ``split_seed``; the first ``round(val_fraction * n)`` images are the
validation split, the rest the training split; ``train_size``/``val_size`` then keep the first images of each and
``test_size`` the first of a ``split_seed`` permutation of the test set (the whole test set, in order, when unset).
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import io
import json
import os
import pickle
import sys
import tarfile
import warnings
import zipfile
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

CACHE_VERSION = 1
DIGITS_TEST_FRACTION = 0.2
DIGITS_TEST_SEED = 0
DIGITS_DEFAULT_RESOLUTION = 32
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".ppm", ".pgm", ".tif", ".tiff")
_GREY_MODES = ("1", "L", "I", "I;16", "F")


@dataclasses.dataclass(frozen=True)
class DataSpec:
    """Which data and which split. Every field but ``cache_dir`` is part of an evaluation recipe."""

    source: str = "digits"
    val_fraction: float = 0.1
    split_seed: int = 0
    train_size: int | None = None     # caps for quick searches: keep the first N of each split
    val_size: int | None = None
    test_size: int | None = None
    resolution: int | None = None     # resize to resolution x resolution; None: native (digits: 32)
    cache_dir: str | None = None      # None: $LLMNAS_CACHE_DIR or ~/.cache/llmnas/data; "": no cache

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {self.val_fraction}")
        for field in ("train_size", "val_size", "test_size", "resolution"):
            v = getattr(self, field)
            if v is not None and (not isinstance(v, int) or v < 1):
                raise ValueError(f"{field} must be a positive integer or None, got {v!r}")

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """Three splits of uint8 images (N, H, W, C) with int64 labels, and what they are."""

    name: str
    format: str
    classes: tuple[str, ...]
    fingerprint: str                  # sha256 of the decoded source (all train and test images and labels)
    spec: DataSpec
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_chans(self) -> int:
        return int(self.x_train.shape[3])

    @property
    def input_size(self) -> int:
        return int(self.x_train.shape[1])


def describe_dataset(ds: Dataset) -> dict[str, Any]:
    """What a recipe needs to name this data set and split exactly."""
    return {
        "name": ds.name, "format": ds.format, "fingerprint": ds.fingerprint,
        "val_fraction": ds.spec.val_fraction, "split_seed": ds.spec.split_seed,
        "num_train": len(ds.y_train), "num_val": len(ds.y_val), "num_test": len(ds.y_test),
        "num_classes": ds.num_classes, "in_chans": ds.in_chans, "input_size": ds.input_size,
    }


def load_dataset(source: str | DataSpec = "digits", **overrides: Any) -> Dataset:
    """Load (from the cache when possible) and split a data set. ``overrides`` are :class:`DataSpec` fields."""
    spec = source if isinstance(source, DataSpec) else DataSpec(source=str(source))
    spec = dataclasses.replace(spec, **overrides) if overrides else spec
    raw = _load_raw(spec)
    return _split(raw, spec)


# -- raw (unsplit) data, cached ----------------------------------------------------------------------------------
@dataclasses.dataclass
class _Raw:
    name: str
    format: str
    classes: tuple[str, ...]
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    fingerprint: str = ""


def _load_raw(spec: DataSpec) -> _Raw:
    if spec.source.lower() == "digits":
        name, root, stamp = "digits", None, _digits_file()
        resolution = spec.resolution or DIGITS_DEFAULT_RESOLUTION
    else:
        root = Path(spec.source).expanduser()
        if not root.exists():
            raise ValueError(f"data set {spec.source!r} not found: give 'digits', an ImageFolder directory or "
                             f".tar.gz, a CIFAR python folder or an .npz file")
        name, stamp, resolution = _stem(root), root.resolve(), spec.resolution
        if root.is_file() and root.name.lower().endswith(".npz"):     # already arrays: nothing to cache
            return _finish(_load_npz(root), resolution, root)
    cache = _cache_file(spec, name, stamp, resolution)
    if cache is not None and cache.exists():
        try:
            with np.load(cache, allow_pickle=False) as z:
                return _Raw(name, str(z["format"]), tuple(str(c) for c in z["classes"]), z["x_train"],
                            z["y_train"], z["x_test"], z["y_test"], str(z["fingerprint"]))
        except Exception:                               # a torn or foreign file: decode again and overwrite it
            pass
    if root is None:
        raw = _load_digits(resolution)
    else:
        fmt, where = _detect(root)
        _say(f"decoding {root} ({fmt}{f', at {resolution} px' if resolution else ''}): first use, "
             f"{'the arrays will be cached in ' + str(cache) if cache is not None else 'no cache'}")
        raw = _LOADERS[fmt](where, resolution)
        raw.name, raw.format = name, fmt
    raw = _finish(raw, resolution, root or name)
    if cache is not None:
        _write_cache(cache, raw)
        if root is not None:
            _say(f"decoded {len(raw.y_train):,} training and {len(raw.y_test):,} test images; cached in {cache}")
    return raw


_QUIET = False          # set by quiet_decoding()


@contextlib.contextmanager
def quiet_decoding():
    """No progress lines of a first decode within this block (``llmnas search -q``); errors are raised as ever."""
    global _QUIET
    before, _QUIET = _QUIET, True
    try:
        yield
    finally:
        _QUIET = before


def _say(line: str) -> None:
    """Progress of a first decode (slow: image files), one line at a time on stderr."""
    if not _QUIET:
        print(line, file=sys.stderr, flush=True)


def _write_cache(cache: Path, raw: _Raw) -> None:
    """Write atomically (a reader never sees half a file); a cache that cannot be written is only a warning."""
    tmp = cache.with_name(f".{cache.name}.{os.getpid()}.tmp")
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            np.savez(f, x_train=raw.x_train, y_train=raw.y_train, x_test=raw.x_test, y_test=raw.y_test,
                     classes=np.array(raw.classes), fingerprint=np.array(raw.fingerprint),
                     format=np.array(raw.format))
        os.replace(tmp, cache)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        warnings.warn(f"could not write the data cache {cache}: {e}", stacklevel=3)


def _labels(y: Any, where: object, split: str) -> np.ndarray:
    """Labels as int64, refusing what is not an integer (text, fractions, NaN)."""
    try:
        a = np.asarray(y).reshape(-1)
        if a.dtype.kind == "f" and not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise ValueError("not whole numbers")
        if a.dtype.kind not in "iuf" and a.size:
            raise ValueError(f"of type {a.dtype}")
        return a.astype(np.int64)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{where}: the {split} labels are not integers ({_short(e)})") from None


def _finish(raw: _Raw, resolution: int | None, where: object) -> _Raw:
    """Resize if asked, check shapes and labels, and fingerprint the content. ``where`` names the source in errors."""
    xs = []
    for x in (raw.x_train, raw.x_test):
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[..., None]
        if x.ndim != 4 or x.dtype != np.uint8:
            raise ValueError(f"{where}: images must be uint8 (N,H,W[,C]), got {x.dtype} {x.shape}")
        if 0 in x.shape:
            raise ValueError(f"{where}: no images (shape {x.shape})")
        if resolution is not None and x.shape[1:3] != (resolution, resolution):
            x = _resize(x, resolution)
        xs.append(np.ascontiguousarray(x))
    x_train, x_test = xs
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(f"{where}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ")
    y_train, y_test = _labels(raw.y_train, where, "train"), _labels(raw.y_test, where, "test")
    if len(y_train) != len(x_train) or len(y_test) != len(x_test):
        raise ValueError(f"{where}: {len(x_train)}/{len(x_test)} images but {len(y_train)}/{len(y_test)} labels")
    low, high = int(min(y_train.min(), y_test.min())), int(max(y_train.max(), y_test.max()))
    if not raw.classes:           # no class names: the labels must be 0..K-1, each with training images
        present = np.unique(y_train)
        if low < 0 or len(present) != high + 1:
            raise ValueError(f"{where}: labels must be 0..K-1 with training images for each, got {len(present)} "
                             f"distinct training labels from {low} to {high}")
    classes = raw.classes or tuple(str(i) for i in range(high + 1))
    if low < 0 or high >= len(classes):
        raise ValueError(f"{where}: labels outside 0..{len(classes) - 1} (from {low} to {high})")
    h = hashlib.sha256(json.dumps([list(classes), x_train.shape, x_test.shape]).encode())
    for a in (x_train, y_train, x_test, y_test):
        h.update(memoryview(a).cast("B"))
    return _Raw(raw.name, raw.format, tuple(classes), x_train, y_train, x_test, y_test, h.hexdigest())


def _split(raw: _Raw, spec: DataSpec) -> Dataset:
    rng = np.random.default_rng(spec.split_seed)
    perm = rng.permutation(len(raw.y_train))
    n_val = max(1, int(round(spec.val_fraction * len(perm))))
    if n_val >= len(perm):
        raise ValueError(f"{raw.name}: val_fraction {spec.val_fraction} leaves no training data")
    val_idx, train_idx = perm[:n_val][:spec.val_size], perm[n_val:][:spec.train_size]
    if spec.test_size is None:
        test_idx = np.arange(len(raw.y_test))
    else:
        test_idx = np.random.default_rng(spec.split_seed).permutation(len(raw.y_test))[:spec.test_size]
    return Dataset(raw.name, raw.format, raw.classes, raw.fingerprint, spec,
                   raw.x_train[train_idx], raw.y_train[train_idx], raw.x_train[val_idx], raw.y_train[val_idx],
                   raw.x_test[test_idx], raw.y_test[test_idx])


def _cache_file(spec: DataSpec, name: str, path: Path | None, resolution: int | None) -> Path | None:
    if spec.cache_dir == "" or path is None:
        return None
    root = Path(spec.cache_dir or os.environ.get("LLMNAS_CACHE_DIR") or Path.home() / ".cache" / "llmnas" / "data")
    key = json.dumps([CACHE_VERSION, str(path), _stamp(path), resolution])
    return root.expanduser() / f"{name}-{hashlib.sha256(key.encode()).hexdigest()[:20]}.npz"


def _stamp(path: Path) -> list:
    """Size and mtime of a file, or of every file under a directory."""
    if path.is_file():
        st = path.stat()
        return [st.st_size, st.st_mtime_ns]
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames.sort()
        for f in sorted(filenames):
            st = os.stat(os.path.join(dirpath, f))
            h.update(f"{os.path.relpath(os.path.join(dirpath, f), path)}:{st.st_size}:{st.st_mtime_ns}\n".encode())
    return [h.hexdigest()]


def _stem(path: Path) -> str:
    name = path.resolve().name
    for suffix in (".tar.gz", ".tgz", ".tar", ".npz"):
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


# -- format detection ---------------------------------------------------------------------------------------------
def _detect(path: Path) -> tuple[str, Path]:
    """The format of a source (not .npz) and the folder or file its loader reads."""
    if path.is_file():
        if not path.name.lower().endswith((".tar.gz", ".tgz", ".tar")):
            raise ValueError(f"{path}: unknown data format (expected .npz, .tar.gz, .tgz, .tar or a directory)")
        with _archive(path) as tf:                       # the layout shows in the first members: peek only
            for i, m in enumerate(tf):
                if m.isfile() and _cifar_member(m.name):
                    return "cifar-tar", path
                if m.isfile() and _imagefolder_member(m.name):
                    return "imagefolder-tar", path
                if i >= 200:
                    break
        raise ValueError(f"{path}: archive holds neither train/<class>/<image> + test/<class>/<image> "
                         f"nor a CIFAR python folder")
    if (path / "train").is_dir() and (path / "test").is_dir():
        return "imagefolder", path
    for d in (path, path / "cifar-10-batches-py", path / "cifar-100-python"):
        if (d / "data_batch_1").is_file() or ((d / "train").is_file() and (d / "meta").is_file()):
            return "cifar", d
    raise ValueError(f"{path}: unknown data format (expected train/ and test/ class folders, "
                     f"a CIFAR python folder, an .npz or a .tar.gz)")


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split()) or type(e).__name__
    return text if len(text) <= 200 else text[:197] + "..."


@contextlib.contextmanager
def _archive(path: Path) -> Iterator[tarfile.TarFile]:
    """An open tar archive; a truncated, non-gzip or otherwise unreadable one is a ValueError naming it (also when
    it breaks while its members are read, inside the ``with``)."""
    try:
        with tarfile.open(path, "r:*") as tf:
            yield tf
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        raise ValueError(f"{path}: not a readable tar archive ({_short(e)})") from None


def _cifar_member(name: str) -> bool:
    parts = name.split("/")
    return len(parts) >= 2 and parts[-2] in ("cifar-10-batches-py", "cifar-100-python")


def _imagefolder_member(name: str) -> tuple[str, str] | None:
    """(split, class) of ``.../train|test/<class>/<image>``, else None."""
    parts = name.split("/")
    if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return parts[-3], parts[-2]
    return None


# -- loaders ------------------------------------------------------------------------------------------------------
def _digits_file() -> Path | None:
    """sklearn's bundled digits file, found without importing sklearn (slow); used for the cache key only."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.submodule_search_locations:
        return None
    f = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "digits.csv.gz"
    return f if f.is_file() else None


def _load_digits(resolution: int) -> _Raw:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)         # 0..16 -> 0..255
    x = _resize(x[..., None], resolution)
    y = d.target.astype(np.int64)
    perm = np.random.default_rng(DIGITS_TEST_SEED).permutation(len(y))
    n_test = int(round(DIGITS_TEST_FRACTION * len(y)))
    te, tr = np.sort(perm[:n_test]), np.sort(perm[n_test:])
    return _Raw("digits", "digits", tuple(str(i) for i in range(10)), x[tr], y[tr], x[te], y[te])


def _load_npz(path: Path) -> _Raw:
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):
            raise ValueError("a single array, not an archive of arrays")
        with z:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in z.files]
            if missing:
                raise ValueError(f"missing arrays {', '.join(missing)} (has {', '.join(z.files)})")
            classes = tuple(str(c) for c in z["classes"]) if "classes" in z.files else ()
            return _Raw(_stem(path), "npz", classes, z["x_train"], z["y_train"], z["x_test"], z["y_test"])
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error, KeyError) as e:
        raise ValueError(f"{path}: not a readable .npz of x_train, y_train, x_test, y_test ({_short(e)})") from None


def _load_cifar_dir(root: Path, resolution: int | None) -> _Raw:
    return _cifar_from_files({p.name: p.read_bytes for p in root.iterdir() if p.is_file()}, root)


def _load_cifar_tar(path: Path, resolution: int | None) -> _Raw:
    files: dict[str, bytes] = {}
    with _archive(path) as tf:
        for m in tf:
            if m.isfile() and _cifar_member(m.name):
                files[m.name.rsplit("/", 1)[-1]] = tf.extractfile(m).read()
    return _cifar_from_files({k: (lambda b=b: b) for k, b in files.items()}, path)


# What a CIFAR python batch holds besides dicts, lists, str, bytes and ints: numpy arrays (and their dtypes, as pickled
# by numpy 1 and 2 under every protocol). Any other global is refused before it is looked up, so nothing runs.
_CIFAR_GLOBALS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a CIFAR batch holds only arrays and lists")
        return super().find_class(module, name)


def load_cifar_batch(data: bytes, where: object) -> dict:
    """A CIFAR python batch (a pickled dict) read without running code: see ``_CIFAR_GLOBALS``."""
    try:
        d = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:  # noqa: BLE001 - whatever a malformed pickle raises, it is the file's fault
        raise ValueError(f"{where}: not a CIFAR python batch ({_short(e)})") from None
    if not isinstance(d, dict):
        raise ValueError(f"{where}: not a CIFAR python batch (a pickled {type(d).__name__}, not a dict)")
    return {k.decode(errors="replace") if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_from_files(files: dict[str, Any], where: Path) -> _Raw:
    def unpickle(key: str) -> dict:
        if key not in files:
            raise ValueError(f"{where}: CIFAR file {key!r} missing")
        d = load_cifar_batch(files[key](), f"{where}/{key}")
        d["_where"] = f"{where}/{key}"
        return d

    def field(d: dict, key: str) -> Any:
        if key not in d:
            raise ValueError(f"{d['_where']}: no {key!r} in the batch (has {', '.join(map(str, d)).replace('_where, ', '')})")
        return d[key]

    def images(d: dict) -> np.ndarray:
        try:
            return np.asarray(field(d, "data"), dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
        except (ValueError, TypeError) as e:
            if str(e).startswith(d["_where"]):
                raise
            raise ValueError(f"{d['_where']}: 'data' is not N x 3072 bytes ({_short(e)})") from None

    if "data_batch_1" in files:                                         # CIFAR-10
        batches = [unpickle(f"data_batch_{i}") for i in range(1, 6)]
        test, meta, key, names = unpickle("test_batch"), unpickle("batches.meta"), "labels", "label_names"
        x_train = np.concatenate([images(b) for b in batches])
        y_train = np.concatenate([_labels(field(b, key), b["_where"], "train") for b in batches])
    else:                                                               # CIFAR-100, fine labels
        train, test, meta = unpickle("train"), unpickle("test"), unpickle("meta")
        key, names = "fine_labels", "fine_label_names"
        x_train, y_train = images(train), _labels(field(train, key), train["_where"], "train")
    label_names = field(meta, names)
    if not isinstance(label_names, (list, tuple)):
        raise ValueError(f"{meta['_where']}: {names!r} is not a list")
    classes = tuple(c.decode(errors="replace") if isinstance(c, bytes) else str(c) for c in label_names)
    return _Raw("", "", classes, x_train, y_train, images(test), _labels(field(test, key), test["_where"], "test"))


def _load_imagefolder_dir(root: Path, resolution: int | None) -> _Raw:
    def items() -> Iterator[tuple[str, str, str, bytes]]:
        for split in ("train", "test"):
            for cls_dir in sorted(p for p in (root / split).iterdir() if p.is_dir()):
                images = [f for f in sorted(cls_dir.iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
                if not images:
                    raise ValueError(f"{cls_dir}: empty class folder (no {'/'.join(IMAGE_SUFFIXES[:3])}... image)")
                for f in images:
                    yield split, cls_dir.name, str(f), f.read_bytes()

    return _decode_imagefolder(items(), root, resolution)


def _load_imagefolder_tar(path: Path, resolution: int | None) -> _Raw:
    def items() -> Iterator[tuple[str, str, str, bytes]]:
        folders: dict[str, bool] = {}          # .../train|test/<class> -> holds an image
        with _archive(path) as tf:
            for m in tf:
                parts = m.name.rstrip("/").split("/")
                if m.isdir() and len(parts) >= 2 and parts[-2] in ("train", "test"):
                    folders.setdefault("/".join(parts), False)
                where = _imagefolder_member(m.name) if m.isfile() else None
                if where:
                    folders["/".join(parts[:-1])] = True
                    yield where[0], where[1], f"{path}:{m.name}", tf.extractfile(m).read()
        empty = sorted(name for name, has in folders.items() if not has)
        if empty:
            raise ValueError(f"{path}: empty class folder {empty[0]} (no image)"
                             + (f", and {len(empty) - 1} more" if len(empty) > 1 else ""))

    return _decode_imagefolder(items(), path, resolution)


def _decode_imagefolder(items: Iterable[tuple[str, str, str, bytes]], where: Path, resolution: int | None) -> _Raw:
    from PIL import Image

    found: dict[str, list[tuple[str, str, bytes]]] = {"train": [], "test": []}
    for split, cls, name, data in items:
        found[split].append((cls, name, data))
    classes = tuple(sorted({c for c, _, _ in found["train"]}))
    if not classes or not found["test"]:
        raise ValueError(f"{where}: no images under train/<class>/ and test/<class>/")
    extra = sorted({c for c, _, _ in found["test"]} - set(classes))
    if extra:
        raise ValueError(f"{where}: test classes {', '.join(extra)} are not among the training classes")
    index = {c: i for i, c in enumerate(classes)}
    mode = None
    out = {}
    total, done = sum(map(len, found.values())), 0
    for split, entries in found.items():
        entries.sort(key=lambda e: (e[0], e[1]))
        x, shape = None, None
        for i, (cls, name, data) in enumerate(entries):
            done += 1
            if total >= 10_000 and done % (total // 10) == 0:         # ten lines for a large set, none for a small
                _say(f"  {done:,} / {total:,} images decoded")
            try:
                with Image.open(io.BytesIO(data)) as im:
                    mode = mode or ("L" if im.mode in _GREY_MODES else "RGB")
                    im = im.convert(mode)
                    if resolution is not None and im.size != (resolution, resolution):
                        im = im.resize((resolution, resolution), Image.BILINEAR)
                    a = np.asarray(im)
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                raise ValueError(f"{name}: not a readable image ({_short(e)})") from None
            if x is None:
                shape = a.shape
                x = np.empty((len(entries), *a.shape[:2], 1 if mode == "L" else 3), np.uint8)
            elif a.shape != shape:
                raise ValueError(f"{where}: images differ in size ({name}: {a.shape[:2]} vs {shape[:2]}); "
                                 f"set a resolution")
            x[i] = a.reshape(x.shape[1:])
        out[split] = (x, np.array([index[c] for c, _, _ in entries], np.int64))
    return _Raw("", "", classes, out["train"][0], out["train"][1], out["test"][0], out["test"][1])


_LOADERS = {"imagefolder": _load_imagefolder_dir, "imagefolder-tar": _load_imagefolder_tar,
            "cifar": _load_cifar_dir, "cifar-tar": _load_cifar_tar}


def _resize(x: np.ndarray, size: int) -> np.ndarray:
    """Bilinear resize of uint8 (N, H, W, C) images with PIL."""
    from PIL import Image

    out = np.empty((len(x), size, size, x.shape[3]), np.uint8)
    for i, img in enumerate(x):
        im = Image.fromarray(img[..., 0] if x.shape[3] == 1 else img)
        out[i] = np.asarray(im.resize((size, size), Image.BILINEAR)).reshape(size, size, x.shape[3])
    return out
