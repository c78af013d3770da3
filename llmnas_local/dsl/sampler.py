"""Random derivations of an EBNF grammar: the sampler behind :meth:`BaseSpace.sample`.

It reads the subset of xgrammar's EBNF dialect that our grammars use: rules ``name ::= expr`` (root rule ``root``),
``#`` comments, double-quoted literals with escapes, character classes (``[a-z0-9_]``, ``[^"\\]``), alternation ``|``,
sequences, groups ``( )``, and the repetitions ``?``, ``*``, ``+``, ``{m}``, ``{m,}``, ``{m,n}``. Anything else
(lookahead ``(= ...)``, single-quoted strings, built-in functions...) raises a ValueError that names the construct.

A derivation picks every alternative, every repetition count within its bounds (unbounded ones are capped at
``min + REPEAT_CAP``) and every character of a class uniformly. Past ``MAX_DEPTH`` nested rule expansions, or once
``MAX_PIECES`` pieces are out, it takes the shallowest alternatives and the fewest repetitions, so recursive grammars
terminate. The same ``random.Random`` state gives the same string.

:func:`sample_within` draws a space's strings within a task's caps: rejection against the space's cost model (its
prefix guard), so the distribution is the grammar's, conditioned on passing the structural checks and the caps.
"""
from __future__ import annotations

import functools
import random
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmnas_local.dsl.base import BaseSpace, Constraints

MAX_CAP_DRAWS = 2000  # draws sample_within tries before it gives up (returns the last one)
REPEAT_CAP = 3  # extra repetitions drawn for `*`, `+` and `{m,}`
MAX_DEPTH = 32  # nested rule expansions before the sampler steers to the shallowest alternative
MAX_PIECES = 1024  # emitted literals and characters before it does the same (stops explosive recursion)
PRINTABLE = [chr(c) for c in range(0x20, 0x7F)]  # the universe a negated class draws from

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'", "]": "]", "[": "[", "-": "-",
            "^": "^", "/": "/", "0": "\0"}
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")
_RULE_START = re.compile(r"([A-Za-z_][A-Za-z0-9_.-]*)\s*::=")
_SPACE = re.compile(r"(?:\s|#[^\n]*)*")
_BOUNDS = re.compile(r"\{\s*(\d+)\s*(?:(,)\s*(\d*)\s*)?\}")

# Expression nodes are tuples: ("lit", text) ("cls", its characters) ("ref", name)
# ("seq", [node, ...]) ("alt", [node, ...]) ("rep", node, min, max_or_None).


