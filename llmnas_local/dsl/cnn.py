"""The ``cnn`` space: a macro space of image classifiers written as timm-style block strings.

    stem_k3_s1_c32_nre ir_r2_k3_s2_e6_c24_se0.25_nsw ir_r2_k5_s2_e6_c40_se0.25_nsw head_c256_nsw

A stem, 1 to 6 stages and a head, separated by exactly one space. Unlike timm's lenient decoder, keys come in a fixed
order, every key is required, each key has one meaning, and errors name the position and what was expected. The
grammar ``grammars/cnn.ebnf`` defines the language; the value tables and block families of
:mod:`llmnas_local.dsl.cnn_blocks` mirror it (a test checks they agree).

Canonical form (:meth:`CnnSpace.canonicalize`):
  * stages are expanded into blocks and regrouped greedily, left to right: a block joins the current stage when it
    equals the stage's blocks in every key, has stride 1, and the stage has fewer than 4 blocks;
  * ``bt``: timm's ``BottleneckBlock`` builds ``mid = make_divisible(c * b, 8)`` channels, so ratios that round to the
    same ``mid`` are the same network (c8: b0.25 = b0.5 = b1.0; c16: b0.25 = b0.5). The largest such ratio is kept.
"""
from __future__ import annotations

import dataclasses
import math
import random

from llmnas_local.dsl.base import BaseSpace, Constraints, DslError, SemanticError, Slot
from llmnas_local.dsl.cnn_blocks import (ACT_NAMES, BLOCKS, FAMILIES, HEAD_FIELDS, MAX_REPEATS,  # noqa: F401 (API)
                                         MAX_STAGES, STEM_FIELDS, VALUES, CnnSpec, HeadSpec, StageSpec, StemSpec,
                                         _Field, _N, bt_mid_channels, groups_fit, make_divisible, make_stage)


def _longest(name: str, fields: tuple[_Field, ...]) -> int:
    return len(name) + sum(1 + max(map(len, f.choices)) for f in fields)


# Every string of the language has at most this many characters (219): a constrained decoder emits at least one
# character a token, so ``max_new_tokens > MAX_TEXT_LEN`` always lets even a weak model finish a valid string.
MAX_TEXT_LEN = (_longest("stem", STEM_FIELDS) + MAX_STAGES * (1 + max(_longest(b, fs) for b, fs in FAMILIES.items()))
                + 1 + _longest("head", HEAD_FIELDS))


# -- parser -------------------------------------------------------------------------------------------------------
class _Cursor:
    """A strict left-to-right reader: every step either consumes exactly what the grammar allows or raises DslError."""

    def __init__(self, text: str):
        self.text, self.pos = text, 0

    def choice(self, options: tuple[str, ...], expected: str) -> str:
        # Longest match is exact here: every option is followed by "_", " " or the end, none of which occurs in options.
        hits = [o for o in options if self.text.startswith(o, self.pos)]
        if not hits:
            raise DslError(self.text, self.pos, expected)
        hit = max(hits, key=len)
        self.pos += len(hit)
        return hit

    def literal(self, lit: str, expected: str) -> None:
        if not self.text.startswith(lit, self.pos):
            raise DslError(self.text, self.pos, expected)
        self.pos += len(lit)

    def fields(self, fields: tuple[_Field, ...]) -> dict[str, object]:
        out: dict[str, object] = {}
        for i, f in enumerate(fields):
            if i:
                self.literal("_", f"'_' before {f.prefix}")
            choices = f.choices
            hit = self.choice(choices, "one of " + ", ".join(choices))
            out[f.attr] = dict(VALUES[f.table])[hit[len(f.prefix):]]
        return out


