"""Differential test of every space's parser against its grammar as xgrammar reads it.

The grammar is the language's only definition and xgrammar is what constrains the LLM, so the strict parser must
accept exactly what xgrammar accepts. Strings sampled from the grammar must be accepted by both (and round-trip
through the canonical form with the same hash); near-miss mutants of them must be accepted by both or rejected by
both. ``benchmarks/dsl_differential.py`` runs the same check at a larger size.
"""
from __future__ import annotations

import copy
import dataclasses
import random
import re
from typing import Callable

import pytest

from llmnas_local.dsl import BaseSpace, DslError, get_space, list_spaces
from llmnas_local.dsl.sampler import GrammarSampler

N_SAMPLES, N_MUTANTS = 1000, 1000

_TOKEN = re.compile(r"[A-Za-z]+|\d+(?:\.\d+)?|.", re.S)
_NUMBER = re.compile(r"\d+(?:\.\d+)?")
_WHITESPACE = [" ", "  ", "\t", "\n", "\r\n", "\u00a0"]
_LOOKALIKE = {d: chr(0xFF10 + int(d)) for d in "0123456789"}  # fullwidth digits: int("\uff13") == 3 in Python


class XgrammarAcceptor:
    """Whole-string acceptance by xgrammar, tokenizer-free: an empty TokenizerInfo, one compiled grammar, one matcher
    that terminates without a stop token (the same construction as ``xgrammar.testing._get_matcher_from_grammar``)."""

    def __init__(self, ebnf: str):
        import xgrammar as xgr

        compiler = xgr.GrammarCompiler(xgr.TokenizerInfo([]), cache_enabled=False)
        self.matcher = xgr.GrammarMatcher(compiler.compile_grammar(xgr.Grammar.from_ebnf(ebnf)),
                                          terminate_without_stop_token=True)

    def __call__(self, text: str) -> bool:
        self.matcher.reset()
        return self.matcher.accept_string(text) and self.matcher.is_terminated()


# -- near-miss mutations: each takes (text, rng, vocab) and returns a string (maybe equal to text) ----------------
@dataclasses.dataclass
class Vocab:
    chars: list[str]  # the grammar's alphabet plus a few characters outside it
    sections: dict[str, list[str]]  # separator -> the pieces the sampled strings split into around it


def _vocab(sampler: GrammarSampler, samples: list[str]) -> Vocab:
    sections: dict[str, set[str]] = {}
    for s in samples:
        for sep in {c for c in s if not c.isalnum() and c != "."}:
            sections.setdefault(sep, set()).update(s.split(sep))
    return Vocab(sorted(sampler.alphabet() | {" ", "_", "-", ".", "x", "9"}),
                 {sep: sorted(v) for sep, v in sections.items()})


def _pos(s: str, rng: random.Random, end: bool = False) -> int:
    return rng.randrange(len(s) + end) if s else 0


def _sections(s: str, rng: random.Random) -> tuple[str, list[str]]:
    """Split on one separator (a non-alphanumeric character of the string) chosen at random."""
    seps = sorted({c for c in s if not c.isalnum() and c != "."}) or [" "]
    sep = rng.choice(seps)
    return sep, s.split(sep)


def m_delete_char(s, rng, vocab):
    i = _pos(s, rng)
    return s[:i] + s[i + 1:]


def m_insert_char(s, rng, vocab):
    i = _pos(s, rng, end=True)
    return s[:i] + rng.choice(vocab.chars) + s[i:]


def m_replace_char(s, rng, vocab):
    i = _pos(s, rng)
    return s[:i] + rng.choice(vocab.chars) + s[i + 1:]


def m_swap_tokens(s, rng, vocab):
    toks = _TOKEN.findall(s)
    if len(toks) < 2:
        return s
    i = rng.randrange(len(toks) - 1)
    toks[i], toks[i + 1] = toks[i + 1], toks[i]
    return "".join(toks)


def m_swap_sections(s, rng, vocab):
    sep, parts = _sections(s, rng)
    if len(parts) < 2:
        return s
    i = rng.randrange(len(parts) - 1)
    parts[i], parts[i + 1] = parts[i + 1], parts[i]
    return sep.join(parts)


def m_duplicate_section(s, rng, vocab):
    sep, parts = _sections(s, rng)
    i = rng.randrange(len(parts))
    return sep.join(parts[:i + 1] + parts[i:])


def m_drop_section(s, rng, vocab):
    sep, parts = _sections(s, rng)
    i = rng.randrange(len(parts))
    return sep.join(parts[:i] + parts[i + 1:])


