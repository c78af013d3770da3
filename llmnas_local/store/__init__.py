"""Where trials live: the store contract (:class:`BaseStore`) and its implementations.

``open_store(path)`` is the way in: an LMDB store in the directory ``path``, created if missing.
:class:`MemoryStore` holds the same records in memory, for unit tests and notebooks.
"""
from __future__ import annotations

import os

from llmnas_local.store.base import (FORMAT_VERSION, BaseStore, StoreError, StoreFullError, stores_outcome,
                                     text_hash)
from llmnas_local.store.lmdb_store import LmdbStore
from llmnas_local.store.memory_store import MemoryStore


def open_store(path: str | os.PathLike, *, readonly: bool = False) -> BaseStore:
    """Open the store in the directory ``path`` (created if missing unless ``readonly``)."""
    return LmdbStore(path, readonly=readonly)


__all__ = ["FORMAT_VERSION", "BaseStore", "LmdbStore", "MemoryStore", "StoreError", "StoreFullError", "open_store",
           "stores_outcome", "text_hash"]