def parse_cnn(text: str) -> CnnSpec:
    cur = _Cursor(text)
    cur.choice(("stem",), "stem (an architecture starts with its stem)")
    cur.literal("_", "'_' after stem")
    stem = StemSpec(**cur.fields(STEM_FIELDS))
    cur.literal(" ", "one space, then the first stage")
    stages: list[StageSpec] = []
    while True:
        if not stages:
            options, expected = tuple(FAMILIES), "one of " + ", ".join(FAMILIES) + " (at least one stage)"
        elif len(stages) < MAX_STAGES:
            options, expected = (*FAMILIES, "head"), "one of " + ", ".join((*FAMILIES, "head"))
        else:
            options, expected = ("head",), f"head (at most {MAX_STAGES} stages)"
        family = cur.choice(options, expected)
        cur.literal("_", f"'_' after {family}")
        if family == "head":
            head = HeadSpec(**cur.fields(HEAD_FIELDS))
            break
        stages.append(make_stage(family, **cur.fields(FAMILIES[family])))
        cur.literal(" ", "one space, then another stage or the head")
    if cur.pos != len(text):
        raise DslError(text, cur.pos, "end of input after the head")
    return CnnSpec(stem, tuple(stages), head)


def _section(name: str, fields: tuple[_Field, ...], spec: object) -> str:
    return "_".join([name, *(f.text(getattr(spec, f.attr)) for f in fields)])


def format_cnn(spec: CnnSpec) -> str:
    """The DSL text; ValueError for a spec outside the language (built by hand with values the grammar lacks)."""
    if not 1 <= len(spec.stages) <= MAX_STAGES:
        raise ValueError(f"{len(spec.stages)} stages: the language allows 1 to {MAX_STAGES}")
    parts = [_section("stem", STEM_FIELDS, spec.stem)]
    for st in spec.stages:
        if st.block not in FAMILIES:
            raise ValueError(f"unknown block family {st.block!r}; one of {', '.join(FAMILIES)}")
        absent = {f.name for f in dataclasses.fields(StageSpec)} - {"block"} - {f.attr for f in FAMILIES[st.block]}
        if any(getattr(st, a) is not None for a in absent):
            raise ValueError(f"{st.block} has no keys {sorted(a for a in absent if getattr(st, a) is not None)}")
        parts.append(_section(st.block, FAMILIES[st.block], st))
    parts.append(_section("head", HEAD_FIELDS, spec.head))
    return " ".join(parts)


# -- canonical form -----------------------------------------------------------------------------------------------
def _normalise_block(st: StageSpec) -> StageSpec:
    if st.block == "bt":
        mid = bt_mid_channels(st.channels, st.bottle_ratio)
        b = max(v for _, v in VALUES["b"] if bt_mid_channels(st.channels, v) == mid)
        st = dataclasses.replace(st, bottle_ratio=b)
    return st


def canonicalize_cnn(spec: CnnSpec) -> CnnSpec:
    blocks = [_normalise_block(dataclasses.replace(st, repeats=1, stride=st.stride if i == 0 else 1))
              for st in spec.stages for i in range(st.repeats)]
    stages: list[StageSpec] = []
    for b in blocks:
        last = stages[-1] if stages else None
        if (last is not None and b.stride == 1 and last.repeats < MAX_REPEATS
                and dataclasses.replace(b, repeats=last.repeats, stride=last.stride) == last):
            stages[-1] = dataclasses.replace(last, repeats=last.repeats + 1)
        else:
            stages.append(b)
    return CnnSpec(spec.stem, tuple(stages), spec.head)


# -- semantic check -----------------------------------------------------------------------------------------------
def check_cnn(spec: CnnSpec, constraints: Constraints) -> None:
    try:
        format_cnn(spec)
    except (ValueError, AttributeError, TypeError) as e:
        raise SemanticError(f"not in the cnn language: {e}") from None
    for name in ("num_classes", "in_chans", "input_size"):
        if getattr(constraints, name) < 1:
            raise SemanticError(f"{name}={getattr(constraints, name)} must be at least 1")
    strides = [st.stride for st in spec.stages]
    total = spec.stem.stride * math.prod(strides)
    if total > constraints.input_size:
        raise SemanticError(
            f"total stride {total} (stem {spec.stem.stride} x stages {'x'.join(map(str, strides))}) exceeds the input "
            f"resolution {constraints.input_size}: the final feature map would be smaller than 1x1")
    for i, st in enumerate(spec.stages, 1):
        if not groups_fit(st):
            mid = bt_mid_channels(st.channels, st.bottle_ratio)
            raise SemanticError(f"stage {i} (bt): {mid} mid channels (c{st.channels} x b{st.bottle_ratio}, "
                                f"rounded to a multiple of 8) cannot be split into g{st.groups} groups")


