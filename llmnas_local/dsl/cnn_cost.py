"""What a ``cnn`` architecture costs, computed from its spec without torch, and the least any completion of a partial
text can cost: the guard that keeps constrained decoding inside the user's caps.

:func:`cnn_cost` counts what the built model has: parameters (weights, biases, batch-norm affine) and FLOPs as torch's
``FlopCounterMode`` counts them (convolutions and the classifier, a multiply-add = 2). It mirrors timm's blocks as
``llmnas_local.builder.cnn`` wires them; a test checks it against the built models.

:func:`min_completion_cost` reads a prefix of a DSL string (it may end inside a key) and returns the cost of its
cheapest completion: every key still open takes its cheapest consistent value, then the head comes, directly or after
cheapest stages (1x1 stride-2 convs of 8 channels, which shrink what the head costs). Extending a prefix never lowers
this figure, and it belongs to a real completion, so a decoder that drops every token whose prefix goes over the caps
always keeps a way to finish (:func:`cnn_prefix_guard`).
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterable, Iterator, Optional

from llmnas_local.dsl.base import Constraints
from llmnas_local.dsl.cnn_blocks import (FAMILIES, HEAD_FIELDS, MAX_STAGES, STEM_FIELDS, VALUES, ZERO, CnnSpec, Cost,
                                         HeadSpec, StageSpec, StemSpec, _Field, block_family, conv_cost, groups_fit,
                                         make_stage, out_size)

__all__ = ["Cost", "ZERO", "block_cost", "cnn_cost", "cnn_prefix_guard", "min_completion_cost", "stage_cost"]


def block_cost(st: StageSpec, cin: int, stride: int, size: int) -> tuple[Cost, int]:
    """One block of ``st`` on a ``size`` x ``size`` input of ``cin`` channels: its cost (its family's cost model,
    :data:`llmnas_local.dsl.cnn_blocks.BLOCKS`) and output size."""
    return block_family(st.block).cost(st, cin, stride, size), out_size(size, stride)


@functools.lru_cache(maxsize=65536)     # a decoder's guard costs the same stages over and over
def stage_cost(st: StageSpec, cin: int, size: int) -> tuple[Cost, int]:
    """The ``st.repeats`` blocks of a stage: their cost and output size."""
    total = ZERO
    for i in range(st.repeats):
        cost, size = block_cost(st, cin if i == 0 else st.channels, st.stride if i == 0 else 1, size)
        total += cost
    return total, size


def _stem_cost(stem: StemSpec, in_chans: int, size: int) -> tuple[Cost, int]:
    so = out_size(size, stem.stride)
    return conv_cost(in_chans, stem.channels, stem.kernel, so), so


def _head_cost(head: HeadSpec, cin: int, size: int, num_classes: int) -> Cost:
    return conv_cost(cin, head.channels, 1, size) + Cost(head.channels * num_classes + num_classes,
                                                      2 * head.channels * num_classes)


def cnn_cost(spec: CnnSpec, num_classes: int, in_chans: int, input_size: int) -> Cost:
    """Parameters and FLOPs of the model :func:`llmnas_local.builder.cnn.build_cnn` builds from ``spec``."""
    total, size = _stem_cost(spec.stem, in_chans, input_size)
    cin = spec.stem.channels
    for st in spec.stages:
        cost, size = stage_cost(st, cin, size)
        total, cin = total + cost, st.channels
    return total + _head_cost(spec.head, cin, size, num_classes)


# -- the cheapest completion of a prefix ----------------------------------------------------------------------------
_CHEAPEST_STAGE = make_stage("cn", repeats=1, kernel=1, stride=2, channels=8, act="re")
_CHEAPEST_HEAD = HeadSpec(channels=8, act="re")
_CHANNELS = tuple(v for _, v in VALUES["c"])


@dataclasses.dataclass
class _Section:
    """A section of a prefix: the names it may still have and, per key, the values it may still take."""

    names: tuple[str, ...]
    keys: dict[str, tuple[object, ...]]


def _read_field(text: str, pos: int, f: _Field) -> tuple[Optional[tuple[object, ...]], int, bool]:
    """(values consistent with ``text[pos:]``, position after the field, whether the text ends within the field)."""
    rest = text[pos:]
    full = [(f.prefix + t, v) for t, v in VALUES[f.table]]
    for choice, v in full:
        if rest.startswith(choice) and len(rest) > len(choice) and rest[len(choice)] in "_ ":
            return (v,), pos + len(choice), False
    open_values = tuple(v for choice, v in full if choice.startswith(rest))
    return (open_values or None), len(text), True


def _sections(text: str) -> Optional[list[_Section]]:
    """The sections of a prefix of the cnn language; None if ``text`` is not a prefix of it."""
    families = tuple(FAMILIES)
    out: list[_Section] = []
    pos = 0
    while True:
        if not out:
            allowed = ("stem",)
        else:
            stages = len(out) - 1
            allowed = families if stages == 0 else (*families, "head") if stages < MAX_STAGES else ("head",)
        rest = text[pos:]
        names = tuple(n for n in allowed if (n + "_").startswith(rest) or rest.startswith(n + "_"))
        if not names:
            return None
        if not rest.startswith(names[0] + "_"):         # the text ends inside the name
            out.append(_Section(names, {}))
            return out
        name, pos = names[0], pos + len(names[0]) + 1
        fields = STEM_FIELDS if name == "stem" else HEAD_FIELDS if name == "head" else FAMILIES[name]
        section = _Section((name,), {})
        out.append(section)
        for i, f in enumerate(fields):
            if i:
                if pos == len(text):
                    return out
                if text[pos] != "_":
                    return None
                pos += 1
            values, pos, ended = _read_field(text, pos, f)
            if values is None:
                return None
            section.keys[f.attr] = values
            if ended:
                return out
        if pos == len(text):
            return out
        if name == "head" or text[pos] != " ":
            return None
        pos += 1


def _choices(fields: tuple[_Field, ...], keys: dict[str, tuple[object, ...]], spread: Iterable[str]) -> Iterator[dict]:
    """Key assignments to try: every consistent value of the keys in ``spread``, the cheapest of the others."""
    pools = {f.attr: keys.get(f.attr, tuple(v for _, v in VALUES[f.table])) for f in fields}
    fixed = {a: min(vs) for a, vs in pools.items() if a not in spread}
    spread = [a for a in spread if a in pools]

    def rec(i: int, acc: dict) -> Iterator[dict]:
        if i == len(spread):
            yield acc
            return
        for v in pools[spread[i]]:
            yield from rec(i + 1, {**acc, spread[i]: v})

    yield from rec(0, fixed)


def _stage_options(section: _Section) -> Iterator[StageSpec]:
    """The cheapest stages consistent with ``section``, one per stride (and per groups for a bottleneck, with the
    fewest channels those groups allow): the cheapest value of every other key."""
    for name in section.names:
        if name == "head":
            continue
        spread = ("stride", "groups") if name == "bt" else ("stride",)
        for keys in _choices(FAMILIES[name], section.keys, spread):
            if name != "bt":
                yield make_stage(name, **keys)
                continue
            for channels in sorted(section.keys.get("channels", _CHANNELS)):
                st = make_stage(name, **{**keys, "channels": channels})
                if groups_fit(st):
                    yield st
                    break


def _heads(section: _Section) -> Iterator[HeadSpec]:
    for keys in _choices(HEAD_FIELDS, section.keys, ()):
        yield HeadSpec(**keys)


_State = tuple[Cost, int, int, int]     # cost so far, channels, feature-map size, total stride


def _then(state: Optional[_State], st: StageSpec, input_size: int) -> Optional[_State]:
    """The state after stage ``st``; None where the total stride would exceed the input size."""
    if state is None or state[3] * st.stride > input_size:
        return None
    cost, size = stage_cost(st, state[1], state[2])
    return state[0] + cost, st.channels, size, state[3] * st.stride


def completion_costs(text: str, constraints: Constraints) -> Optional[list[Cost]]:
    """The costs of the candidate cheapest completions of ``text`` that are structurally valid (total stride within
    the input size, bottleneck groups): the open section's consistent options, then, unless the head has begun, the
    head directly or after cheapest stages. None if ``text`` is no prefix of the language."""
    sections = _sections(text)
    if sections is None:
        return None
    c = constraints
    done = tuple(make_stage(s.names[0], **{a: v[0] for a, v in s.keys.items()}) for s in sections[1:-1])
    if not all(groups_fit(st) for st in done):
        return []
    last = sections[-1] if len(sections) > 1 else _Section(tuple(FAMILIES), {})
    if last.names == ("head",):                               # the head has begun: nothing more can come before it
        tails: list[tuple[StageSpec, ...]] = [()]
        heads, extend = list(_heads(last)), False
    else:
        tails = [(s,) for s in _stage_options(last)]
        if "head" in last.names:                              # a stage or the head may start here
            tails.insert(0, ())
        heads, extend = [_CHEAPEST_HEAD], True
    out = []
    for keys in _choices(STEM_FIELDS, sections[0].keys, ("stride",)):
        stem = StemSpec(**keys)
        cost, size = _stem_cost(stem, c.in_chans, c.input_size)
        state: Optional[_State] = (cost, stem.channels, size, stem.stride)
        for st in done:
            state = _then(state, st, c.input_size)
        for tail in tails:
            end = state
            for st in tail:
                end = _then(end, st, c.input_size)
            ends = [end]
            for _ in range(MAX_STAGES - len(done) - len(tail) if extend else 0):
                ends.append(_then(ends[-1], _CHEAPEST_STAGE, c.input_size))
            out += [e[0] + _head_cost(h, e[1], e[2], c.num_classes) for e in ends if e is not None for h in heads]
    return out


def min_completion_cost(text: str, constraints: Constraints) -> Optional[Cost]:
    """The fewest parameters and the fewest FLOPs any completion of ``text`` has (each its own minimum); None if no
    completion is structurally valid or ``text`` is no prefix of the language."""
    costs = completion_costs(text, constraints)
    if not costs:
        return None
    return Cost(min(c.params for c in costs), min(c.flops for c in costs))


@functools.lru_cache(maxsize=8)     # one per task: its answers are cached across the calls of a search
def cnn_prefix_guard(constraints: Constraints) -> Callable[[str], bool]:
    """A predicate on prefixes of the cnn language: False once no completion is valid and within ``constraints``'
    caps. True for text that is no prefix of the language: the grammar, not the guard, rules on that."""

    @functools.lru_cache(maxsize=65536)
    def viable(text: str) -> bool:
        costs = completion_costs(text, constraints)
        return costs is None or any(cost.within(constraints) for cost in costs)

    return viable
