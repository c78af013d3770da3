"""llm-edit: regularized evolution whose edits the model chooses, with a fake backend (the real model runs it in the
benchmark grids, benchmarks/grids/nb201-llm-edit-*.toml)."""
from __future__ import annotations

import random

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.base import Constraints
from llmnas_local.dsl.nb201 import Nb201Spec
from llmnas_local.dsl.sampler import GrammarSampler
from llmnas_local.llm.base import Scores
from llmnas_local.memory.edits import EditMemory, find_edit
from llmnas_local.prompts.render import edit_outcome_text
from llmnas_local.proposers import create_proposer
from llmnas_local.proposers.evolution import EvolutionProposer
from llmnas_local.proposers.llm_edit import LLMEditConfig, LLMEditProposer, edit_grammar
from llmnas_local.search import Search
from llmnas_local.store import MemoryStore
from tests.fakes import FakeMutatorBackend, FakeScoreEvaluator

SPACE = get_space("nb201")


class FakeScoringBackend(FakeMutatorBackend):
    """A "model" that scores answers: it likes avg_pool_3x3 whatever the prompt (a fixed preference) and, when the
    parent's values are shown, nor_conv_3x3 a little more than that; records the prompts it scored."""

    scores_continuations = True

    def __init__(self):
        super().__init__()
        self.scored = []

    def score(self, messages, continuations):
        content_free = "val_acc ?" in messages[-1]["content"]
        self.scored.append((content_free, list(continuations)))
        values = [(-1.0 if c.endswith("avg_pool_3x3") else -5.0) +
                  (0.0 if content_free or not c.endswith("nor_conv_3x3") else 4.5) + (0.01 if "e2" in c else 0.0)
                  for c in continuations]
        return Scores(values, 321, 0.05)


def _search(config: LLMEditConfig, seed: int = 0, backend=None):
    backend = backend or FakeMutatorBackend()
    return Search(SPACE, LLMEditProposer(backend, config), FakeScoreEvaluator(), MemoryStore(), seed=seed), backend


def test_warm_up_is_evolutions_and_every_child_is_one_edit_of_its_parent():
    study, backend = _search(LLMEditConfig(population=4, tournament=2, epsilon=0.5, choice="sample"), seed=3)
    study.run(budget=40)
    evolution = Search(SPACE, EvolutionProposer(4, 2), FakeScoreEvaluator(), MemoryStore(), seed=3)
    evolution.run(budget=4)
    trials = study.history.trials
    assert [t.raw for t in trials[:4]] == [t.raw for t in evolution.history.trials]   # the seeds pair
    by_model = [t for t in trials if t.llm]
    by_mutation = [t for t in trials[4:] if not t.llm]
    assert by_model and by_mutation                                   # both sources at epsilon 0.5
    by_hash = {t.arch_hash: t for t in trials}
    for t in trials[4:]:
        parent, child = SPACE.parse(by_hash[t.parent_hash].raw).ops, SPACE.parse(t.raw).ops
        assert sum(a != b for a, b in zip(parent, child)) >= 1
    for t in by_model:                                                # the model's: exactly the edit it wrote
        parent, child = SPACE.parse(by_hash[t.parent_hash].raw), SPACE.parse(t.raw)
        edit = t.llm.extra["edit"]
        k = int(edit["slot"][1:]) - 1
        assert child.ops[k] == edit["value"] != parent.ops[k]
        assert child.ops[:k] + child.ops[k + 1:] == parent.ops[:k] + parent.ops[k + 1:]
        assert t.llm.diagnosis["problem"].startswith(edit["slot"])
    assert study.counts()["duplicate"] == 0 and study.counts()["invalid"] == 0


