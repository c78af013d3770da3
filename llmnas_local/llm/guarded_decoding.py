"""Grammar-constrained decoding with a prefix guard, for transformers' ``generate``.

The grammar makes every completion parse; a prefix guard (``Constraint.prefix_guard``) adds what a grammar cannot
say, such as "the model stays within 25M FLOPs": it is False once no completion of a text can be valid. After
xgrammar masks the logits, :func:`guard_rows` checks the tokens the sampler may draw -- the top-p nucleus at the
call's temperature, or the argmax when greedy -- and masks each whose text fails the guard, repeating until every
token the sampler may draw passes. The guard is checked on a handful of tokens a step, not on the vocabulary, and the
rows of a batch are checked together: the candidates of all rows reach the host in one copy, the failures return in
one (the logits stay on their device). If every token the grammar allows fails (a guard that over-promised), the row
keeps the grammar's mask alone and the search rejects the result as it would without a guard.
:class:`GuardedGrammarProcessor` does it for transformers' ``generate``; jump-forward decoding calls
:func:`guard_rows` itself.
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
        rows = [i for i in range(len(self.texts)) if not self.grammar.matchers[i].is_terminated()]
        self.unguarded_rows += guard_rows(scores, rows, [self.texts[i] for i in rows], self.guard, self.token_texts,
                                          self.temperature, self.top_p)
        return scores


def guard_rows(scores: torch.Tensor, rows: Sequence[int], texts: Sequence[str], guard: Callable[[str], bool],
               token_texts: Sequence[str], temperature: float, top_p: float) -> int:
    """Mask (in place, on the logits' device) the tokens of grammar-masked logits ``scores[rows[i]]`` that the sampler
    could draw and whose text, appended to ``texts[i]``, fails ``guard``, until every token it could draw passes.
    Returns the number of dead ends: rows where every allowed token failed, left as the grammar masked them."""
    todo = list(range(len(rows)))
    checked: list[set[int]] = [set() for _ in rows]
    saved, dead = None, 0
    while todo:
        index = [rows[i] for i in todo]
        failed_rows, failed_tokens, again = [], [], []
        view = scores if index == list(range(scores.shape[0])) else scores[index]
        for i, candidates in zip(todo, sampleable(view, temperature, top_p)):
            if candidates is None:          # no token allowed: by the grammar, or (dead end) by the guard
                if checked[i]:              # every allowed token failed: the grammar's mask alone
                    scores[rows[i]] = saved[rows[i]]
                    dead += 1
                continue
            fresh = [t for t in candidates if t not in checked[i]]
            checked[i].update(fresh)
            failures = [t for t in fresh if not guard(texts[i] + token_texts[t])]
            if failures:
                failed_rows += [rows[i]] * len(failures)
                failed_tokens += failures
                again.append(i)
        if failed_rows:
            if saved is None:
                saved = scores.clone()
            scores[torch.tensor(failed_rows, device=scores.device),
                   torch.tensor(failed_tokens, device=scores.device)] = float("-inf")
        todo = again
    return dead


def sampleable(logits: torch.Tensor, temperature: float, top_p: float) -> list[list[int] | None]:
    """Per row of ``logits``, the token ids a sampler can draw: the argmax when greedy, else the top-p nucleus of
    ``logits / temperature`` (a hair wider than the sampler's, for rounding); None for a row with no finite logit."""
    if temperature <= 0:
        best, ids = logits.max(dim=-1)
        return [None if b == float("-inf") else [t] for b, t in zip(best.tolist(), ids.tolist())]
    values, ids = top_nucleus(logits / temperature, top_p, slack=1e-6)
    first = values[:, 0].tolist()
    ids = ids.masked_fill(values == float("-inf"), -1).tolist()
    return [None if f == float("-inf") else [t for t in row if t >= 0] for f, row in zip(first, ids)]


def top_nucleus(logits: torch.Tensor, top_p: float, slack: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-p nucleus of each row of ``logits`` as transformers' TopPLogitsWarper keeps it -- the fewest most likely
    tokens whose probability exceeds ``top_p`` (``slack`` wider); the most likely always stays -- found without
    sorting the vocabulary (on the CPU): ``(values, ids)``, each row's ``k`` largest logits in decreasing order and
    their token ids, the values outside the nucleus -inf (``k``: as few as hold every row's nucleus)."""
    vocab = logits.shape[-1]
    limit = top_p + slack if top_p < 1 else float("inf")      # top_p 1: every allowed token, whatever the rounding
    # on a GPU one sort of the vocabulary costs less than the host round trips of growing k
    k, total = (vocab if logits.device.type == "cuda" else min(64, vocab)), None
    while True:
        values, ids = torch.topk(logits, k, dim=-1)           # sorted, largest first
        if total is None:         # the normaliser: from the k alone where they hold every allowed token (a grammar's)
            whole = k == vocab or bool((values[:, -1] == float("-inf")).all())
            total = torch.logsumexp(values if whole else logits, dim=-1, keepdim=True)
        probs = torch.exp(values - total)
        before = probs.cumsum(dim=-1) - probs                 # the mass of the more likely tokens
        # done when each row's k-th token lies outside its nucleus, or is masked (every allowed token is in)
        if k == vocab or bool(((before[:, -1] >= limit) | (values[:, -1] == float("-inf"))).all()):
            break
        k = min(vocab, 4 * k)
    keep = before < limit
    keep[:, 0] = True
    return values.masked_fill(~keep, float("-inf")), ids