# -- mutation -----------------------------------------------------------------------------------------------------
def _values(field: _Field) -> list[object]:
    return [v for _, v in VALUES[field.table]]


def random_stage(rng: random.Random, block: str | None = None) -> StageSpec:
    """A stage with every key drawn uniformly from the language (family too, unless given)."""
    block = block or rng.choice(list(FAMILIES))
    return make_stage(block, **{f.attr: rng.choice(_values(f)) for f in FAMILIES[block]})


def _mutate_once(spec: CnnSpec, rng: random.Random) -> CnnSpec:
    moves: list[tuple] = [("stem", f) for f in STEM_FIELDS] + [("head", f) for f in HEAD_FIELDS]
    for i, st in enumerate(spec.stages):
        moves += [("stage", i, f) for f in FAMILIES[st.block]] + [("family", i)]
        if len(spec.stages) > 1:
            moves.append(("remove", i))
    if len(spec.stages) < MAX_STAGES:
        moves += [("add", i) for i in range(len(spec.stages) + 1)]
    move = rng.choice(moves)
    stages = list(spec.stages)
    kind = move[0]
    if kind in ("stem", "head"):
        part, f = getattr(spec, kind), move[1]
        new = rng.choice([v for v in _values(f) if v != getattr(part, f.attr)])
        return dataclasses.replace(spec, **{kind: dataclasses.replace(part, **{f.attr: new})})
    if kind == "stage":
        (_, i, f), st = move, stages[move[1]]
        stages[i] = dataclasses.replace(st, **{f.attr: rng.choice([v for v in _values(f) if v != getattr(st, f.attr)])})
    elif kind == "family":
        # the block key: keys both families have are kept, the new family's other keys are drawn at random
        st = stages[move[1]]
        block = rng.choice([b for b in FAMILIES if b != st.block])
        fresh = random_stage(rng, block)
        stages[move[1]] = make_stage(block, **{
            f.attr: getattr(st, f.attr) if getattr(st, f.attr) in _values(f) else getattr(fresh, f.attr)
            for f in FAMILIES[block]})
    elif kind == "remove":
        del stages[move[1]]
    else:
        stages.insert(move[1], random_stage(rng))
    return dataclasses.replace(spec, stages=tuple(stages))


def mutate_cnn(spec: CnnSpec, rng: random.Random, tries: int = 32) -> CnnSpec:
    """Change one element; retried (up to ``tries``) until the canonical form differs, then a stem activation change."""
    before = canonicalize_cnn(spec)
    for _ in range(tries):
        out = _mutate_once(spec, rng)
        if canonicalize_cnn(out) != before:
            return out
    act = rng.choice([v for v in _values(_N) if v != spec.stem.act])  # the stem is untouched by canonicalisation
    return dataclasses.replace(spec, stem=dataclasses.replace(spec.stem, act=act))


def slots_cnn(spec: CnnSpec) -> list[Slot]:
    """Every key of every section as a slot: ``stem.k``, ``s1.r`` .. ``s<i>.<key>`` (stage i, 1-based), ``head.c``;
    values as the key writes them (``s2.k`` = ``5``). The stage's family and the number of stages are not slots."""
    out: list[Slot] = []

    def add(name: str, label: str, part: object, fields: tuple[_Field, ...], rebuild) -> None:
        for f in fields:
            current = getattr(part, f.attr)
            options = tuple((text, rebuild(dataclasses.replace(part, **{f.attr: v})))
                            for text, v in VALUES[f.table] if v != current)
            out.append(Slot(f"{name}.{f.prefix}", f"{label} {f.attr}", f.text(current)[len(f.prefix):], options))

    add("stem", "stem", spec.stem, STEM_FIELDS, lambda p: dataclasses.replace(spec, stem=p))
    for i, st in enumerate(spec.stages):
        add(f"s{i + 1}", f"stage {i + 1} ({st.block})", st, FAMILIES[st.block],
            lambda p, i=i: dataclasses.replace(spec, stages=spec.stages[:i] + (p,) + spec.stages[i + 1:]))
    add("head", "head", spec.head, HEAD_FIELDS, lambda p: dataclasses.replace(spec, head=p))
    return out


