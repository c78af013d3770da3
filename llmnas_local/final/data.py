"""The data a final training uses: the data set the search scored the architecture on, found by its fingerprint.

A run's recipe names its data by content (``recipe["data"]``: fingerprint, split seed, validation share, image size),
not by path. The final training uses the same data and the same train/validation split, but whole: the search's caps
on the split sizes (``--train-size``...) are a proxy's and do not apply. The source is, in order: the one the user gives
(its fingerprint must match), sklearn's digits, or a decoded-data cache file (``~/.cache/llmnas/data``) whose
fingerprint matches: the arrays the search itself trained on. A run scored by table look-up (nb201) names no data: the
user gives it.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from llmnas_local.evaluators.data import Dataset, DataSpec, load_dataset


def cache_root() -> Path:
    """Where :mod:`llmnas_local.evaluators.data` caches decoded arrays (its default)."""
    return Path(os.environ.get("LLMNAS_CACHE_DIR") or Path.home() / ".cache" / "llmnas" / "data").expanduser()


def _cached_with(fingerprint: str) -> Path | None:
    """A decoded-data cache file holding the data of ``fingerprint`` (reads one small array of each)."""
    import numpy as np

    root = cache_root()
    if not root.is_dir():
        return None
    for path in sorted(root.glob("*.npz")):
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["fingerprint"]) == fingerprint:
                    return path
        except Exception:  # noqa: BLE001 - a torn or foreign cache file is skipped
            continue
    return None


def _load(source: str, data: dict[str, Any]) -> Dataset:
    spec = DataSpec(source=source, val_fraction=data.get("val_fraction", 0.1), split_seed=data.get("split_seed", 0))
    ds = load_dataset(spec)
    size = data.get("input_size")
    if size and ds.input_size != size:          # the search resized: so does this
        ds = load_dataset(spec, resolution=int(size))
    return ds


def find_dataset(recipe: dict[str, Any], source: str | None = None, run_id: str = "the run") -> Dataset:
    """The whole data set (every image of each split) that ``recipe`` (a run's) names; ValueError with one line if
    ``source`` holds other data or none can be found."""
    data = recipe.get("data")
    if not isinstance(data, dict) or "fingerprint" not in data:
        if source is None:
            raise ValueError(f"{run_id} scored architectures by table look-up and names no images: give --data "
                             f"(the images to train on)")
        return load_dataset(DataSpec(source=source))
    want = data["fingerprint"]
    if source is not None:
        ds = _load(source, data)
        if ds.fingerprint != want:
            raise ValueError(f"--data {source} is not the data {run_id} was scored on (its fingerprint "
                             f"{ds.fingerprint[:12]} != {want[:12]})")
        return ds
    for found in ("digits", _cached_with(want)):
        if found is None:
            continue
        ds = _load(str(found), data)
        if ds.fingerprint == want:
            return ds
    raise ValueError(f"cannot find the data {run_id} was scored on (fingerprint {want[:12]}): give --data (the "
                     f"source its search used)")
