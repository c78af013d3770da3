"""The nb201 space: language, parser errors, canonical form, checks, mutation, prompt material."""
from __future__ import annotations

import collections
import csv
import itertools
import random

import pytest

from llmnas_local.dsl.base import Constraints, DslError, SemanticError
from llmnas_local.dsl.nb201 import EDGES, NONE, OPS, Nb201Space, Nb201Spec, has_signal, network_signature

SPACE = Nb201Space()
ALL_CELLS = list(itertools.product(OPS, repeat=len(EDGES)))
RESNET = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


def canon(text: str) -> str:
    return SPACE.canonical(SPACE.parse(text))


# -- language -----------------------------------------------------------------------------------------------------
def test_round_trip_all_cells():
    texts = {SPACE.format(Nb201Spec(ops)) for ops in ALL_CELLS}
    assert len(texts) == 15625
    for ops in ALL_CELLS:
        assert SPACE.parse(SPACE.format(Nb201Spec(ops))).ops == ops


def test_format_is_the_benchmarks_string(nb201_csv):
    with open(nb201_csv, newline="") as f:
        for row in csv.DictReader(f):
            assert SPACE.format(SPACE.parse(row["arch_str"])) == row["arch_str"]


def test_edge_order():
    spec = SPACE.parse("|none~0|+|skip_connect~0|nor_conv_1x1~1|+|nor_conv_3x3~0|avg_pool_3x3~1|none~2|")
    assert spec.ops == (NONE, "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", NONE)
    assert EDGES == ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))


def test_grammar_compiles_and_registers():
    xgr = pytest.importorskip("xgrammar")
    assert SPACE.name == "nb201" and Nb201Spec.space == "nb201" and SPACE.grammar_file == "nb201.ebnf"
    xgr.Grammar.from_ebnf(SPACE.grammar())


@pytest.mark.parametrize("text, pos, expected", [
    ("", 0, "'|'"),
    (RESNET + "\n", len(RESNET), "end of input"),
    (" " + RESNET, 0, "'|'"),
    (RESNET[:-1], len(RESNET) - 1, "'|'"),
    (RESNET.replace("none~0", "zero~0"), 18, "the op of edge 2<-0, one of"),
    (RESNET.replace("|nor_conv_3x3~0|+", "|nor_conv_5x5~0|+"), 10, "nor_conv_1x1, nor_conv_3x3"),
    (RESNET.replace("|nor_conv_3x3~0|+", "|Nor_conv_3x3~0|+"), 1, "one of none, skip_connect"),
    (RESNET.replace("~0|+", "~1|+", 1), 14, "'0|+|'"),
    (RESNET.replace("|+|", "||", 1), 16, "'+|'"),
    ("|none~0|+|none~0|none~1|", 24, "'+|'"),
    (RESNET.replace("skip_connect~2", "skip_connect~3"), len(RESNET) - 2, "'2|'"),
])
def test_parse_errors_name_position_and_expectation(text, pos, expected):
    with pytest.raises(DslError) as info:
        SPACE.parse(text)
    err = info.value
    assert err.pos == pos and expected in err.expected and "\n" not in str(err)
    assert f"at position {pos}" in str(err)


def test_error_position_is_where_xgrammar_rejects():
    xgr = pytest.importorskip("xgrammar")
    accepts = xgr.testing._is_grammar_accept_string
    grammar = xgr.Grammar.from_ebnf(SPACE.grammar())
    rng = random.Random(0)
    for _ in range(12):
        text = list(SPACE.format(Nb201Spec(tuple(rng.choice(OPS) for _ in EDGES))))
        i = rng.randrange(len(text))
        text[i] = rng.choice("|+~0123_xnoe ")
        text = "".join(text)
        try:
            SPACE.parse(text)
            assert accepts(grammar, text)
        except DslError as err:
            assert not accepts(grammar, text)
            assert accepts(grammar, text[:err.pos], require_termination=False)
            assert err.pos == len(text) or not accepts(grammar, text[:err.pos + 1], require_termination=False)


def test_spec_validates():
    assert Nb201Spec(list(ALL_CELLS[7])).ops == ALL_CELLS[7]   # lists become tuples: specs stay hashable
    with pytest.raises(ValueError):
        Nb201Spec((NONE,) * 5)
    with pytest.raises(ValueError):
        Nb201Spec((NONE,) * 5 + ("conv",))