def test_the_grammar_admits_only_valid_unevaluated_edits():
    study, backend = _search(LLMEditConfig(population=4, tournament=2, epsilon=0.0, choice="sample"), seed=1)
    study.run(budget=30)
    grammar, prompt = backend.grammars[-1], backend.prompts[-1][-1]["content"]
    parts = [line for line in prompt.splitlines() if line.startswith("e") and " = " in line][-6:]
    parent = SPACE.parse("|{}~0|+|{}~0|{}~1|+|{}~0|{}~1|{}~2|".format(*(p.split(" = ")[1] for p in parts)))
    known = {t.arch_hash for t in study.history.trials[:-1]}
    for i in range(300):
        answer = GrammarSampler(grammar).sample(random.Random(i))
        slot, value = answer.removeprefix("weak part: ").split("\nnew value: ")
        k = int(slot[1:]) - 1
        child = Nb201Spec(parent.ops[:k] + (value,) + parent.ops[k + 1:])
        SPACE.check(child, Constraints())                             # valid...
        assert SPACE.arch_hash(child) not in known                    # ...and not evaluated before the call


def test_memory_shows_the_last_edits_and_each_slots_record_and_k0_shows_none():
    config = LLMEditConfig(population=4, tournament=2, epsilon=0.5, window=3, slot_stats=True, choice="sample")
    study, backend = _search(config, seed=2)
    study.run(budget=40)
    prompt = backend.prompts[-1][-1]["content"]
    assert "Last edits, oldest first:" in prompt and "Each part's edits in this run, best first:" in prompt
    last = prompt.split("Last edits, oldest first:\n")[1].split("\n\n")[0].splitlines()
    assert len(last) == 3
    lines = [f"{e.slot} {e.old} -> {e.new}: {edit_outcome_text(e)}" for e in EditMemory(3).edits(study.history)]
    assert any(lines[i:i + 3] == last for i in range(len(lines)))     # three consecutive edits of the run
    bare, bare_backend = _search(LLMEditConfig(population=4, tournament=2, epsilon=0.5, window=0, slot_stats=False,
                                                       choice="sample"),
                                 seed=2)
    bare.run(budget=40)
    assert all("Last edits" not in p[-1]["content"] and "Each part's" not in p[-1]["content"]
               for p in bare_backend.prompts)
    assert "What tends to matter" not in prompt                       # hints are off unless asked for


def test_find_edit_measures_the_child_against_its_parent():
    study, _ = _search(LLMEditConfig(population=4, tournament=2, epsilon=1.0, choice="sample"), seed=5)
    study.run(budget=20)
    by_hash = {t.arch_hash: t for t in study.history.trials}
    child = next(t for t in study.history.trials if t.parent_hash
                 and sum(a != b for a, b in zip(SPACE.parse(t.raw).ops,
                                                SPACE.parse(by_hash[t.parent_hash].raw).ops)) == 1)
    edit = find_edit(SPACE, by_hash[child.parent_hash], child)
    assert edit.delta == pytest.approx(child.metrics["val_acc"] - by_hash[child.parent_hash].metrics["val_acc"])
    assert edit_outcome_text(edit) == f"{edit.delta:+.2f}" and edit.status == "complete"


def test_resume_is_exact():
    store = MemoryStore()
    config = LLMEditConfig(population=4, tournament=2, choice="sample")
    whole = Search(SPACE, LLMEditProposer(FakeMutatorBackend(), config), FakeScoreEvaluator(), MemoryStore(), seed=7)
    whole.run(budget=30)
    Search(SPACE, LLMEditProposer(FakeMutatorBackend(), config), FakeScoreEvaluator(), store, seed=7).run(budget=17)
    resumed = Search(SPACE, LLMEditProposer(FakeMutatorBackend(), config), FakeScoreEvaluator(), store, seed=7)
    resumed.run(budget=30)
    assert [t.raw for t in resumed.history.trials] == [t.raw for t in whole.history.trials]


