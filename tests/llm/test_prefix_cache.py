"""The prompt-prefix KV caches, with a fake cache that holds its token ids."""
from llmnas_local.llm.prefix_cache import PrefixCache, shared_length


class FakeCache:
    """Stands for a transformers cache: ``crop`` takes a negative count of tokens to remove, as ``DynamicCache``'s."""

    def __init__(self, tokens=()):
        self.tokens = list(tokens)

    def crop(self, count):
        assert count < 0
        del self.tokens[count:]


def _prefill(prefixes, ids):
    """What the backend does: take a cache, extend it with the tokens it lacks, put it back. Returns the extension."""
    cache, reuse = prefixes.take(ids, FakeCache)
    assert cache.tokens == ids[:reuse]
    cache.tokens += ids[reuse:]
    prefixes.put(ids, cache)
    return ids[reuse:]


def test_alternating_prompts_each_reuse_their_own_prefix():
    system = [1, 2, 3]
    improver = lambda k: system + [10, 11, 12, 13] + [k]          # noqa: E731
    generator = lambda k: system + [20, 21, 22, 23, 24] + [k]     # noqa: E731
    prefixes = PrefixCache(2)
    assert _prefill(prefixes, improver(0)) == improver(0)         # cold: everything
    assert _prefill(prefixes, generator(0)) == generator(0)[3:]   # shares the system text only
    for k in (1, 2, 3):
        assert _prefill(prefixes, improver(k)) == [k]
        assert _prefill(prefixes, generator(k)) == [k]
    assert len(prefixes) == 2


def test_a_shorter_match_is_a_copy_and_leaves_the_entry_whole():
    prefixes = PrefixCache(4)
    _prefill(prefixes, [1, 2, 3, 4, 5])
    assert _prefill(prefixes, [1, 2, 9]) == [9]
    assert _prefill(prefixes, [1, 2, 3, 4, 5, 6]) == [6]          # the first entry kept its tail
    assert _prefill(prefixes, [7, 8]) == [7, 8]                   # nothing shared: a new cache


def test_of_two_equal_matches_the_one_used_whole_is_taken_without_a_copy():
    prefixes = PrefixCache(4)
    _prefill(prefixes, [1, 2, 3, 4, 5])
    _prefill(prefixes, [1, 2, 3])
    whole = prefixes._entries[-1][1]
    cache, reuse = prefixes.take([1, 2, 3, 9], FakeCache)
    assert reuse == 3 and cache is whole and len(prefixes) == 1


def test_the_least_recently_used_entry_goes_first():
    prefixes = PrefixCache(2)
    _prefill(prefixes, [1, 1, 1])
    _prefill(prefixes, [2, 2, 2])
    _prefill(prefixes, [1, 1, 1])          # used again: now [2, 2, 2] is the oldest
    _prefill(prefixes, [3, 3, 3])
    assert len(prefixes) == 2
    assert _prefill(prefixes, [1, 1, 1, 4]) == [4]
    assert _prefill(prefixes, [2, 2, 2]) == [2, 2, 2]


def test_an_entry_taken_whole_is_gone_until_put_back():
    prefixes = PrefixCache(2)
    _prefill(prefixes, [1, 2, 3])
    cache, reuse = prefixes.take([1, 2, 3, 4], FakeCache)
    assert reuse == 3 and len(prefixes) == 0       # an error while extending it cannot leave a stale entry
    prefixes.clear()
    assert prefixes.take([1], FakeCache)[1] == 0


def test_shared_length():
    assert shared_length([1, 2, 3], [1, 2, 4]) == 2
    assert shared_length([], [1]) == 0
    assert shared_length([1, 2], [1, 2, 3]) == 2
