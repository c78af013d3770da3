"""Stochastic beam search with a fake model and real xgrammar matchers: distinct completions, drawn as sampling
without replacement draws them, with the cache rows following their beams."""
import collections
import functools

import pytest
import torch
import xgrammar as xgr

from llmnas_local.llm.distinct_decoding import conditioned_gumbel, decode_distinct
from tests.llm.test_jump_forward import EOS, PAD, PROMPT, VOCAB, FakeModel, FakeTokenizer

GRAMMAR = 'root ::= ("a" | "b") "~" ("a" | "b")'      # four strings; "~" is forced between the two choices
P_A = torch.softmax(torch.tensor([1.0, 0.0]), 0)[0].item()   # the fake model: "a" at logit 1, the rest at 0
PROB = {x + "~" + y: (P_A if x == "a" else 1 - P_A) * (P_A if y == "a" else 1 - P_A) for x in "ab" for y in "ab"}


class UniformishModel(FakeModel):
    def next_logits(self, r):
        logits = torch.zeros(len(VOCAB))
        logits[VOCAB.index("a")] = 1.0
        return logits


@functools.cache
def _compiled(grammar):
    return xgr.GrammarCompiler(xgr.TokenizerInfo(VOCAB, stop_token_ids=[EOS])).compile_grammar(grammar)


def _distinct(n, seed, temperature=1.0, grammar=GRAMMAR, max_tokens=20, identity=None):
    compiled = _compiled(grammar)
    model = UniformishModel(1, 5, ["a"])
    torch.manual_seed(seed)
    out = decode_distinct(model.forward, model.keep_rows, [PROMPT] * 5, n, compiled=compiled, tokenizer=FakeTokenizer(),
                          token_texts=VOCAB, stop_ids=[EOS], pad_id=PAD, max_tokens=max_tokens,
                          temperature=temperature, top_p=1.0, identity=identity)
    texts = ["".join(VOCAB[t] for t in tokens if t != EOS) for tokens, _ in out]
    return texts, out, model


def test_n_completions_are_distinct_and_fewer_only_when_the_grammar_runs_out():
    for seed in range(20):
        texts, out, model = _distinct(3, seed)
        assert len(texts) == len(set(texts)) == 3 and set(texts) <= set(PROB)
        assert all(finish == "stop" and tokens[-1] == EOS for tokens, finish in out)
        assert len(model.calls) == 2                  # one pass per choice; the forced "~" rides with the second
    texts, _, _ = _distinct(6, 0)
    assert sorted(texts) == sorted(PROB)


def test_one_text_in_two_tokenizations_or_one_identity_counts_once():
    for seed in range(10):
        texts, out, _ = _distinct(3, seed, grammar='root ::= ("ab" | "b") "~"')    # "ab": one token or "a" + "b"
        assert sorted(texts) == ["ab~", "b~"], out
        texts, _, _ = _distinct(4, seed, identity=lambda text: text[0])         # alike when the first choice is
        assert sorted(t[0] for t in texts) == ["a", "b"]
        assert _distinct(4, seed, identity=lambda text: 1 / 0)[0] != []         # an identity that fails: the text


def test_temperature_zero_is_beam_search():
    texts, _, _ = _distinct(3, 0, temperature=0)
    assert texts == ["a~a", "a~b", "b~a"] or texts == ["a~a", "b~a", "a~b"]     # the two middle ones tie
    assert _distinct(1, 0, temperature=0)[0] == ["a~a"]


def test_draws_follow_sampling_without_replacement():
    """The first completion is a sample of the model's distribution; the pair of two includes each string with the
    probability sampling without replacement gives it."""
    trials = 2000
    first, included = collections.Counter(), collections.Counter()
    for seed in range(trials):
        texts, _, _ = _distinct(2, seed)
        first[texts[0]] += 1
        included.update(texts)
    for text, p in PROB.items():
        assert abs(first[text] / trials - p) < 0.04, (text, first[text] / trials, p)
        pair = p + sum(PROB[o] * p / (1 - PROB[o]) for o in PROB if o != text)
        assert abs(included[text] / trials - pair) < 0.04, (text, included[text] / trials, pair)


def test_max_tokens_ends_a_beam_with_length():
    texts, out, _ = _distinct(2, 0, max_tokens=2)
    assert texts == ["a~", "b~"] or texts == ["b~", "a~"]
    assert [finish for _, finish in out] == ["length", "length"]


@pytest.mark.parametrize("parent", [0.0, -3.5])
def test_children_keys_peak_at_the_parents_key(parent):
    torch.manual_seed(0)
    log_p = torch.log(torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)) + parent
    for _ in range(50):
        keys = conditioned_gumbel(log_p, parent)
        assert keys.max().item() == pytest.approx(parent) and torch.isfinite(keys).all()


def test_cache_rows_follow_the_beams():
    """Every row the fake model holds is one beam's tokens: its positions and mask were checked at every pass."""
    _, out, model = _distinct(4, 1)
    assert model.kept[0] == [0, 0]                    # the root's row copied to its two children
    decoded = {tuple(tokens[:-1]) for tokens, _ in out}
    assert len(decoded) == 4
    a, b, tilde = (VOCAB.index(t) for t in "ab~")
    assert sorted(model.calls[1]) == [[a, tilde], [b, tilde]]     # each child's choice and the forced text after it
