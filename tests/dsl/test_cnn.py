"""The cnn space's language: grammar, strict parser, canonical form, semantic checks, mutation, prompt text."""
from __future__ import annotations

import dataclasses
import functools
import random
import re

import pytest

from llmnas_local.dsl.base import Constraints, DslError, SemanticError
from llmnas_local.dsl.cnn import (FAMILIES, HEAD_FIELDS, MAX_STAGES, MAX_TEXT_LEN, STEM_FIELDS, VALUES, CnnSpace,
                                  CnnSpec, HeadSpec, StemSpec, bt_mid_channels, make_stage, random_stage)

SPACE = CnnSpace()
C32 = Constraints(num_classes=10, in_chans=3, input_size=32)
STEM, HEAD = "stem_k3_s1_c16_nre", "head_c64_nre"


def random_spec(rng: random.Random, widths: tuple[int, ...] | None = None) -> CnnSpec:
    """A spec with every key drawn uniformly from the language (channels from ``widths`` if given)."""
    widths = widths or tuple(v for _, v in VALUES["c"])
    stages = []
    for _ in range(rng.randint(1, MAX_STAGES)):
        st = random_stage(rng)
        stages.append(dataclasses.replace(st, channels=rng.choice(widths)))
    acts = [v for _, v in VALUES["n"]]
    stem = StemSpec(rng.choice([1, 3, 5, 7]), rng.choice([1, 2]), rng.choice(widths), rng.choice(acts))
    head = HeadSpec(rng.choice(widths), rng.choice(acts))
    return CnnSpec(stem, tuple(stages), head)


@functools.lru_cache(maxsize=1)
def _xgr_grammar():
    return pytest.importorskip("xgrammar").Grammar.from_ebnf(SPACE.grammar())


def xgr_accepts(text: str) -> bool:
    from xgrammar.testing import _is_grammar_accept_string

    return _is_grammar_accept_string(_xgr_grammar(), text)


# -- grammar ------------------------------------------------------------------------------------------------------
def test_grammar_compiles_with_xgrammar_and_is_bounded():
    xgr = pytest.importorskip("xgrammar")
    text = SPACE.grammar()
    xgr.Grammar.from_ebnf(text)
    rules = [ln for ln in text.splitlines() if "::=" in ln]
    bodies = [ln.split("::=", 1)[1] for ln in rules]
    assert not any(re.search(r"[*+?]", re.sub(r'"[^"]*"', "", b)) for b in bodies), "unbounded repetition"


def test_grammar_value_lists_match_the_parser_tables():
    rules = dict(re.match(r"(\w+) ::= (.*)", ln).groups() for ln in SPACE.grammar().splitlines() if "::=" in ln)
    names = {"r": "repeats", "k": "kernel", "k1": "kernel1", "s": "stride", "e": "expansion", "b": "bottle",
             "g": "groups", "c": "channels", "se": "se", "n": "act"}
    for table, rule in names.items():
        prefix = table.rstrip("1")
        assert rules[rule].startswith(f'"{prefix}" (')
        assert re.findall(r'"([^"]*)"', rules[rule])[1:] == [t for t, _ in VALUES[table]], rule
    for family, fields in [("stem", STEM_FIELDS), ("head", HEAD_FIELDS), *FAMILIES.items()]:
        expected = f'"{family}_" ' + ' "_" '.join(names[f.table] for f in fields)
        assert rules[family] == expected, family


def test_examples_are_canonical_valid_and_accepted_by_xgrammar():
    assert 3 <= len(SPACE.examples()) <= 5
    for text in SPACE.examples():
        spec = SPACE.parse(text)
        assert SPACE.canonical(spec) == text
        SPACE.check(spec, C32)
        assert xgr_accepts(text)


def test_random_specs_round_trip_and_are_in_the_grammar():
    rng = random.Random(0)
    for _ in range(300):
        spec = random_spec(rng)
        text = SPACE.format(spec)
        assert SPACE.parse(text) == spec
        assert xgr_accepts(text), text


