"""GrammarSampler on small grammars: each construct, its bounds, determinism, and the errors it must raise."""
from __future__ import annotations

import random
import re

import pytest

from llmnas_local.dsl.sampler import GrammarSampler


def draws(ebnf: str, n: int = 300, seed: int = 0) -> list[str]:
    sampler, rng = GrammarSampler(ebnf), random.Random(seed)
    return [sampler.sample(rng) for _ in range(n)]


def test_literal_and_escapes():
    assert set(draws('root ::= "abc"', 5)) == {"abc"}
    assert draws(r'root ::= "a\"b\\c\n\t\x41\u00e9"', 1) == ['a"b\\c\n\tA\u00e9']


def test_comments_and_multiline_rules():
    ebnf = """
    # a comment before the rules
    root ::= a   # trailing comment
             " " b
    a ::= "x"
    b ::= "y" | # split alternation
          "z"
    """
    assert set(draws(ebnf)) == {"x y", "x z"}


def test_alternation_uniform_over_alternatives():
    out = draws('root ::= "a" | "b" | "c" | ("d" | "e")', 3000)
    assert set(out) == set("abcde")
    counts = {c: out.count(c) for c in "abc"}
    assert all(650 < k < 850 for k in counts.values()), counts  # each of the 4 top-level alternatives ~1/4


@pytest.mark.parametrize("suffix, lo, hi", [("?", 0, 1), ("{3}", 3, 3), ("{2,4}", 2, 4), ("{0,2}", 0, 2),
                                            ("*", 0, None), ("+", 1, None), ("{2,}", 2, None)])
def test_repetition_bounds(suffix, lo, hi):
    lengths = {len(s) for s in draws(f'root ::= "a"{suffix}', 500)}
    assert min(lengths) == lo
    if hi is not None:
        assert max(lengths) == hi and lengths == set(range(lo, hi + 1))
    else:  # unbounded: capped, but more than the minimum is drawn
        assert max(lengths) > lo and max(lengths) <= lo + 10


def test_repetition_of_group_redraws_each_copy():
    out = draws('root ::= ("a" | "b"){4}', 500)
    assert all(re.fullmatch("[ab]{4}", s) for s in out)
    assert len(set(out)) == 16


def test_char_classes():
    out = "".join(draws('root ::= [a-c0-1_]', 500))
    assert set(out) == set("abc01_")
    neg = "".join(draws(r'root ::= [^a-y"\\]', 2000))
    assert neg and not set(neg) & set('abcdefghijklmnopqrstuvwxy"\\')
    assert "z" in neg and all(" " <= c <= "~" for c in neg)
    assert set("".join(draws(r'root ::= [\-\]x]', 200))) == set("-]x")


def test_nested_groups_and_rule_references():
    ebnf = 'root ::= ("<" (pair ("," pair){0,2})? ">"){1,2}\npair ::= [a-b] ":" ("1" | "2"+)'
    pattern = re.compile(r"(<([ab]:(1|2+)(,[ab]:(1|2+)){0,2})?>){1,2}")
    out = draws(ebnf, 500)
    assert all(pattern.fullmatch(s) for s in out)
    assert "<>" in out and any(s.count(",") == 4 for s in out)


def test_recursive_grammar_terminates():
    out = draws('root ::= expr\nexpr ::= term ("+" term)*\nterm ::= "1" | "(" expr ")" | expr expr', 200)
    assert all(s and s.count("(") == s.count(")") for s in out)


def test_deterministic_per_seed():
    ebnf = 'root ::= ([a-z] | "-"){1,20}'
    assert draws(ebnf, 50, seed=7) == draws(ebnf, 50, seed=7)
    assert draws(ebnf, 50, seed=7) != draws(ebnf, 50, seed=8)


def test_alphabet():
    assert GrammarSampler('root ::= "ab" [x-z] | "c"').alphabet() == set("abcxyz")


@pytest.mark.parametrize("ebnf, message", [
    ('item ::= "a"', "no root rule 'root'"),
    ('root ::= item', "undefined rule 'item'"),
    ('root ::= "a" (= "b")', "lookahead"),
    ("root ::= 'a'", "single-quoted"),
    ('root ::= TagDispatch(("a", b))', "built-in function call `TagDispatch(...)`"),
    ('root ::= "a"{3,1}', "max < min"),
    ('root ::= "a"{x}', "repetition bounds"),
    ('root ::= "abc', "unterminated string"),
    ('root ::= [abc', "unterminated character class"),
    ('root ::= []', "empty character class"),
    ('root ::= [z-a]', "reversed"),
    ('root ::= [^ -~]', "excludes every printable character"),
    ('root ::= "a"\nroot ::= "b"', "defined twice"),
    ('root ::= "a" | | "b"', "empty alternative"),
    ('root ::= ("a"', "expected `)`"),
    ('root ::= "\\q"', "escape sequence \\q"),
    ('root ::= "a" root', "derives no finite string"),
    ('root := "a"', "expected a rule"),
])
def test_unsupported_or_broken_grammar_raises(ebnf, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        GrammarSampler(ebnf)


def test_samples_are_accepted_by_xgrammar():
    xgr = pytest.importorskip("xgrammar")
    ebnf = r'''root ::= block (" " block){0,3}
block ::= ("ir" | "ds") "_k" ("3" | "5") ("_se0." [0-9]{2})? "_c" [1-9] [0-9]* | "\"" [^"\\]{1,3} "\""'''
    compiled = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False).compile_grammar(
        xgr.Grammar.from_ebnf(ebnf))
    matcher = xgr.GrammarMatcher(compiled, terminate_without_stop_token=True)
    for s in draws(ebnf, 300):
        matcher.reset()
        assert matcher.accept_string(s) and matcher.is_terminated(), s
