"""The ``nb201`` space: NAS-Bench-201 cells, written exactly as the benchmark writes them.

A cell is a DAG on nodes 0..3 (0 is the cell input, 3 its output); every pair i < j carries one edge op, and node j is
the sum over i < j of op(node i). The text lists the six edges node by node, each as ``op~i`` (the edge from node i)::

    |op~0|+|op~0|op~1|+|op~0|op~1|op~2|      edges 1<-0 | 2<-0 2<-1 | 3<-0 3<-1 3<-2

with op one of ``none``, ``skip_connect``, ``nor_conv_1x1``, ``nor_conv_3x3``, ``avg_pool_3x3``: 5**6 = 15,625 cells,
one row each in the benchmark's table. The network around the cell is fixed (:mod:`llmnas_local.builder.nb201`).
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import random
import typing

from llmnas_local.dsl.base import BaseSpace, Constraints, DslError, SemanticError, Slot

NONE, SKIP, CONV1, CONV3, POOL = "none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3"
OPS: tuple[str, ...] = (NONE, SKIP, CONV1, CONV3, POOL)   # this order is the canonical order of ops (none smallest)
EDGES: tuple[tuple[int, int], ...] = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))   # (to, from), in text order
_PARAM_FREE = frozenset({POOL})   # pure functions of their input: two of them on equal inputs are equal
_RANK = {op: r for r, op in enumerate(OPS)}


@dataclasses.dataclass(frozen=True)
class Nb201Spec:
    """One cell: ``ops[k]`` is the op of edge ``EDGES[k]``, in the text's order (1<-0, 2<-0, 2<-1, 3<-0, 3<-1, 3<-2)."""

    space: typing.ClassVar[str] = "nb201"
    ops: tuple[str, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "ops", tuple(self.ops))
        if len(self.ops) != len(EDGES) or any(op not in _RANK for op in self.ops):
            raise ValueError(f"an nb201 cell has {len(EDGES)} ops from {', '.join(OPS)}; got {self.ops!r}")


# The language as a sequence of literals and op slots (None = the op of the next edge). Mirrors nb201.ebnf exactly.
_TEMPLATE: tuple[str | None, ...] = (
    "|", None, "~0|+|", None, "~0|", None, "~1|+|", None, "~0|", None, "~1|", None, "~2|")


def parse_nb201(text: str) -> Nb201Spec:
    """Parse a cell string. Accepts exactly the language of ``nb201.ebnf``; no whitespace, no case folding.

    On failure the :class:`DslError` position is the length of the longest prefix of ``text`` that some cell string
    starts with, i.e. the first character a grammar matcher would reject.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    pos, ops = 0, []
    for piece in _TEMPLATE:
        if piece is None:
            to, frm = EDGES[len(ops)]
            op = next((o for o in OPS if text.startswith(o, pos)), None)
            if op is None:   # no op is a prefix of another, so the first op that matches is the only one
                common = {o: _common_prefix(text, pos, o) for o in OPS}
                k = max(common.values())
                viable = [o for o in OPS if common[o] == k]
                raise DslError(text, pos + k, f"the op of edge {to}<-{frm}, one of {', '.join(viable)}")
            ops.append(op)
            pos += len(op)
        else:
            k = _common_prefix(text, pos, piece)
            if k < len(piece):
                raise DslError(text, pos + k, repr(piece[k:]))
            pos += len(piece)
    if pos != len(text):
        raise DslError(text, pos, "end of input")
    return Nb201Spec(tuple(ops))


def format_nb201(spec: Nb201Spec) -> str:
    """The benchmark's string for a cell."""
    ops = iter(spec.ops)
    return "".join(next(ops) if piece is None else piece for piece in _TEMPLATE)


def _subset_grammar(cells: typing.Sequence[tuple[str, ...]]) -> str | None:
    """EBNF of exactly ``cells`` (op tuples in :func:`itertools.product` order), None if empty: a trie over the edges
    whose equal subtrees share one rule, and whose full subtrees are ``any<k>`` (every op from edge k on)."""
    if not cells:
        return None
    after = [piece for piece in _TEMPLATE[1:] if piece is not None]   # the literal that follows each edge's op
    last = len(EDGES) - 1
    rules: dict[str, str] = {}                                        # rule body -> rule name

    def node(group: typing.Sequence[tuple[str, ...]], k: int) -> str:
        """The rule for the cells of ``group``, which share their first k ops, from edge k on."""
        if len(group) == len(OPS) ** (last + 1 - k):
            return f"any{k}"
        body = " | ".join(f'"{op}{after[k]}"' + ("" if k == last else " " + node(list(members), k + 1))
                          for op, members in itertools.groupby(group, key=lambda ops: ops[k]))
        return rules.setdefault(body, f"n{len(rules)}")

    root = node(cells, 0)
    used = [k for k in range(last + 1) if f"any{k}" == root or any(f" any{k}" in body for body in rules)]
    full = [f"any{k} ::= (" + " | ".join(f'"{op}{after[k]}"' for op in OPS) + ")" + ("" if k == last else f" any{k + 1}")
            for k in range(min(used, default=last + 1), last + 1)]
    return "\n".join([f'root ::= "{_TEMPLATE[0]}" {root}', *(f"{name} ::= {body}" for body, name in rules.items()),
                      *full]) + "\n"