def test_longest_string_is_max_text_len():
    longest = " ".join(["stem_k7_s2_c512_nr6", *["ir_r4_k7_s2_e6_c512_se0.25_nr6"] * MAX_STAGES, "head_c512_nr6"])
    assert len(longest) == MAX_TEXT_LEN == 219 and xgr_accepts(longest)
    SPACE.parse(longest)


# -- strict parsing -----------------------------------------------------------------------------------------------
IR = "ir_r2_k3_s2_e6_c24_se0.25_nsw"


@pytest.mark.parametrize("text, pos, expected", [
    ("", 0, "stem"),
    (" " + f"{STEM} {IR} {HEAD}", 0, "stem"),
    (f"{STEM}  {IR} {HEAD}", len(STEM) + 1, "one of cn, ds"),              # two spaces
    (f"{STEM} {IR} {HEAD} ", len(f"{STEM} {IR} {HEAD}"), "end of input"),  # trailing space
    (f"{STEM} {IR} {HEAD}\n", len(f"{STEM} {IR} {HEAD}"), "end of input"),
    (f"{STEM} {HEAD}", len(STEM) + 1, "at least one stage"),
    (f"{STEM} {IR}", len(f"{STEM} {IR}"), "another stage or the head"),
    (f"{STEM} ir_r2_s2_k3_e6_c24_se0.25_nsw {HEAD}", len(STEM) + 7, "one of k3, k5, k7"),  # keys out of order
    (f"{STEM} ir_r2_k1_s2_e6_c24_se0.25_nsw {HEAD}", len(STEM) + 7, "one of k3, k5, k7"),  # k1 only for cn/stem
    (f"{STEM} ir_r5_k3_s2_e6_c24_se0.25_nsw {HEAD}", len(STEM) + 4, "one of r1, r2, r3, r4"),
    (f"{STEM} ir_r2_k3_s2_e6_c25_se0.25_nsw {HEAD}", len(STEM) + 16, "one of c8, c16"),
    (f"{STEM} ir_r2_k3_s2_e6_c240_se0.25_nsw {HEAD}", len(STEM) + 19, "'_' before se"),
    (f"{STEM} ir_r2_k3_s2_e6_c24_se0.5_nsw {HEAD}", len(STEM) + 23, "'_' before n"),
    (f"{STEM} ir_r2_k3_s2_e6_c24_nsw {HEAD}", len(STEM) + 20, "one of se0, se0.25"),       # missing key
    (f"{STEM} IR_r2_k3_s2_e6_c24_se0.25_nsw {HEAD}", len(STEM) + 1, "one of cn, ds"),
    (f"{STEM} ds_r1_k3_s1_e6_c24_se0_nre {HEAD}", len(STEM) + 13, "one of c8"),              # ds has no e
    (f"{STEM} bt_r1_k3_s1_b0.75_g1_c24_nre {HEAD}", len(STEM) + 13, "one of b0.25, b0.5, b1.0"),
    (f"{STEM} bt_r1_k3_s1_b0.5_g3_c24_nre {HEAD}", len(STEM) + 18, "one of g1, g2, g4, g8"),
    (f"{STEM} cn_r1_k3_s1_c24_nxx {HEAD}", len(STEM) + 17, "one of nre, nr6, nsw, nhs, nmi"),
    (f"{STEM} " + " ".join([IR] * 7) + f" {HEAD}", len(STEM) + 1 + 6 * (len(IR) + 1), "at most 6 stages"),
    (f"stem_k3_s1_c16 {IR} {HEAD}", 14, "'_' before n"),
    (f"{STEM} {IR} head_c64", len(f"{STEM} {IR} head_c64"), "'_' before n"),
])
def test_parse_errors_name_position_and_expectation(text, pos, expected):
    with pytest.raises(DslError) as err:
        SPACE.parse(text)
    assert err.value.pos == pos, str(err.value)
    assert expected in err.value.expected, str(err.value)
    assert "\n" not in str(err.value) and f"at position {pos}" in str(err.value)
    assert not xgr_accepts(text)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_every_family_round_trips(family):
    st = make_stage(family, **{f.attr: VALUES[f.table][-1][1] for f in FAMILIES[family]})   # last value of every key
    spec = CnnSpec(StemSpec(3, 1, 16, "re"), (st,), HeadSpec(64, "re"))
    text = SPACE.format(spec)
    assert text.split()[1].startswith(family + "_r4_k7_s2_")
    assert SPACE.parse(text) == spec and xgr_accepts(text)


