"""What the LLM proposers record of their model calls: one typed record per candidate, the call's id shared by the
candidates of one call, and the model as the user named it -- never the folder its weights were loaded from."""
from __future__ import annotations

import dataclasses

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.llm import EMBEDDED, BackendSpec
from llmnas_local.proposers import LLM_PROPOSERS, create_proposer
from llmnas_local.proposers.llm_edit import LLMEditConfig
from llmnas_local.records import LLMCall, TrialRecord, TrialStatus
from llmnas_local.search import Search
from llmnas_local.store import MemoryStore
from tests.fakes import FakeMutatorBackend, FakeScoreEvaluator

SETTINGS = {"llm": {"improver": False, "candidates": 3}, "llm-evo": {"population": 4, "tournament": 2},
            "llm-edit": {"population": 4, "tournament": 2, "epsilon": 0.0}}
if "choice" in {f.name for f in dataclasses.fields(LLMEditConfig)}:       # decoding, which the fake backend can do
    SETTINGS["llm-edit"]["choice"] = "sample"


def _strings(obj):
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _strings(v)


@pytest.mark.parametrize("name", LLM_PROPOSERS)
def test_records_name_the_model_as_the_user_did_never_its_folder(name, monkeypatch, tmp_path):
    folder = tmp_path / "models" / "SmolLM2-135M-Instruct"           # where a backend resolves the name to
    monkeypatch.setattr(BackendSpec, "create", lambda spec: FakeMutatorBackend(model=str(folder)))
    store = MemoryStore()
    search = Search(get_space("nb201"), create_proposer(name, backend=BackendSpec(), **SETTINGS[name]),
                    FakeScoreEvaluator(), store, seed=0)
    search.run(budget=10)
    trials = store.trials(search.run_id)
    by_model = [t for t in trials if t.llm is not None]
    assert by_model and all(t.llm.model == EMBEDDED and t.llm.call_id for t in by_model)
    assert store.get_run(search.run_id).proposer_settings["model"] == EMBEDDED
    written = [t.to_json() for t in trials] + [store.get_run(search.run_id).to_json()]
    assert not [s for s in _strings(written) if s.startswith(("/", str(tmp_path)))]


def test_records_stored_before_the_typed_record_still_load():
    old = {"backend": "transformers", "model": "smollm2", "prompt_hash": "p", "raw_output": "x", "tokens_in": None,
           "tokens_out": 7, "gen_s": 0.5, "diagnosis": {"problem": "a", "modification": "b"}, "grammar": "unseen",
           "call_id": 12345}
    t = TrialRecord("r", 0, "llm", "x", TrialStatus.INVALID, llm=old)
    assert t.llm == LLMCall(call_id="12345", backend="transformers", model="smollm2", prompt_hash="p",
                            raw_output="x", tokens_out=7, gen_s=0.5, diagnosis={"problem": "a", "modification": "b"},
                            extra={"grammar": "unseen"})
    assert TrialRecord.loads(t.dumps()) == t
    assert TrialRecord("r", 1, "random", "x", TrialStatus.INVALID, llm={}).llm is None