def _common_prefix(text: str, pos: int, word: str) -> int:
    k = 0
    while k < len(word) and pos + k < len(text) and text[pos + k] == word[k]:
        k += 1
    return k


# -- meaning of a cell ------------------------------------------------------------------------------------------------
def has_signal(ops: typing.Sequence[str]) -> list[bool]:
    """For each node, whether it depends on the cell input: a path from node 0 through non-``none`` edges."""
    signal = [True, False, False, False]
    for (to, frm), op in zip(EDGES, ops):
        if op != NONE and signal[frm]:
            signal[to] = True
    return signal


def network_signature(ops: typing.Sequence[str], *, strict_zero: bool = False) -> str:
    """A text that cells computing the same parametric function share (rules in :meth:`Nb201Space.canonicalize`).

    Node values are multisets of atoms: the cell input ``x`` or one op instance (one edge carrying a conv or a pool).
    ``none`` and any op applied to a signal-less node contribute nothing; ``skip_connect`` passes its node's atoms on.
    Only atoms reachable from node 3 are written, so dead edges vanish. An op instance is written as
    ``op(sum of its input atoms)``, with sums sorted, so node labels vanish. A conv instance used more than once
    (shared weights, e.g. node 1 read by both node 2 and node 3) carries a label, minimised over relabellings, so
    ``c(x) + c'(c(x))`` with one shared ``c`` differs from the same text with two independent convs. Pools have no
    weights: equal pools on equal inputs are one function and need no label. An output that does not depend on ``x``
    is the empty string.

    ``strict_zero=True`` keeps a conv that reads zeros as an atom ``op()`` (its BN bias, a learnt constant) instead of
    dropping it; the canonical form does not use it (rule 1), benchmarks/nb201_collapse.py does, to measure the rule.
    """
    value: dict[int, list] = {0: ["x"]}
    source: dict[int, list] = {}
    for node in (1, 2, 3):
        value[node] = []
    for k, ((to, frm), op) in enumerate(zip(EDGES, ops)):
        if op == NONE or not (value[frm] or (strict_zero and op in (CONV1, CONV3))):
            continue
        if op == SKIP:
            value[to].extend(value[frm])
        else:
            source[k] = value[frm]
            value[to].append(k)
    out = value[3]
    uses: collections.Counter = collections.Counter()   # how often each atom occurs in node 3's expanded expression
    stack = list(out)
    while stack:
        atom = stack.pop()
        uses[atom] += 1
        if atom != "x":
            stack.extend(source[atom])
    if not uses["x"]:
        return ""
    shared = sorted(k for k, n in uses.items() if k != "x" and n > 1 and ops[k] not in _PARAM_FREE)

    def write(atom, label: dict[int, int]) -> str:
        if atom == "x":
            return "x"
        tag = f"#{label[atom]}" if atom in label else ""
        return f"{ops[atom]}{tag}({'+'.join(sorted(write(a, label) for a in source[atom]))})"

    return min("+".join(sorted(write(a, dict(zip(shared, perm))) for a in out))
               for perm in itertools.permutations(range(len(shared))))


# The first four valid draws of the cell sampler (random.Random(0)) that are below the table's median validation
# accuracy on every preset (CIFAR-10, CIFAR-100; 200 and 12 epochs): a rule, not a choice.
_EXAMPLES = (
    "|avg_pool_3x3~0|+|skip_connect~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|",
    "|nor_conv_3x3~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|none~0|avg_pool_3x3~1|none~2|",
    "|skip_connect~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|avg_pool_3x3~1|skip_connect~2|",
    "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_3x3~1|+|none~0|nor_conv_1x1~1|avg_pool_3x3~2|",
)