def m_replace_section(s, rng, vocab):
    """Put a piece seen elsewhere (around the same separator) in place of one piece: a key, a stage, an edge."""
    sep, parts = _sections(s, rng)
    i = rng.randrange(len(parts))
    parts[i] = rng.choice(vocab.sections.get(sep) or [""])
    return sep.join(parts)


def m_truncate(s, rng, vocab):
    return s[:_pos(s, rng)]


def m_drop_separator(s, rng, vocab):
    idx = [i for i, c in enumerate(s) if not c.isalnum()]
    if not idx:
        return s
    i = rng.choice(idx)
    return s[:i] + s[i + 1:]


def m_number_neighbour(s, rng, vocab):
    nums = list(_NUMBER.finditer(s))
    if not nums:
        return s
    m = rng.choice(nums)
    text = m.group()
    if "." in text:
        new = rng.choice([f"{float(text) + rng.choice([-0.25, -0.05, 0.05, 0.25]):.2f}", text + "0", text.rstrip("0"),
                          text.split(".")[0], "." + text.split(".")[1], str(float(text) * 2)])
    else:
        n = int(text)
        new = rng.choice([str(n + 1), str(max(n - 1, 0)), str(n * 2), str(n // 2), "0" + text, str(n + 8), "-" + text])
    return s[:m.start()] + new + s[m.end():]


def m_whitespace(s, rng, vocab):
    i = rng.choice([0, len(s), _pos(s, rng, end=True)])
    ws = rng.choice(_WHITESPACE)
    if s[i - 1:i] == " " and rng.random() < 0.5:  # replace an existing space instead of adding one
        return s[:i - 1] + ws + s[i:]
    return s[:i] + ws + s[i:]


def m_lookalike(s, rng, vocab):
    """Upper-case a letter or turn a digit into its fullwidth form: lenient parsers (lower(), int()) accept these."""
    idx = [i for i, c in enumerate(s) if c.isalpha() or c in _LOOKALIKE]
    if not idx:
        return s
    i = rng.choice(idx)
    c = s[i]
    return s[:i] + (_LOOKALIKE.get(c) or c.swapcase()) + s[i + 1:]


MUTATIONS: list[Callable[[str, random.Random, Vocab], str]] = [
    m_delete_char, m_insert_char, m_replace_char, m_swap_tokens, m_swap_sections, m_duplicate_section, m_drop_section,
    m_replace_section, m_truncate, m_drop_separator, m_number_neighbour, m_whitespace, m_lookalike]


# -- the check ----------------------------------------------------------------------------------------------------
@dataclasses.dataclass
class DiffReport:
    space: str
    sampled: int = 0
    sampled_distinct: int = 0
    mutants: int = 0  # distinct mutants, none equal to a sampled string
    both_accept: int = 0
    both_reject: int = 0
    sample_failures: list[str] = dataclasses.field(default_factory=list)  # "reason: text"
    disagreements: list[str] = dataclasses.field(default_factory=list)  # "parser=.. xgrammar=.. [mutation] text"
    canonical_failures: list[str] = dataclasses.field(default_factory=list)
    crashes: list[str] = dataclasses.field(default_factory=list)  # parser raised something other than DslError
    by_mutation: dict[str, list[int]] = dataclasses.field(default_factory=dict)  # name -> [both_accept, both_reject]

    @property
    def ok(self) -> bool:
        return not (self.sample_failures or self.disagreements or self.canonical_failures or self.crashes)

    def summary(self, examples: int = 5) -> str:
        lines = [f"[{self.space}] sampled={self.sampled} (distinct {self.sampled_distinct}) mutants={self.mutants} "
                 f"accepted_by_both={self.both_accept} rejected_by_both={self.both_reject} "
                 f"disagreements={len(self.disagreements)} sample_failures={len(self.sample_failures)} "
                 f"canonical_failures={len(self.canonical_failures)} parser_crashes={len(self.crashes)}",
                 "  per mutation (accepted_by_both/rejected_by_both): "
                 + ", ".join(f"{k[2:]}={a}/{r}" for k, (a, r) in sorted(self.by_mutation.items()))]
        for name in ("sample_failures", "disagreements", "canonical_failures", "crashes"):
            lines += [f"  {name}: {x}" for x in getattr(self, name)[:examples]]
        return "\n".join(lines)


def _parser_accepts(space: BaseSpace, text: str, report: DiffReport) -> bool | None:
    try:
        space.parse(text)
        return True
    except DslError:
        return False
    except Exception as e:  # noqa: BLE001  (the contract is DslError; anything else is a bug to report)
        report.crashes.append(f"{type(e).__name__}: {e} on {text!r}")
        return None


def _check_canonical(space: BaseSpace, accepts: XgrammarAcceptor, text: str, report: DiffReport) -> None:
    """The canonical text is in the language (both sides), parses to the same hash and is a fixed point."""
    try:
        spec = space.parse(text)
        canon = space.canonical(spec)
        again = space.parse(canon)
        ok = space.arch_hash(again) == space.arch_hash(spec) and space.canonical(again) == canon
    except Exception as e:  # noqa: BLE001
        report.canonical_failures.append(f"{type(e).__name__}: {e} on {text!r}")
        return
    if not ok:
        report.canonical_failures.append(f"hash or canonical text changed: {text!r} -> {canon!r}")
    elif not accepts(canon):
        report.canonical_failures.append(f"xgrammar rejects the canonical text {canon!r} of {text!r}")


def run_differential(space: BaseSpace, n_samples: int = N_SAMPLES, n_mutants: int = N_MUTANTS,
                     seed: int = 0) -> DiffReport:
    ebnf = space.grammar()
    sampler, accepts = GrammarSampler(ebnf), XgrammarAcceptor(ebnf)
    rng, report = random.Random(seed), DiffReport(space.name, sampled=n_samples)
    samples = [sampler.sample(rng) for _ in range(n_samples)]
    report.sampled_distinct, vocab = len(set(samples)), _vocab(sampler, samples)
    for s in set(samples):
        p, x = _parser_accepts(space, s, report), accepts(s)
        if not (p and x):
            report.sample_failures.append(f"parser={p} xgrammar={x}: {s!r}")
        elif len(report.canonical_failures) < 50:
            _check_canonical(space, accepts, s, report)

    seen, sampled, tries = set(), set(samples), 0
    while report.mutants < n_mutants and tries < 50 * n_mutants:
        tries += 1
        mutation = rng.choice(MUTATIONS)
        mutant = mutation(rng.choice(samples), rng, vocab)
        if mutant in seen or mutant in sampled:
            continue
        seen.add(mutant)
        report.mutants += 1
        p, x = _parser_accepts(space, mutant, report), accepts(mutant)
        counts = report.by_mutation.setdefault(mutation.__name__, [0, 0])
        if p is None:
            continue
        if p != x:
            report.disagreements.append(f"parser={p} xgrammar={x} [{mutation.__name__[2:]}] {mutant!r}")
        elif p:
            report.both_accept, counts[0] = report.both_accept + 1, counts[0] + 1
            _check_canonical(space, accepts, mutant, report)
        else:
            report.both_reject, counts[1] = report.both_reject + 1, counts[1] + 1
    return report


@pytest.fixture(scope="module", params=list_spaces())
def report(request) -> DiffReport:
    pytest.importorskip("xgrammar")
    rep = run_differential(get_space(request.param))
    print("\n" + rep.summary())
    return rep


def test_samples_parse_and_are_accepted_by_xgrammar(report):
    assert not report.sample_failures, report.summary()
    assert report.sampled >= 1000


def test_canonical_text_round_trips_with_same_hash(report):
    assert not report.canonical_failures, report.summary()


def test_mutants_agree_between_parser_and_xgrammar(report):
    assert report.mutants >= 1000, report.summary()
    assert not report.crashes, report.summary()
    assert not report.disagreements, report.summary()
    assert report.both_reject > 0  # the mutations do reach outside the language


def test_space_sample_is_the_grammar_sampler():
    for name in list_spaces():
        space = get_space(name)
        sampler = GrammarSampler(space.grammar())
        expected = [sampler.sample(random.Random(k)) for k in range(5)]
        assert [space.sample(random.Random(k)) for k in range(5)] == expected


@pytest.mark.parametrize("name", list_spaces())
def test_a_lenient_parser_is_caught(name):
    """The check has teeth: a parser that forgives surrounding whitespace and letter case disagrees with xgrammar."""
    pytest.importorskip("xgrammar")
    space = get_space(name)
    lenient = copy.copy(space)
    lenient.parse = lambda text: space.parse(text.strip().lower())
    rep = run_differential(lenient, n_samples=200, n_mutants=500, seed=1)
    assert any("parser=True xgrammar=False" in d for d in rep.disagreements), rep.summary()
