"""Sampling ``n`` completions of one prompt under a grammar, with jump-forward decoding (as in SGLang).

Most of a DSL string is forced by the grammar: in ``|nor_conv_3x3~0|+|...`` the model chooses an op, and the grammar
writes everything up to the next choice. Token-by-token decoding spends one forward pass of the model per forced token
(51 passes for an nb201 cell, of which about 10 choose anything). Here, after each sampled token, the matcher's
jump-forward string (the text the grammar forces next) is tokenized and fed with the next forward pass, so a pass is
spent per *choice*: rows of a batch carry different numbers of pending tokens, padded on the right and masked out of
attention, with their own position ids. A row whose grammar allows only the stop token ends without a pass, and
finished rows leave the batch.

Forced text is tokenized canonically (as the tokenizer writes it), where token-by-token decoding lets the model pick
any tokenization of it; otherwise the distribution is the one of masked sampling at the given temperature and top-p
(transformers' rule), and the prefix guard (:mod:`llmnas_local.llm.guarded_decoding`) is applied to every sampled
step.
"""
from __future__ import annotations

import collections
import time
from typing import Any, Callable, Sequence

import torch

from llmnas_local.llm.base import FINISH_LENGTH, FINISH_STOP
from llmnas_local.llm.guarded_decoding import guard_logits, nucleus_tail


def warp(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """``logits / temperature`` with the tokens outside the top-p nucleus set to -inf (transformers'
    TopPLogitsWarper: the smallest set of most likely tokens whose mass exceeds ``top_p``); ``temperature`` > 0."""
    logits = logits / temperature
    ordered, order = torch.sort(logits, dim=-1)                 # ascending
    return logits.scatter(1, order, ordered.masked_fill(nucleus_tail(ordered, top_p), float("-inf")))


def sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token id per row: argmax when ``temperature`` is 0, else a draw from the top-p nucleus of ``logits / T``."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    return torch.multinomial(torch.softmax(warp(logits, temperature, top_p), dim=-1), 1).squeeze(1)


class StepClock:
    """Where decoding's time goes, by section (benchmarks/bench_decode.py): ``lap(name)`` charges the time since the
    previous lap (or :meth:`start`) to ``name`` and counts the lap. ``sync`` (``torch.cuda.synchronize`` on a GPU)
    runs before each reading, so that the work a section queued on the device is charged to it; it slows decoding,
    so a run timed for its wall time goes without it. A decode given no clock uses :data:`NO_CLOCK`."""

    def __init__(self, sync: Callable[[], None] | None = None):
        self.sync = sync
        self.seconds: collections.Counter[str] = collections.Counter()
        self.counts: collections.Counter[str] = collections.Counter()
        self._last = time.perf_counter()

    def start(self) -> None:
        if self.sync is not None:
            self.sync()
        self._last = time.perf_counter()

    def lap(self, name: str) -> None:
        if self.sync is not None:
            self.sync()
        now = time.perf_counter()
        self.seconds[name] += now - self._last
        self.counts[name] += 1
        self._last = now


class _NoClock:
    def start(self) -> None:
        pass

    def lap(self, name: str) -> None:
        pass


NO_CLOCK = _NoClock()


class Row:
    """One completion being decoded: its tokens and text, its grammar matcher, what it feeds the model next, where."""

    def __init__(self, matcher, first: int, position: int):
        self.matcher, self.tokens, self.text = matcher, [], ""
        self.pending, self.position, self.finish = [first], position, None


def decode(forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor],
           keep_rows: Callable[[torch.Tensor], None], prompt_ids: Sequence[int], rows: int, *, compiled, tokenizer,
           token_texts: Sequence[str], stop_ids: Sequence[int], pad_id: int, max_tokens: int, temperature: float,
           top_p: float, guard: Callable[[str], bool] | None = None, device: Any = "cpu",
           clock: StepClock | None = None) -> list[tuple[list[int], str]]:
    """Decode ``rows`` completions of a prompt whose KV cache (every prompt token but the last) is held, as ``rows``
    copies, by ``forward(input_ids, attention_mask, position_ids) -> logits``; ``keep_rows(index)`` drops the cache
    rows not in ``index``. ``compiled``: xgrammar's compiled grammar, or None (free text). Returns ``(token ids, finish
    reason)`` per row, the stop token included when the row stopped. ``clock``: where the time went."""
    import xgrammar as xgr

    clock = clock or NO_CLOCK
    clock.start()

    jump = JumpForward(tokenizer, token_texts, stop_ids, max_tokens, len(token_texts))
    past = len(prompt_ids) - 1
    every = [Row(xgr.GrammarMatcher(compiled) if compiled is not None else None, prompt_ids[-1], past)
             for _ in range(rows)]
    for row in every:
        jump(row)
    live = list(every)
    stop, mask = set(stop_ids), torch.ones(rows, past, dtype=torch.long, device=device)
    clock.lap("setup")
    while live:
        if any(r.finish for r in live):                 # rows that ended leave the batch (and the cache)
            index = [i for i, r in enumerate(live) if r.finish is None]
            if not index:
                break
            keep_rows(torch.tensor(index, dtype=torch.long, device=device))
            mask = mask[index]
            live = [live[i] for i in index]
            clock.lap("cache")
        scores, mask = next_scores(forward, live, mask, compiled=compiled, pad_id=pad_id, guard=guard,
                                   token_texts=token_texts, temperature=temperature, top_p=top_p, device=device,
                                   clock=clock)
        tokens = sample(scores, temperature, top_p).tolist()
        clock.lap("sample")
        for r, token in zip(live, tokens):
            choose(r, token, jump, stop)
        clock.lap("jump")
    return [(r.tokens, r.finish) for r in every]