@functools.lru_cache(maxsize=1)
def _representatives() -> dict[str, tuple[str, ...]]:
    """signature -> the smallest cell (ops compared by their rank in ``OPS``, edges in text order) that has it."""
    reps: dict[str, tuple[str, ...]] = {}
    for ops in itertools.product(OPS, repeat=len(EDGES)):   # lexicographic in rank order: the first seen is the least
        reps.setdefault(network_signature(ops), ops)
    return reps


class Nb201Space(BaseSpace):
    """NAS-Bench-201 cells (the benchmark's topology search space) in the benchmark's own notation."""

    name = "nb201"
    grammar_file = "nb201.ebnf"
    builder = "llmnas_local.builder.nb201:build_nb201"
    tabular = True                  # evaluated by a look-up in the benchmark's table
    literal_space = "nb201-cells"   # every cell string its own architecture (the literature's count of queries)

    def parse(self, text: str) -> Nb201Spec:
        return parse_nb201(text)

    def format(self, spec: Nb201Spec) -> str:
        return format_nb201(spec)

    def canonicalize(self, spec: Nb201Spec) -> Nb201Spec:
        """The least cell (ops ranked none < skip_connect < nor_conv_1x1 < nor_conv_3x3 < avg_pool_3x3, edges in text
        order) among those that compute the same parametric function, i.e. share :func:`network_signature`.

        Cells are identified when one of these rules, applied any number of times, turns one into the other:

        1. Zero edges: a ``none`` edge adds nothing. An edge whose input node has no signal (every path from node 0 to
           it passes a ``none``) reads zeros; skip and pool then give zeros, and we also count a conv as ``none`` there
           (NAS-Bench-201's own convention). Strictly, ReLU-conv-BN of zeros is BN's learnt bias beta, so such a conv
           adds a learnable per-channel constant; benchmarks/nb201_collapse.py measures the accuracy gaps this rule
           closes as below the benchmark's own seed noise.
        2. Dead edges: an edge whose output node cannot reach node 3 through non-``none`` edges is never read.
        3. Zero output: a cell whose node 3 has no signal outputs zeros; every network built from such a cell ignores
           its input (a constant classifier), so all of them are one class (canonically the all-``none`` cell).
        4. Relabelling: node j only ever enters as a term of a sum, so when 2<-1 carries nothing, nodes 1 and 2 are
           symmetric and swapping them (1<-0 with 2<-0, 3<-1 with 3<-2) changes nothing.
        5. Transparent skips: ``skip_connect`` is the identity, so a node whose value equals another's (node 1 = x via a
           lone skip, or node 2 = node 1) can stand in for it as the input of any edge: ``|skip~0|+|none~0|conv~1|``
           is ``|skip~0|+|conv~0|none~1|``; sums are commutative, so the ops on two such edges may also be swapped.
        6. Pools have no weights: two pools of the same input are the same tensor, however the cell routes them.

        Conv instances keep their identity: sharing one conv (one set of weights) differs from two independent convs.
        The canonical cell has ``none`` on every edge of rules 1-2. Different classes may still be near-equivalent
        (BN makes a conv nearly blind to its input's scale, so ``2x`` and ``x`` feeding only convs are close); those
        are kept apart because they are not provably the same.

        The 15,625 cells fall into 5,260 classes (NAS-Bench-201 counts 6,466: see benchmarks/nb201_collapse.py). The
        canonical cell may look unlike the proposal (the ResNet-like cell's is ``|none~0|+|nor_conv_3x3~0|none~1|+|
        skip_connect~0|none~1|nor_conv_3x3~2|``) and, with dead convs gone, has fewer parameters: build the proposed
        spec to reproduce the table's ``params_M``. The first call tabulates all cells (about half a second).
        """
        return Nb201Spec(_representatives()[network_signature(spec.ops)])

    def check(self, spec: Nb201Spec, constraints: Constraints) -> None:
        if not has_signal(spec.ops)[3]:
            raise SemanticError("the cell's output is identically zero (no path from node 0 to node 3 avoids 'none'), "
                                "so the network ignores its input and cannot learn")
        size = constraints.input_size
        if size <= 0 or size % 4:
            raise SemanticError(f"input_size {size} must be a positive multiple of 4 "
                                "(the network halves the resolution twice with stride-2 reductions)")
        if constraints.in_chans <= 0 or constraints.num_classes <= 0:
            raise SemanticError(f"in_chans ({constraints.in_chans}) and num_classes ({constraints.num_classes}) "
                                "must be positive")

    def mutate(self, spec: Nb201Spec, rng: random.Random) -> Nb201Spec:
        """Regularized evolution's mutation: one edge, drawn uniformly, gets one of the four other ops."""
        k = rng.randrange(len(EDGES))
        ops = list(spec.ops)
        ops[k] = rng.choice([op for op in OPS if op != ops[k]])
        return Nb201Spec(tuple(ops))

    def neighbour_grammar(self, spec: Nb201Spec, allowed=None) -> str | None:
        """One alternative per edge: that edge takes one of the other ops (those whose child ``allowed`` accepts),
        every other edge is the parent's."""
        separators = format_nb201(spec).split("|")     # ["", op~0, "+", op~0, op~1, "+", ...]
        slots = [i for i, part in enumerate(separators) if "~" in part]
        alternatives = []
        for k, slot in enumerate(slots):
            node = separators[slot].split("~")[1]
            ops = [o for o in OPS if o != spec.ops[k] and (
                allowed is None or allowed(Nb201Spec(spec.ops[:k] + (o,) + spec.ops[k + 1:])))]
            if ops:
                head, tail = "|".join(separators[:slot]) + "|", "~" + node + "|" + "|".join(separators[slot + 1:])
                alternatives.append(f'"{head}" (' + " | ".join(f'"{o}"' for o in ops) + f') "{tail}"')
        return "root ::= " + "\n    | ".join(alternatives) + "\n" if alternatives else None

    def subset_grammar(self, allowed) -> str | None:
        """The cells ``allowed`` accepts, as a trie over the edges in text order: a subtree whose every cell is allowed
        is one shared rule (``any<k>``: every op from edge k on), so the grammar grows with the cells left out, not
        with the 15,625 in."""
        return _subset_grammar([ops for ops in itertools.product(OPS, repeat=len(EDGES)) if allowed(Nb201Spec(ops))])

    def slots(self, spec: Nb201Spec) -> list[Slot]:
        """The six edges, ``e1``..``e6`` in text order, each with the four other ops."""
        return [Slot(f"e{k + 1}", f"edge {to}<-{frm}", spec.ops[k],
                     tuple((op, Nb201Spec(spec.ops[:k] + (op,) + spec.ops[k + 1:])) for op in OPS if op != spec.ops[k]))
                for k, (to, frm) in enumerate(EDGES)]

    def describe(self, hints: bool = False) -> str:
        text = (
            "A NAS-Bench-201 cell: a small DAG with nodes 0 (cell input) to 3 (cell output). Each node j is the sum of "
            "one operation applied to every earlier node i. The network stacks 5 cells at 16 channels, a stride-2 "
            "residual block, 5 cells at 32, another, 5 cells at 64, then global pooling and a linear classifier; only "
            "the cell is searched, and all 15 cells share it.\n"
            "Write the cell as |op~0|+|op~0|op~1|+|op~0|op~1|op~2| : the first group is node 1 (edge from node 0), the "
            "second node 2 (edges from nodes 0 and 1), the third node 3 (edges from nodes 0, 1 and 2).\n"
            "Operations: none (no edge, outputs zeros), skip_connect (identity), nor_conv_1x1 and nor_conv_3x3 "
            "(ReLU, convolution, batch norm), avg_pool_3x3 (3x3 average pooling, stride 1). A cell whose node 3 "
            "cannot be reached from node 0 without passing 'none' outputs zeros and is rejected."
        )
        if hints:   # the author's beliefs, partly learnt from the benchmark itself: a recorded setting, off by default
            text += ("\nWhat tends to matter: 3x3 convolutions carry most of the accuracy; a skip_connect from node 0 "
                     "to node 3 (a residual path) helps; many pools or skips with few convolutions score low. Edges "
                     "that lead nowhere are wasted: the same cell with them set to none is the same network.")
        return text

    def examples(self) -> list[str]:
        """Valid cells for documentation, each below the table's median validation accuracy on CIFAR-10 and
        CIFAR-100 (tests/dsl/test_nb201.py checks it against the shared table), so they show the notation, not an
        answer. Prompts draw theirs from the sampler with the run's seed (:meth:`prompt_examples`)."""
        return list(_EXAMPLES)


class Nb201CellSpace(Nb201Space):
    """NAS-Bench-201 with every cell string its own architecture (no merging of equivalent cells): the search loop
    then counts distinct cells (table rows), as the literature counts queries.

    Named ``nb201-cells`` so that its hashes and runs never mix with those of ``nb201`` in a store.
    """

    name = "nb201-cells"
    literal_space = None

    def canonicalize(self, spec: Nb201Spec) -> Nb201Spec:
        return spec