def test_spec_fields_and_space_name():
    spec = SPACE.parse(f"{STEM} bt_r1_k3_s1_b0.5_g4_c64_nre {IR} {HEAD}")
    bt, ir = spec.stages
    assert (bt.bottle_ratio, bt.groups, bt.expansion, bt.se_ratio) == (0.5, 4, None, None)
    assert (ir.expansion, ir.se_ratio, ir.bottle_ratio, ir.groups) == (6, 0.25, None, None)
    assert CnnSpec.space == "cnn" == SPACE.name
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.head.channels = 8  # type: ignore[misc]


# -- canonical form -----------------------------------------------------------------------------------------------
def canon(*stages: str) -> str:
    return SPACE.canonical(SPACE.parse(" ".join([STEM, *stages, HEAD])))


@pytest.mark.parametrize("a, b", [
    (["ir_r1_k3_s2_e6_c24_se0_nre", "ir_r1_k3_s1_e6_c24_se0_nre"], ["ir_r2_k3_s2_e6_c24_se0_nre"]),
    (["ir_r2_k3_s2_e6_c24_se0_nre", "ir_r3_k3_s1_e6_c24_se0_nre"],
     ["ir_r3_k3_s2_e6_c24_se0_nre", "ir_r2_k3_s1_e6_c24_se0_nre"]),          # 5 blocks: r4 + r1 either way
    (["rb_r1_k3_s1_c32_nre"] * 4, ["rb_r4_k3_s1_c32_nre"]),
    (["bt_r1_k3_s1_b0.25_g2_c16_nre"], ["bt_r1_k3_s1_b0.5_g2_c16_nre"]),     # timm rounds mid to 8 for both
    (["bt_r1_k3_s1_b0.25_g1_c8_nre"], ["bt_r1_k3_s1_b1.0_g1_c8_nre"]),
    (["bt_r1_k3_s1_b0.25_g1_c16_nre", "bt_r1_k3_s1_b0.5_g1_c16_nre"], ["bt_r2_k3_s1_b0.5_g1_c16_nre"]),
])
def test_same_network_same_canonical_form(a, b):
    assert canon(*a) == canon(*b)
    assert SPACE.arch_hash(SPACE.parse(" ".join([STEM, *a, HEAD]))) == SPACE.arch_hash(
        SPACE.parse(" ".join([STEM, *b, HEAD])))


@pytest.mark.parametrize("a, b", [
    (["ir_r1_k3_s2_e6_c24_se0_nre", "ir_r1_k3_s2_e6_c24_se0_nre"], ["ir_r2_k3_s2_e6_c24_se0_nre"]),  # stride
    (["ir_r1_k3_s1_e6_c24_se0_nre", "ir_r1_k3_s1_e6_c24_se0.25_nre"], ["ir_r2_k3_s1_e6_c24_se0_nre"]),
    (["bt_r1_k3_s1_b0.25_g1_c24_nre"], ["bt_r1_k3_s1_b0.5_g1_c24_nre"]),    # mid 8 vs 16
    (["ir_r1_k3_s1_e1_c24_se0_nre"], ["ds_r1_k3_s1_c24_se0_nre"]),           # ir keeps its 1x1 expansion conv
])
def test_different_networks_different_canonical_form(a, b):
    assert canon(*a) != canon(*b)


def test_canonical_is_idempotent_parses_and_never_adds_stages():
    rng = random.Random(1)
    for _ in range(500):
        spec = random_spec(rng)
        c = SPACE.canonicalize(spec)
        assert SPACE.parse(SPACE.format(c)) == c == SPACE.canonicalize(c)
        assert 1 <= len(c.stages) <= len(spec.stages)
        blocks = lambda s: sum(st.repeats for st in s.stages)  # noqa: E731
        assert blocks(c) == blocks(spec)


