"""KV caches of recent prompts, so that a prompt prefills only what follows the longest part it shares with one.

One entry is not enough for the LLM proposer with the improver on: the diagnosis prompt and the generator prompt
alternate, share little more than the task and the space's description, and each would evict the other. SmolLM2 on
one thread of the loaded 2-core machine prefills about 100 tokens a second, most of a proposer call's time: with the
improver on, 4 caches instead of 1 make the prefill of a round (improver + generator, 3,200 tokens) 1.19x faster
(benchmarks/bench_prefill.py).
"""
from __future__ import annotations

import copy
from typing import Any, Callable


class PrefixCache:
    """The KV caches (transformers ``Cache`` objects) of the last ``size`` prompts, keyed by their token ids; the least
    recently used is dropped first."""

    def __init__(self, size: int = 4):
        self.size = max(1, int(size))
        self._entries: list[tuple[list[int], Any]] = []      # (token ids, their cache), most recently used last

    def __len__(self) -> int:
        return len(self._entries)

    def take(self, ids: list[int], new_cache: Callable[[], Any]) -> tuple[Any, int]:
        """A cache to extend for ``ids``, and how many of its first tokens it already holds.

        The entry sharing the longest prefix with ``ids``: itself (it leaves the cache: the caller extends it in place
        and :meth:`put` s it back, so an error in between leaves nothing stale) when all of it is that prefix, else a
        copy cut to the prefix (the entry stays for the prompts it serves). ``new_cache()`` when none shares a token.
        """
        best, reuse = -1, 0
        for i, (cached, _) in enumerate(self._entries):
            k = shared_length(cached, ids)
            if k > reuse or (k == reuse > 0 and k == len(cached)):    # a tie: the entry used whole needs no copy
                best, reuse = i, k
        if best < 0:
            return new_cache(), 0
        cached, cache = self._entries[best]
        if reuse == len(cached):
            del self._entries[best]
            return cache, reuse
        cache = copy.deepcopy(cache)
        cache.crop(reuse - len(cached))                       # a negative count removes that many tokens
        return cache, reuse

    def put(self, ids: list[int], cache: Any) -> None:
        """Keep ``cache`` as the cache of ``ids`` (replacing an entry for the same ids)."""
        self._entries = [e for e in self._entries if e[0] != ids]
        self._entries.append((list(ids), cache))
        del self._entries[:-self.size]

    def clear(self) -> None:
        self._entries.clear()


def shared_length(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` have in common."""
    n, limit = 0, min(len(a), len(b))
    while n < limit and a[n] == b[n]:
        n += 1
    return n