# -- canonical form -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("a, b", [
    # rule 2: node 2 never reaches node 3, so 2<-0 is dead
    ("|nor_conv_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|",
     "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|nor_conv_1x1~1|none~2|"),
    # rule 1: node 1 has no signal, so everything it feeds reads zeros
    ("|none~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|",
     "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"),
    # rule 4: 2<-1 is none, so nodes 1 and 2 swap
    ("|nor_conv_3x3~0|+|avg_pool_3x3~0|none~1|+|skip_connect~0|nor_conv_1x1~1|avg_pool_3x3~2|",
     "|avg_pool_3x3~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"),
    # rule 5: node 1 = x, so a conv reading node 1 is a conv reading node 0
    ("|skip_connect~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
     "|skip_connect~0|+|nor_conv_3x3~0|none~1|+|none~0|none~1|skip_connect~2|"),
    ("|skip_connect~0|+|nor_conv_1x1~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
     "|skip_connect~0|+|nor_conv_3x3~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"),
    # rule 6: pool(x) routed twice through node 1 equals two pools of x
    ("|avg_pool_3x3~0|+|none~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|",
     "|avg_pool_3x3~0|+|none~0|none~1|+|avg_pool_3x3~0|skip_connect~1|none~2|"),
])
def test_equivalent_cells_share_the_canonical_form(a, b):
    assert canon(a) == canon(b)
    assert SPACE.arch_hash(SPACE.parse(a)) == SPACE.arch_hash(SPACE.parse(b))


@pytest.mark.parametrize("a, b", [
    # one conv shared by two paths (c(x) + c'(c(x))) is not two independent convs (c''(x) + c'(c(x)))
    ("|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|none~0|skip_connect~1|skip_connect~2|",
     "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|nor_conv_3x3~0|none~1|skip_connect~2|"),
    # x and 2x are different outputs
    ("|skip_connect~0|+|none~0|none~1|+|none~0|skip_connect~1|none~2|",
     "|skip_connect~0|+|none~0|none~1|+|skip_connect~0|skip_connect~1|none~2|"),
    # the order of ops along a path matters
    ("|nor_conv_1x1~0|+|none~0|nor_conv_3x3~1|+|none~0|none~1|skip_connect~2|",
     "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|none~0|none~1|skip_connect~2|"),
    # 2<-1 is not none: nodes 1 and 2 are not symmetric (2c(x) + pool(x) against c(x) + 2 pool(x))
    ("|nor_conv_3x3~0|+|avg_pool_3x3~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|",
     "|avg_pool_3x3~0|+|nor_conv_3x3~0|skip_connect~1|+|none~0|skip_connect~1|skip_connect~2|"),
])
def test_different_networks_stay_apart(a, b):
    assert canon(a) != canon(b)


def test_canonical_examples():
    # x + c'(c(x)): the chain 0->1->2->3 is relabelled 0->2->3, the least labelling
    assert canon(RESNET) == "|none~0|+|nor_conv_3x3~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"
    zero = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    assert canon("|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|none~1|none~2|") == zero
    assert canon("|none~0|+|none~0|nor_conv_3x3~1|+|none~0|skip_connect~1|nor_conv_3x3~2|") == zero


def test_canonical_form_over_all_cells():
    classes = collections.defaultdict(list)
    for ops in ALL_CELLS:
        spec = Nb201Spec(ops)
        c = SPACE.canonicalize(spec)
        classes[c.ops].append(ops)
        assert SPACE.parse(SPACE.format(c)) == c                     # canonical text is in the language
        assert network_signature(c.ops) == network_signature(ops)    # and describes the same network
        if ops[2] == NONE:                                            # rule 4 on every cell it applies to
            assert SPACE.canonicalize(Nb201Spec((ops[1], ops[0], NONE, ops[3], ops[5], ops[4]))) == c
    for rep, members in classes.items():
        assert rep == min(members, key=lambda o: [OPS.index(x) for x in o])   # the least member, so idempotent
        signal, reach = has_signal(rep), _reaches_output(rep)
        assert all(op == NONE for (to, frm), op in zip(EDGES, rep) if not (signal[frm] and reach[to]))
    assert len(classes) == 5260    # benchmarks/nb201_collapse.py: NAS-Bench-201's to_unique_str gives 6,466
    assert len(classes[(NONE,) * 6]) == sum(not has_signal(ops)[3] for ops in ALL_CELLS)


def _reaches_output(ops):
    reach = [False, False, False, True]
    for (to, frm), op in reversed(list(zip(EDGES, ops))):
        if op != NONE and reach[to]:
            reach[frm] = True
    return reach


# -- meaning --------------------------------------------------------------------------------------------------------
def test_check():
    SPACE.check(SPACE.parse(RESNET), Constraints())
    SPACE.check(SPACE.parse(RESNET), Constraints(input_size=4, in_chans=1, num_classes=2))
    with pytest.raises(SemanticError, match="identically zero") as info:
        SPACE.check(SPACE.parse("|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|avg_pool_3x3~2|"), Constraints())
    assert "\n" not in str(info.value)
    with pytest.raises(SemanticError, match="multiple of 4"):
        SPACE.check(SPACE.parse(RESNET), Constraints(input_size=30))