def test_edit_grammar_and_registration():
    grammar = edit_grammar({("e1", "none"): None, ("e1", "skip_connect"): None, ("e4", "nor_conv_3x3"): None})
    answers = {GrammarSampler(grammar).sample(random.Random(i)) for i in range(100)}
    assert answers == {"weak part: e1\nnew value: none", "weak part: e1\nnew value: skip_connect",
                       "weak part: e4\nnew value: nor_conv_3x3"}
    proposer = create_proposer("llm-edit", backend=FakeScoringBackend(), model="fake", epsilon=0.25)
    s = proposer.settings()
    assert (s["epsilon"], s["window"], s["slot_stats"], s["hints"], s["model"], s["choice"]) == \
        (0.25, 0, False, False, "fake", "calibrated")                 # the measured best: no memory
    assert "choice" not in create_proposer("llm-edit", backend=FakeMutatorBackend(), choice="sample").settings()
    with pytest.raises(ValueError, match="scores continuations"):
        create_proposer("llm-edit", backend=FakeMutatorBackend())
    with pytest.raises(ValueError, match="epsilon"):
        LLMEditConfig(epsilon=1.5)


def test_cnn_slots_drive_edits_that_pass_the_caps():
    space = get_space("cnn")
    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=25.0)
    spec = space.parse(space.examples()[0])
    proposer = LLMEditProposer(FakeMutatorBackend(), LLMEditConfig(choice="sample"))
    guard = space.prefix_guard(caps)
    allowed = [(s.name, v) for s in space.slots(spec) for v, child in s.options
               if proposer._fact(space, caps, guard, child) is not None]
    assert ("s1.k", "5") in allowed and ("stem.c", "8") in allowed
    assert ("head.c", "512") in allowed or all(not guard(space.format(c)) for s in space.slots(spec)
                                                 if s.name == "head.c" for v, c in s.options if v == "512")


def test_calibrated_choice_removes_the_models_fixed_preferences():
    backend = FakeScoringBackend()
    study, _ = _search(LLMEditConfig(population=4, tournament=2, epsilon=0.0), seed=4, backend=backend)
    study.run(budget=20)
    chosen = [t for t in study.history.trials if t.llm is not None]
    assert chosen and all(t.llm.finish_reason == "scored" and t.llm.extra["choice"] == "calibrated" for t in chosen)
    # raw scores favour avg_pool_3x3 (-1 vs -0.5 for nor_conv_3x3 ... ) but that preference is also in the
    # content-free prompt: calibrated, nor_conv_3x3 (+4.5 over its content-free score) wins wherever it is allowed
    for t in chosen:
        assert t.llm.extra["edit"]["value"] == "nor_conv_3x3" or t.llm.extra["options"] < 24
        assert t.llm.extra["calibrated_score"] == pytest.approx(4.5 + 0.0, abs=0.02) or \
            t.llm.extra["edit"]["value"] != "nor_conv_3x3"
    free_calls = [keys for content_free, keys in backend.scored if content_free]
    assert len(free_calls) == 1 and len(free_calls[0]) == 30       # once per run: 6 slots x 5 values
    assert backend.grammars == []                                   # nothing decoded


def test_cnn_warm_up_members_fit_the_caps():
    """Random cnn strings are mostly over the caps: the warm-up redraws them, so a capped search does not stall."""
    from llmnas_local.search.history import HistoryView

    space = get_space("cnn")
    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=25.0)
    proposer = LLMEditProposer(FakeMutatorBackend(), LLMEditConfig(choice="sample"))
    history, guard, rng = HistoryView(space, caps), space.prefix_guard(caps), random.Random(0)
    members = [proposer.propose(history, 1, rng)[0].text for _ in range(20)]
    assert all(guard(m) for m in members)
    raw = [space.sample(random.Random(i)) for i in range(50)]
    assert sum(guard(m) for m in raw) < 25                          # the sampler alone: mostly over the caps


def test_a_backend_that_cannot_score_is_refused_before_a_model_loads(monkeypatch):
    from llmnas_local.llm import BackendSpec

    def no_loading(spec):
        raise AssertionError("the backend was created before the settings were checked")

    monkeypatch.setattr(BackendSpec, "create", no_loading)
    with pytest.raises(ValueError, match="scores continuations"):
        create_proposer("llm-edit", llm="vllm")
