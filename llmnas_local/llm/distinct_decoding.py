"""``n`` distinct completions of one prompt: stochastic beam search (Kool, van Hoof & Welling, ICML 2019) under the
grammar, with jump-forward decoding.

Independent samples of one prompt repeat its likely completions: with its memory in the prompt, SmolLM2 wrote the
same nb201 cell in about half of a call's 8 candidates. Stochastic beam search draws ``n`` completions *without
replacement* from the same distribution -- the model's at the temperature and top-p, masked by the grammar and the
prefix guard. Each beam carries its log-probability and a Gumbel-perturbed copy of it; a child's perturbation is drawn
conditioned on its parent's (the top-down Gumbel-max trick), and the ``n`` largest beams, finished or not, survive each
step. The finished beams, by decreasing perturbed log-probability, are the order in which sampling without replacement
would have drawn them. At temperature 0 nothing is perturbed: beam search, the ``n`` most likely completions.

Distinct means distinct *outputs*. A grammar lets the model write one text in several tokenizations ("none" as one
token or as "n" + "one"), and a space writes one design in several texts (an nb201 cell whose edge into a node is
``none`` ignores that node's other edges). Of beams with the same text so far, or finished with the same ``identity``
(the constraint's, e.g. the space's canonical hash; by default the text), only the most likely survives -- the class is
drawn through its best member -- and the next beam takes the slot.

Cost: a beam is a row of the batch, so a step is one forward pass of at most ``n`` rows, as for ``n`` independent
samples; the cache rows follow their beams (a parent's row is copied to each child). Jump-forward decoding writes the
forced text between choices as in :func:`llmnas_local.llm.jump_forward.decode`.
"""
from __future__ import annotations

import copy
import dataclasses
from typing import Any, Callable, Hashable, Sequence

import torch

from llmnas_local.llm.jump_forward import (NO_CLOCK, AttentionMask, Forward, GrammarMask, JumpForward, Row, StepClock,
                                           choose, next_scores, warp)


@dataclasses.dataclass
class _Beam:
    row: Row
    log_p: float        # log-probability of the tokens the model chose (forced text has probability 1)
    key: float          # log_p perturbed by a Gumbel, conditioned on the parent's key
    same: Any           # beams alike in this are one: (False, text so far) or (True, the output's identity)


def decode_distinct(forward: Forward, select_rows: Callable[[torch.Tensor], None], prompt_ids: Sequence[int], n: int, *, compiled,
                    tokenizer, token_texts: Sequence[str], stop_ids: Sequence[int], pad_id: int, max_tokens: int,
                    temperature: float, top_p: float, guard: Callable[[str], bool] | None = None,
                    identity: Callable[[str], Hashable] | None = None, device: Any = "cpu",
                    clock: StepClock | None = None) -> list[tuple[list[int], str]]:
    """Up to ``n`` distinct completions of a prompt whose KV cache (every prompt token but the last) is held, as one
    row, by ``forward`` (:data:`~llmnas_local.llm.jump_forward.Forward`); ``select_rows(index)`` makes the cache's
    rows those listed in ``index`` (repeats copy a row). ``identity(text)``: what makes two outputs the same (default:
    the text). Fewer than ``n`` only where the grammar admits fewer. Returns ``(token ids, finish reason)`` per
    completion, in sampling order. ``clock``: where the time went."""
    import xgrammar as xgr

    clock = clock or NO_CLOCK
    clock.start()
    jump = JumpForward(tokenizer, token_texts, stop_ids, max_tokens, len(token_texts))
    root = Row(xgr.GrammarMatcher(compiled) if compiled is not None else None, prompt_ids[-1], len(prompt_ids) - 1)
    jump(root)

    def same(row: Row) -> Any:
        if row.finish is None or identity is None:
            return row.finish is not None, row.text
        try:
            return True, identity(row.text)
        except Exception:            # an output the identity cannot read (cut at max_tokens) is itself
            return True, row.text

    beams, stop = [_Beam(root, 0.0, 0.0, same(root))], set(stop_ids)
    attention = AttentionMask(1, len(prompt_ids) - 1, device)
    grammar = GrammarMask(device) if compiled is not None else None
    clock.lap("setup")
    while any(b.row.finish is None for b in beams):
        live = [b for b in beams if b.row.finish is None]         # the cache's rows, in this order
        scores = next_scores(forward, [b.row for b in live], attention, grammar=grammar, pad_id=pad_id, guard=guard,
                             token_texts=token_texts, temperature=temperature, top_p=top_p, device=device, clock=clock)
        log_probs = torch.log_softmax(warp(scores, temperature, top_p) if temperature > 0 else scores, dim=-1)
        finite = torch.isfinite(log_probs)
        counts = finite.sum(dim=1).tolist()
        picked = []                           # per row: its children's keys, tokens and log-probabilities
        for i, (b, tokens) in enumerate(zip(live, finite.nonzero()[:, 1].split(counts))):
            log_p = b.log_p + log_probs[i, tokens].double()
            keys = conditioned_gumbel(log_p, b.key) if temperature > 0 else log_p
            top = torch.topk(keys, min(2 * n, len(tokens)))          # spares for children found alike
            picked.append(torch.stack([top.values, tokens[top.indices].double(), log_p[top.indices]]))
        keys, tokens, log_ps = torch.cat(picked, dim=1).tolist()     # one copy to the host
        options = [(b.key, b, -1, -1, b.log_p) for b in beams if b.row.finish is not None]
        start = 0
        for i, (b, p) in enumerate(zip(live, picked)):
            options += [(keys[j], b, i, int(tokens[j]), log_ps[j]) for j in range(start, start + p.shape[1])]
            start += p.shape[1]
        options.sort(key=lambda o: o[0], reverse=True)
        beams, parents, taken = [], [], set()
        for key, beam, parent, token, log_p in options:
            if len(beams) == n:
                break
            if parent >= 0:                     # else a finished beam, kept while n others do not outrank it
                row = _fork(beam.row)
                clock.lap("distinct")
                choose(row, token, jump, stop)
                clock.lap("jump")
                beam = _Beam(row, log_p, key, same(row))
            if beam.same in taken:              # a likelier beam is alike: this one adds nothing
                continue
            taken.add(beam.same)
            beams.append(beam)
            if parent >= 0 and beam.row.finish is None:
                parents.append(parent)
        clock.lap("distinct")
        if parents:
            index = torch.tensor(parents, dtype=torch.long, device=device)
            select_rows(index)
            attention.keep(index)
            clock.lap("cache")
    return [(b.row.tokens, b.row.finish) for b in beams]


def conditioned_gumbel(log_p: torch.Tensor, parent_key: float) -> torch.Tensor:
    """Gumbel-perturbed ``log_p`` of a beam's children, conditioned on their maximum being ``parent_key`` (Kool et
    al., eq. 23, in its numerically stable form)."""
    perturbed = log_p - torch.log(torch.empty_like(log_p).exponential_())        # + Gumbel(0, 1)
    v = parent_key - perturbed + _log1mexp(perturbed - perturbed.max())
    return parent_key - v.clamp(min=0) - torch.log1p(torch.exp(-v.abs()))


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x <= 0, accurate near 0 and far from it."""
    return torch.where(x > -0.6931, torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def _fork(row: Row) -> Row:
    """A copy of ``row`` that decodes on its own: its own matcher and token list."""
    child = copy.copy(row)
    child.matcher = row.matcher.fork() if row.matcher is not None else None
    child.tokens = list(row.tokens)
    return child
