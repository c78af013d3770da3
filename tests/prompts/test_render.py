"""Prompts are filled from the memory; every part the memory holds reaches the text, and switches remove parts."""
from __future__ import annotations

from llmnas_local.memory.feedback import Elite, TrialOutcome, Triple
from llmnas_local.prompts import PromptContext, generator_messages, improver_messages


def _ctx(**kw):
    base = dict(task="digits, 10 classes", description="cells of ops", examples=("|a|", "|b|"),
                elites=(Elite("|best|", 91.5, 0.3, 40.0),),
                triples=(Triple("too shallow", "add a stage", "|tried|", TrialOutcome("invalid", error="rejected: x")),),
                max_params_m=1.0)
    base.update(kw)
    return PromptContext(**base)


def test_generator_prompt_shows_task_caps_elites_triples_and_diagnosis():
    [system, user] = generator_messages(_ctx(), {"problem": "P!", "modification": "M!"})
    assert system["role"] == "system" and user["role"] == "user"
    text = user["content"]
    for needle in ("digits, 10 classes", "at most 1M parameters", "|best|  -> val_acc 91.50, 0.300M params, 40.0M FLOPs",
                   "problem: too shallow | modification: add a stage", "outcome: invalid, not evaluated: rejected: x",
                   "Diagnosis: P!", "Apply this modification: M!", "|a|\n|b|"):
        assert needle in text, needle
    assert "$" not in text


def test_empty_memory_says_so_and_improver_asks_for_a_diagnosis():
    [_, user] = improver_messages(_ctx(elites=(), triples=(), max_params_m=None))
    assert user["content"].count("(no results yet)") == 1 and user["content"].count("(no attempts yet)") == 1
    assert "Constraints" not in user["content"]
    assert '"problem"' in user["content"] and '"modification"' in user["content"]
