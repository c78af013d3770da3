"""Grammar-constrained decoding with a prefix guard, for transformers' ``generate``.

The grammar makes every completion parse; a prefix guard (``Constraint.prefix_guard``) adds what a grammar cannot
say, such as "the model stays within 25M FLOPs": it is False once no completion of a text can be valid. After
xgrammar masks the logits, :class:`GuardedGrammarProcessor` checks the tokens the sampler may draw -- the top-p
nucleus at the call's temperature, or the argmax when greedy -- and masks each whose text fails the guard,
repeating until every token the sampler may draw passes. The guard is checked on a handful of tokens a step, not
on the vocabulary. If every token the grammar allows fails (a guard that over-promised), the row keeps the grammar's
mask alone and the search rejects the result as it would without a guard.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch


class GuardedGrammarProcessor:
    """A transformers logits processor: ``grammar`` (xgrammar's processor), then ``guard`` on the sampleable tokens.

    ``token_texts``: the text of every token id. Runs before transformers' temperature and top-p warpers, so it
    computes the nucleus they will keep from ``temperature`` and ``top_p`` (``temperature`` 0: greedy)."""

    def __init__(self, grammar, guard: Callable[[str], bool], token_texts: Sequence[str], temperature: float,
                 top_p: float):
        self.grammar, self.guard, self.token_texts = grammar, guard, token_texts
        self.temperature, self.top_p = temperature, top_p
        self.texts: list[str] | None = None
        self.unguarded_rows = 0        # dead ends: rows where every token the grammar allowed failed the guard

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        scores = self.grammar(input_ids, scores)
        if self.texts is None:
            self.texts = [""] * input_ids.shape[0]
        else:
            for i, token in enumerate(input_ids[:, -1].tolist()):
                self.texts[i] += self.token_texts[token]
        for i, text in enumerate(self.texts):
            if not self.grammar.matchers[i].is_terminated():
                self._guard_row(scores[i], text)
        return scores

    def _guard_row(self, row: torch.Tensor, text: str) -> None:
        if not guard_logits(row, text, self.guard, self.token_texts, self.temperature, self.top_p):
            self.unguarded_rows += 1


def guard_logits(row: torch.Tensor, text: str, guard: Callable[[str], bool], token_texts: Sequence[str],
                 temperature: float, top_p: float) -> bool:
    """Mask (in place) the tokens of a grammar-masked logits ``row`` that the sampler could draw and whose text,
    appended to ``text``, fails ``guard``, until every token it could draw passes. False on a dead end (every
    allowed token fails): ``row`` is then left as the grammar masked it."""
    allowed = torch.isfinite(row).nonzero().flatten()
    if allowed.numel() == 0:
        return True
    saved = row[allowed].clone()
    checked: set[int] = set()
    while True:
        fresh = [t for t in sampleable(row, allowed, temperature, top_p) if t not in checked]
        if not fresh:
            return True
        for t in fresh:
            checked.add(t)
            if not guard(text + token_texts[t]):
                row[t] = float("-inf")
        if not torch.isfinite(row[allowed]).any():
            row[allowed] = saved
            return False


def sampleable(row: torch.Tensor, allowed: torch.Tensor, temperature: float, top_p: float) -> list[int]:
    """The token ids a sampler can draw from ``row`` (``allowed``: its finite entries): the argmax when greedy, else
    TopPLogitsWarper's nucleus of ``row / temperature``."""
    logits = row[allowed]
    live = torch.isfinite(logits)
    if temperature <= 0:
        return [int(allowed[int(torch.argmax(logits))])]
    logits, ids = logits[live], allowed[live]
    order = torch.argsort(logits / temperature)          # ascending, as the warper sorts
    keep = ~nucleus_tail(logits[order] / temperature, top_p, slack=1e-6)   # a hair wider than the warper: rounding
    return ids[order[keep]].tolist()


def nucleus_tail(ascending: torch.Tensor, top_p: float, slack: float = 0.0) -> torch.Tensor:
    """Of logits sorted ascending along the last dimension, those outside the top-p nucleus, as transformers'
    TopPLogitsWarper draws it: the tail whose cumulative probability is at most ``1 - top_p - slack``; the most likely
    token always stays."""
    tail = torch.softmax(ascending, dim=-1).cumsum(dim=-1) <= (1 - top_p) - slack
    tail[..., -1] = False
    return tail
