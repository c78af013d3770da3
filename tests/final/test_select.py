"""Which architecture a command means: hash, unique prefix, --best; every refusal one line."""
from __future__ import annotations

import dataclasses

import pytest

from llmnas_local.final.select import resolve_hash, select_trial
from llmnas_local.records import RunRecord, TrialRecord, TrialStatus
from llmnas_local.store import MemoryStore

from .conftest import RUN, fill_store


@pytest.fixture
def store():
    st = MemoryStore()
    hashes = fill_store(st)
    yield st, hashes
    st.close()


def test_hash_prefix_and_best(store):
    st, h = store
    assert select_trial(st, h["other"][:6]).arch_hash == h["other"]
    assert select_trial(st, h["other"].upper()).arch_hash == h["other"]          # case does not matter
    assert select_trial(st, best=True).arch_hash == h["small"]
    assert select_trial(st, best=True, run_id=RUN).arch_hash == h["small"]


@pytest.mark.parametrize("arch, best, run_id, message", [
    ("ffff", False, None, "no architecture with hash 'ffff'"),
    (None, False, None, "either an architecture hash or --best"),
    ("ab", True, None, "not both"),
    (None, True, "nope", "no run 'nope'"),
])
def test_refusals(store, arch, best, run_id, message):
    st, _ = store
    with pytest.raises(ValueError, match=message) as e:
        select_trial(st, arch, best=best, run_id=run_id)
    assert "\n" not in str(e.value)


def test_never_completed_is_refused(store):
    st, h = store
    with pytest.raises(ValueError, match=rf"{h['rejected'][:12]} has no completed evaluation .*invalid"):
        select_trial(st, h["rejected"][:10])


def test_ambiguous_prefix_lists_the_matches(store):
    st, _ = store
    for seq, tail in ((3, "1"), (4, "2")):          # two more (rejected) architectures whose hashes begin alike
        st.record_trial(TrialRecord(run_id=RUN, seq=seq, proposer="random", raw=f"x{seq}",
                                    status=TrialStatus.INVALID, canonical=f"x{seq}", arch_hash="ab" + tail * 62))
    with pytest.raises(ValueError) as e:
        resolve_hash(st, "ab")
    assert str(e.value) == ("hash prefix 'ab' matches 2 architectures in the store: ab11111111111111, "
                            "ab22222222222222; give more of the hash")
    assert resolve_hash(st, "ab2") == "ab" + "2" * 62


def test_best_refuses_runs_of_different_recipes(store):
    st, _ = store
    run = st.get_run(RUN)
    st.put_run(dataclasses.replace(run, run_id="other-data", recipe_hash="x" * 64))
    with pytest.raises(ValueError, match="2 different recipes.*give --run"):
        select_trial(st, best=True)
    assert isinstance(st.get_run("other-data"), RunRecord)