def test_bt_mid_channels_mirrors_timm():
    make_divisible = pytest.importorskip("timm.layers").make_divisible
    for _, c in VALUES["c"]:
        for _, b in VALUES["b"]:
            assert bt_mid_channels(c, b) == make_divisible(c * b), (c, b)


# -- semantic checks ----------------------------------------------------------------------------------------------
def test_total_stride_beyond_resolution_is_rejected_with_numbers():
    spec = SPACE.parse("stem_k3_s2_c16_nre " + " ".join(["rb_r1_k3_s2_c16_nre"] * 3) + " " + HEAD)
    SPACE.check(spec, Constraints(input_size=16))     # 16 / 16 = 1x1
    match = r"total stride 16 \(stem 2 x stages 2x2x2\) exceeds the input resolution 8"
    with pytest.raises(SemanticError, match=match):
        SPACE.check(spec, Constraints(input_size=8))


def test_bt_groups_always_fit_timms_rounded_mid_channels():
    for _, c in VALUES["c"]:
        for _, b in VALUES["b"]:
            for _, g in VALUES["g"]:
                SPACE.check(CnnSpec(StemSpec(3, 1, 16, "re"), (make_stage(
                    "bt", repeats=1, kernel=3, stride=1, bottle_ratio=b, groups=g, channels=c, act="re"),),
                    HeadSpec(16, "re")), C32)


@pytest.mark.parametrize("spec, match", [
    (CnnSpec(StemSpec(3, 1, 16, "re"), (), HeadSpec(16, "re")), "0 stages"),
    (CnnSpec(StemSpec(9, 1, 16, "re"), (make_stage("rb", repeats=1, kernel=3, stride=1, channels=16, act="re"),),
             HeadSpec(16, "re")), "kernel=9"),
    (CnnSpec(StemSpec(3, 1, 16, "re"), (dataclasses.replace(make_stage(
        "rb", repeats=1, kernel=3, stride=1, channels=16, act="re"), expansion=4),), HeadSpec(16, "re")), "no keys"),
])
def test_specs_outside_the_language_are_rejected_by_check(spec, match):
    with pytest.raises(SemanticError, match=match):
        SPACE.check(spec, C32)


def test_bad_constraints_are_rejected():
    with pytest.raises(SemanticError, match="in_chans=0"):
        SPACE.check(SPACE.parse(SPACE.examples()[0]), Constraints(in_chans=0))


# -- mutation -----------------------------------------------------------------------------------------------------
def test_mutations_stay_in_the_language_and_change_the_network():
    rng = random.Random(2)
    for _ in range(400):
        spec = random_spec(rng)
        child = SPACE.mutate(spec, rng)
        assert SPACE.parse(SPACE.format(child)) == child
        assert SPACE.canonicalize(child) != SPACE.canonicalize(spec)
        assert abs(len(child.stages) - len(spec.stages)) <= 1
        if len(child.stages) == len(spec.stages):   # one key of one section changed (or one stage's family)
            sections = zip((spec.stem, *spec.stages, spec.head), (child.stem, *child.stages, child.head))
            diff = [(a, b) for a, b in sections if a != b]
            assert len(diff) == 1
            a, b = diff[0]
            if getattr(a, "block", None) == getattr(b, "block", None):
                assert sum(getattr(a, f.name) != getattr(b, f.name) for f in dataclasses.fields(a)) == 1


def test_mutation_is_deterministic_under_a_seeded_rng():
    spec = SPACE.parse(SPACE.examples()[2])
    assert SPACE.mutate(spec, random.Random(7)) == SPACE.mutate(spec, random.Random(7))


# -- prompts ------------------------------------------------------------------------------------------------------
def test_description_names_every_family_and_value():
    text = SPACE.describe()
    for family in (*FAMILIES, "stem", "head"):
        assert f"{family}_" in text
    for table in ("r", "k", "s", "e", "b", "g", "c", "se"):
        assert "|".join(t for t, _ in VALUES[table]) in text
    for code in dict(VALUES["n"]):
        assert code in text