def test_mutate_changes_exactly_one_edge():
    rng = random.Random(0)
    spec = SPACE.parse(RESNET)
    seen = set()
    for _ in range(500):
        child = SPACE.mutate(spec, rng)
        diff = [k for k in range(len(EDGES)) if child.ops[k] != spec.ops[k]]
        assert len(diff) == 1
        seen.add((diff[0], child.ops[diff[0]]))
        spec = child
    assert len(seen) == len(EDGES) * len(OPS)   # every edge takes every op
    a = [SPACE.mutate(SPACE.parse(RESNET), random.Random(3)) for _ in range(2)]
    assert a[0] == a[1]


def test_neighbour_grammar_is_exactly_the_one_edge_mutations():
    from llmnas_local.dsl.sampler import GrammarSampler

    spec = SPACE.parse(RESNET)
    sampler = GrammarSampler(SPACE.neighbour_grammar(spec))
    rng = random.Random(0)
    children = {sampler.sample(rng) for _ in range(2000)}
    expected = set()
    for k in range(len(EDGES)):
        for op in OPS:
            if op != spec.ops[k]:
                expected.add(SPACE.format(type(spec)(spec.ops[:k] + (op,) + spec.ops[k + 1:])))
    assert children == expected and len(expected) == len(EDGES) * (len(OPS) - 1)   # never the parent itself


def test_subset_grammar_is_exactly_the_allowed_cells():
    from llmnas_local.dsl.sampler import GrammarSampler

    cells = [Nb201Spec(ops) for ops in itertools.product(OPS, repeat=len(EDGES))]
    rng = random.Random(0)
    few = set(rng.sample(cells, 40))                      # a small language: sampling must find all of it
    sampler = GrammarSampler(SPACE.subset_grammar(few.__contains__))
    assert {SPACE.parse(sampler.sample(rng)) for _ in range(3000)} == few
    left_out = set(rng.sample(cells, 2000))               # a large one: nothing left out is ever drawn
    sampler = GrammarSampler(SPACE.subset_grammar(lambda spec: spec not in left_out))
    drawn = {SPACE.parse(sampler.sample(rng)) for _ in range(3000)}
    assert not drawn & left_out and {op for spec in drawn for op in spec.ops} == set(OPS)
    assert SPACE.subset_grammar(lambda spec: False) is None
    everything = SPACE.subset_grammar(lambda spec: True)
    assert everything.count("::=") == len(EDGES) + 1     # the root and one shared rule per edge: no trie at all


def test_prompt_material():
    text = SPACE.describe()
    assert all(op in text for op in OPS) and "|op~0|+|op~0|op~1|+|op~0|op~1|op~2|" in text
    assert "What tends to matter" not in text and "3x3 convolutions carry" not in text    # the language only
    assert SPACE.describe(hints=True).startswith(text) and "What tends to matter" in SPACE.describe(hints=True)
    examples = SPACE.examples()
    assert RESNET not in examples and 3 <= len(examples) <= 5
    for ex in examples:
        SPACE.check(SPACE.parse(ex), Constraints())
    assert len({canon(ex) for ex in examples}) == len(examples)


def test_prompt_examples_are_the_samplers_per_run():
    a, b = SPACE.prompt_examples(0), SPACE.prompt_examples(1)
    assert a == SPACE.prompt_examples(0) and a != b and len(a) == 4
    rng = random.Random("prompt-examples:0")
    assert a == [SPACE.sample(rng) for _ in range(4)]      # drawn, never chosen by accuracy


def test_examples_are_below_the_tables_median(nb201_csv):
    """No example is a hint: each is below the median validation accuracy of every preset of the shared table."""
    import statistics

    with open(nb201_csv, newline="") as f:
        rows = {r["arch_str"]: r for r in csv.DictReader(f)}
    for column in ("c10valid_val_acc_200ep", "c100_val_acc_200ep", "c10valid_val_acc_12ep", "c100_val_acc_12ep"):
        median = statistics.median(float(r[column]) for r in rows.values())
        for ex in SPACE.examples():
            assert float(rows[ex][column]) < median, (ex, column)


def test_slots_are_the_six_edges():
    spec = SPACE.parse(RESNET)
    slots = SPACE.slots(spec)
    assert [s.name for s in slots] == ["e1", "e2", "e3", "e4", "e5", "e6"]
    assert slots[3].label == "edge 3<-0" and slots[3].value == "skip_connect"
    for k, slot in enumerate(slots):
        assert [v for v, _ in slot.options] == [op for op in OPS if op != spec.ops[k]]
        for value, child in slot.options:
            assert child.ops[k] == value and child.ops[:k] + child.ops[k + 1:] == spec.ops[:k] + spec.ops[k + 1:]


def test_grammar_samples_parse():
    rng = random.Random(0)
    samples = [SPACE.sample(rng) for _ in range(300)]
    assert all(SPACE.parse(s) for s in samples)
    assert {op for s in samples for op in SPACE.parse(s).ops} == set(OPS)