class _Parser:
    """Recursive descent over the grammar text; ``pos`` is an index into ``text``."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def error(self, what: str) -> ValueError:
        line = self.text.count("\n", 0, self.pos) + 1
        return ValueError(f"grammar line {line}: {what} (near {self.text[self.pos:self.pos + 20]!r})")

    def skip(self) -> None:
        self.pos = _SPACE.match(self.text, self.pos).end()

    def peek(self) -> str:
        self.skip()
        return self.text[self.pos:self.pos + 1]

    def rules(self) -> dict[str, tuple]:
        rules: dict[str, tuple] = {}
        while self.peek():
            m = _RULE_START.match(self.text, self.pos)
            if not m:
                raise self.error("expected a rule `name ::= ...`")
            if m.group(1) in rules:
                raise self.error(f"rule {m.group(1)!r} defined twice")
            self.pos = m.end()
            rules[m.group(1)] = self.alternation()
        return rules

    def alternation(self) -> tuple:
        alts = [self.sequence()]
        while self.peek() == "|":
            self.pos += 1
            alts.append(self.sequence())
        return alts[0] if len(alts) == 1 else ("alt", alts)

    def sequence(self) -> tuple:
        items = []
        while (c := self.peek()) and c not in "|)" and not _RULE_START.match(self.text, self.pos):
            items.append(self.repetition(self.atom()))
        if not items:
            raise self.error("empty alternative (write \"\" for the empty string)")
        return items[0] if len(items) == 1 else ("seq", items)

    def repetition(self, node: tuple) -> tuple:
        while True:
            c = self.text[self.pos:self.pos + 1]  # a suffix must follow its atom directly
            if c in ("?", "*", "+"):
                node = ("rep", node, 0 if c != "+" else 1, 1 if c == "?" else None)
                self.pos += 1
            elif c == "{":
                m = _BOUNDS.match(self.text, self.pos)
                if not m:
                    raise self.error("malformed repetition bounds, expected {m}, {m,} or {m,n}")
                lo = int(m.group(1))
                hi = lo if not m.group(2) else (int(m.group(3)) if m.group(3) else None)
                if hi is not None and hi < lo:
                    raise self.error(f"repetition bounds {{{lo},{hi}}} with max < min")
                node, self.pos = ("rep", node, lo, hi), m.end()
            else:
                return node

    def atom(self) -> tuple:
        c = self.peek()
        if c == '"':
            return ("lit", self.literal())
        if c == "[":
            return self.char_class()
        if c == "(":
            if self.text.startswith("(=", self.pos):
                raise self.error("unsupported construct: lookahead assertion `(= ...)`")
            self.pos += 1
            node = self.alternation()
            if self.peek() != ")":
                raise self.error("expected `)` to close the group")
            self.pos += 1
            return node
        m = _NAME.match(self.text, self.pos)
        if m:
            if self.text.startswith("(", m.end()):
                raise self.error(f"unsupported construct: built-in function call `{m.group()}(...)`")
            self.pos = m.end()
            return ("ref", m.group())
        if c == "'":
            raise self.error("unsupported construct: single-quoted string (use double quotes)")
        raise self.error(f"unsupported construct: unexpected character {c!r}")

    def char(self, closing: str) -> str:
        """One possibly escaped character inside a literal or class; ``pos`` is on it."""
        c = self.text[self.pos:self.pos + 1]
        if not c or c == "\n":
            raise self.error("unterminated " + ("string" if closing == '"' else "character class"))
        if c != "\\":
            self.pos += 1
            return c
        e = self.text[self.pos + 1:self.pos + 2]
        if e in _ESCAPES:
            self.pos += 2
            return _ESCAPES[e]
        width = {"x": 2, "u": 4, "U": 8}.get(e)
        digits = self.text[self.pos + 2:self.pos + 2 + (width or 0)]
        if width and re.fullmatch(r"[0-9A-Fa-f]+", digits) and len(digits) == width:
            self.pos += 2 + width
            return chr(int(digits, 16))
        raise self.error(f"unsupported construct: escape sequence \\{e}")

    def literal(self) -> str:
        self.pos += 1
        out = []
        while self.text[self.pos:self.pos + 1] != '"':
            out.append(self.char('"'))
        self.pos += 1
        return "".join(out)

    def char_class(self) -> tuple:
        self.pos += 1
        negated = self.text.startswith("^", self.pos)
        self.pos += negated
        ranges = []
        while self.text[self.pos:self.pos + 1] != "]":
            lo = hi = self.char("]")
            if self.text[self.pos:self.pos + 1] == "-" and self.text[self.pos + 1:self.pos + 2] != "]":
                self.pos += 1
                hi = self.char("]")
                if hi < lo:
                    raise self.error(f"character range {lo!r}-{hi!r} is reversed")
            ranges.append((lo, hi))
        self.pos += 1
        if not ranges:
            raise self.error("empty character class `[]`")
        if negated:
            chars = [c for c in PRINTABLE if not any(lo <= c <= hi for lo, hi in ranges)]
        else:
            chars = [chr(i) for lo, hi in ranges for i in range(ord(lo), ord(hi) + 1)]
        if not chars:
            raise self.error("negated character class excludes every printable character")
        return ("cls", "".join(dict.fromkeys(chars)))


class GrammarSampler:
    """Parses ``ebnf_text`` once; :meth:`sample` draws random strings of its language."""

    def __init__(self, ebnf_text: str, root: str = "root"):
        self.rules = _parse(ebnf_text)
        if root not in self.rules:
            raise ValueError(f"grammar has no root rule {root!r}")
        self.root = root
        for name, node in self.rules.items():
            for ref in _refs(node):
                if ref not in self.rules:
                    raise ValueError(f"rule {name!r} refers to undefined rule {ref!r}")
        self._height = self._heights()
        if self._height[root] is None:
            raise ValueError(f"rule {root!r} derives no finite string")

    def alphabet(self) -> set[str]:
        """Every character a derivation can produce (for negated classes: printable ASCII minus the excluded)."""
        chars: set[str] = set()
        for node in self.rules.values():
            for n in _walk(node):
                if n[0] in ("lit", "cls"):
                    chars.update(n[1])
        return chars

    def sample(self, rng: random.Random) -> str:
        out: list[str] = []
        self._emit(("ref", self.root), rng, 0, out)
        return "".join(out)

    def _emit(self, node: tuple, rng: random.Random, depth: int, out: list[str]) -> None:
        kind = node[0]
        steer = depth > MAX_DEPTH or len(out) > MAX_PIECES  # finish the derivation as fast as possible
        if kind == "lit":
            out.append(node[1])
        elif kind == "cls":
            out.append(rng.choice(node[1]))
        elif kind == "ref":
            self._emit(self.rules[node[1]], rng, depth + 1, out)
        elif kind == "seq":
            for item in node[1]:
                self._emit(item, rng, depth, out)
        elif kind == "alt":
            alts = node[1]
            if steer:  # the shallowest finite alternative
                alts = [min((a for a in alts if self._h(a) is not None), key=self._h)]
            self._emit(rng.choice(alts), rng, depth, out)
        else:  # rep
            _, item, lo, hi = node
            count = lo if steer else rng.randint(lo, lo + REPEAT_CAP if hi is None else hi)
            for _ in range(count):
                self._emit(item, rng, depth, out)

    def _heights(self) -> dict[str, int | None]:
        """Least derivation height of every rule (None: no finite derivation), by fixed-point iteration."""
        self._height = dict.fromkeys(self.rules)
        changed = True
        while changed:
            changed = False
            for name, node in self.rules.items():
                h = self._h(node)
                if h is not None and (self._height[name] is None or h < self._height[name]):
                    self._height[name], changed = h, True
        return self._height

    def _h(self, node: tuple) -> int | None:
        kind = node[0]
        if kind in ("lit", "cls"):
            return 0
        if kind == "ref":
            h = self._height[node[1]]
            return None if h is None else h + 1
        if kind == "rep":
            return 0 if node[2] == 0 else self._h(node[1])
        hs = [self._h(n) for n in node[1]]
        if kind == "seq":
            return None if None in hs else max(hs)
        finite = [h for h in hs if h is not None]
        return min(finite) if finite else None


@functools.lru_cache(maxsize=16)  # BaseSpace.sample builds a sampler per call; the rules are never mutated
def _parse(ebnf_text: str) -> dict[str, tuple]:
    return _Parser(ebnf_text).rules()


def _walk(node: tuple):
    yield node
    if node[0] in ("seq", "alt"):
        for n in node[1]:
            yield from _walk(n)
    elif node[0] == "rep":
        yield from _walk(node[1])


def _refs(node: tuple) -> set[str]:
    return {n[1] for n in _walk(node) if n[0] == "ref"}


def sample_within(space: "BaseSpace", constraints: "Constraints", rng: random.Random,
                  max_draws: int = MAX_CAP_DRAWS) -> str:
    """A string of ``space`` drawn as :meth:`BaseSpace.sample` draws, redrawn until the space's prefix guard
    (:meth:`BaseSpace.prefix_guard`: its cost model, no torch) says it passes the structural checks and
    ``constraints``' caps. The result is a draw of the grammar's distribution conditioned on fitting the task, and the
    same ``rng`` state gives the same string. A space with no guard (nb201) gets the plain draw, so its random
    search and evolution draw what they drew before. After ``max_draws`` draws (caps almost nothing fits) the last
    draw is returned: the search then rejects it with the reason.

    Measured on cnn, 32 px, 10 classes (benchmarks/bench_sample_caps.py): with caps of 1 M parameters and 25 M FLOPs
    about 6% of draws fit, so a fitting string costs about 16 draws, a few milliseconds."""
    guard = space.prefix_guard(constraints)
    text = space.sample(rng)
    if guard is None:
        return text
    for _ in range(max_draws - 1):
        if guard(text):
            break
        text = space.sample(rng)
    return text