def choose(row: Row, token: int, jump: JumpForward, stop: set[int]) -> None:
    """Append a sampled ``token`` to ``row`` (after the pass that scored it), then the text its grammar forces next;
    mark the row finished at a stop token (its text stays the output's) or at ``max_tokens``."""
    if row.matcher is not None and not row.matcher.accept_token(token):
        raise RuntimeError(f"the grammar matcher refused token {token}, which its mask allowed")
    row.tokens.append(token)
    row.pending = [token]
    if token in stop:
        row.finish = FINISH_STOP
        return
    row.text += jump.token_texts[token]
    if len(row.tokens) >= jump.max_tokens:
        row.finish = FINISH_LENGTH
    else:
        jump(row)


def next_scores(forward: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor], live: Sequence[Row],
                mask: torch.Tensor, *, compiled, pad_id: int, guard: Callable[[str], bool] | None,
                token_texts: Sequence[str], temperature: float, top_p: float, device: Any,
                clock: StepClock | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One forward pass for the rows in ``live`` (the cache's rows, in order), each fed its pending tokens, which
    advance its position: their next-token logits (float32, on the CPU) masked by each row's grammar and the prefix
    guard, and the attention ``mask`` grown by this pass's columns."""
    import xgrammar as xgr

    clock = clock or NO_CLOCK
    width = max(len(r.pending) for r in live)
    input_ids = torch.full((len(live), width), pad_id, dtype=torch.long)
    fresh = torch.zeros((len(live), width), dtype=torch.long)
    for i, r in enumerate(live):
        input_ids[i, :len(r.pending)] = torch.tensor(r.pending)
        fresh[i, :len(r.pending)] = 1
    positions = torch.tensor([r.position for r in live]).unsqueeze(1) + torch.arange(width)
    mask = torch.cat([mask, fresh.to(device)], dim=1)
    input_ids, positions = input_ids.to(device), positions.to(device)
    clock.lap("inputs")
    logits = forward(input_ids, mask, positions)
    clock.lap("forward")
    last = torch.tensor([len(r.pending) - 1 for r in live], device=logits.device)
    scores = logits[torch.arange(len(live), device=logits.device), last].float().cpu()
    for r in live:
        r.position += len(r.pending)
    clock.lap("copy")
    if compiled is not None:
        bitmask = xgr.allocate_token_bitmask(len(live), scores.shape[-1])
        for i, r in enumerate(live):
            r.matcher.fill_next_token_bitmask(bitmask, i)
        xgr.apply_token_bitmask_inplace(scores, bitmask)
    clock.lap("mask")
    if guard is not None:
        for i, r in enumerate(live):
            guard_logits(scores[i], r.text, guard, token_texts, temperature, top_p)
        clock.lap("guard")
    return scores, mask


class JumpForward:
    """Appends to a row the text its grammar forces next (tokenized canonically) and, where the grammar then allows
    only a stop token, that token, which ends the row."""

    def __init__(self, tokenizer, token_texts: Sequence[str], stop_ids: Sequence[int], max_tokens: int, vocab: int):
        self.tokenizer, self.token_texts, self.stop_ids = tokenizer, token_texts, set(stop_ids)
        self.max_tokens, self.vocab = max_tokens, vocab
        self.bits = torch.arange(32, dtype=torch.int32)

    def __call__(self, row: Row) -> None:
        m = row.matcher
        if m is None:
            return
        forced = m.find_jump_forward_string()
        for token in self.tokenizer.encode(forced, add_special_tokens=False) if forced else ():
            if len(row.tokens) >= self.max_tokens:
                row.finish = FINISH_LENGTH
                return
            if not m.accept_token(token):     # a token that would reach past the forced text: sample from here
                break
            row.tokens.append(token)
            row.text += self.token_texts[token]
            row.pending.append(token)
        if m.is_completed() and len(row.tokens) < self.max_tokens:
            allowed = self.allowed(m)
            if allowed and set(allowed) <= self.stop_ids:
                m.accept_token(allowed[0])
                row.tokens.append(allowed[0])
                row.finish = FINISH_STOP
        if row.finish is None and len(row.tokens) >= self.max_tokens:      # the forced text filled the row
            row.finish = FINISH_LENGTH

    def allowed(self, matcher) -> list[int]:
        """The token ids the matcher allows next (its bitmask unpacked)."""
        import xgrammar as xgr

        bitmask = xgr.allocate_token_bitmask(1, self.vocab)
        matcher.fill_next_token_bitmask(bitmask, 0)
        bits = (bitmask[0].unsqueeze(1) >> self.bits) & 1
        return bits.flatten()[:self.vocab].nonzero().flatten().tolist()