# -- prompts ------------------------------------------------------------------------------------------------------
def _vals(table: str) -> str:
    return "|".join(text for text, _ in VALUES[table])


_FAMILY_LINES = "\n".join(f"  {b.form:<21}{b.doc}" for b in BLOCKS.values())
DESCRIPTION = f"""\
An architecture is one line: a stem, 1 to {MAX_STAGES} stages, and a head, separated by single spaces.
Each section is a family name and its keys joined by "_", keys always in the order shown, every key required:
  {"stem_k_s_c_n":<21}conv-bn-act
{_FAMILY_LINES}
  {"head_c_n":<21}1x1 conv-bn-act, global average pool, linear classifier
Keys:
  r blocks in the stage {_vals("r")}
  k kernel {_vals("k")} (cn and stem also 1)
  s stride of the stage's first block {_vals("s")} (the other blocks use 1)
  e expansion {_vals("e")} (mid channels = input channels x e)
  b bottleneck ratio {_vals("b")} (mid channels = c x b, rounded up to a multiple of 8)
  g groups of the bottleneck's kxk conv {_vals("g")}
  c output channels {_vals("c")}
  se squeeze-excite ratio {_vals("se")}
  n activation re (relu), r6 (relu6), sw (swish), hs (hard swish), mi (mish)
Residual connections are added where a block keeps its shape (rb and bt always have one).
The product of all strides must not exceed the input resolution."""

EXAMPLES = [
    "stem_k3_s1_c16_nre cn_r1_k3_s2_c32_nre cn_r1_k3_s2_c64_nre head_c128_nre",
    "stem_k3_s1_c32_nre rb_r2_k3_s1_c32_nre rb_r2_k3_s2_c64_nre rb_r2_k3_s2_c128_nre head_c256_nre",
    "stem_k3_s1_c32_nr6 ds_r1_k3_s1_c16_se0_nr6 ir_r2_k3_s2_e6_c24_se0_nr6 ir_r3_k3_s2_e6_c32_se0_nr6 "
    "ir_r2_k3_s2_e6_c64_se0_nr6 head_c256_nr6",
    "stem_k3_s1_c24_nsw er_r1_k3_s1_e1_c24_se0_nsw er_r2_k3_s2_e4_c32_se0_nsw ir_r2_k3_s2_e4_c64_se0.25_nsw "
    "ir_r2_k5_s2_e6_c96_se0.25_nsw head_c320_nsw",
    "stem_k3_s1_c32_nre bt_r2_k3_s1_b0.5_g4_c64_nre bt_r2_k3_s2_b0.5_g4_c128_nre bt_r2_k3_s2_b0.5_g8_c256_nre "
    "head_c256_nre",
]


class CnnSpace(BaseSpace):
    """Image classifiers from timm's blocks: a stem, 1 to 6 stages of one block family each, and a head."""

    name = "cnn"
    grammar_file = "cnn.ebnf"
    builder = "llmnas_local.builder.cnn:build_cnn"

    def parse(self, text: str) -> CnnSpec:
        return parse_cnn(text)

    def format(self, spec: CnnSpec) -> str:
        return format_cnn(spec)

    def canonicalize(self, spec: CnnSpec) -> CnnSpec:
        return canonicalize_cnn(spec)

    def check(self, spec: CnnSpec, constraints: Constraints) -> None:
        check_cnn(spec, constraints)

    def mutate(self, spec: CnnSpec, rng: random.Random) -> CnnSpec:
        return mutate_cnn(spec, rng)

    def slots(self, spec: CnnSpec) -> list[Slot]:
        return slots_cnn(spec)

    def prefix_guard(self, constraints: Constraints):
        from llmnas_local.dsl.cnn_cost import cnn_prefix_guard

        return cnn_prefix_guard(constraints)

    def describe(self, hints: bool = False) -> str:
        return DESCRIPTION     # the language only: the space has no hints

    def examples(self) -> list[str]:
        return list(EXAMPLES)
