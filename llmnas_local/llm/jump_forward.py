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
import importlib.util
import time
from typing import Any, Callable, Sequence

import torch

from llmnas_local.llm.base import FINISH_LENGTH, FINISH_STOP
from llmnas_local.llm.guarded_decoding import guard_rows, top_nucleus

# forward(input_ids, attention_mask or None, position_ids, last) -> each row's logits at its position last[row]
Forward = Callable[[torch.Tensor, "torch.Tensor | None", torch.Tensor, "list[int]"], torch.Tensor]


def warp(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """``logits / temperature`` with the tokens outside the top-p nucleus set to -inf (transformers'
    TopPLogitsWarper: the smallest set of most likely tokens whose mass exceeds ``top_p``); ``temperature`` > 0."""
    values, ids = top_nucleus(logits / temperature, top_p)
    return torch.full_like(logits, float("-inf")).scatter(1, ids, values)


def sample(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """One token id per row: argmax when ``temperature`` is 0, else a draw from the top-p nucleus of ``logits / T``
    (drawn among the nucleus alone: the vocabulary is never sorted)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)
    values, ids = top_nucleus(logits / temperature, top_p)
    return ids.gather(1, torch.multinomial(torch.softmax(values, dim=-1), 1)).squeeze(1)


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


class GrammarMask:
    """The grammar's bitmask of a decode's rows, on the host in one buffer (pinned on a GPU) kept for the decode:
    filled by the rows' matchers (in parallel for a batch), copied to the logits' device once a step and applied
    there (xgrammar's kernel: Triton on a GPU where it works, else torch)."""

    def __init__(self, device: Any):
        import xgrammar as xgr

        self.device = torch.device(device)
        self.host: torch.Tensor | None = None
        self.batch = xgr.BatchGrammarMatcher()
        if self.device.type == "cpu":
            self.backend = "cpu"
        else:
            self.backend = "triton" if importlib.util.find_spec("triton") else "torch_native"

    def apply(self, scores: torch.Tensor, matchers: Sequence) -> None:
        """Set to -inf the logits (one row per matcher) of the tokens each matcher forbids."""
        import xgrammar as xgr

        rows, vocab = scores.shape
        if self.host is None or self.host.shape[0] < rows:
            self.host = xgr.allocate_token_bitmask(rows, vocab)
            if self.device.type == "cuda":
                self.host = self.host.pin_memory()
        if rows == 1:
            matchers[0].fill_next_token_bitmask(self.host, 0)
        else:
            self.batch.batch_fill_next_token_bitmask(list(matchers), self.host)
        bits = self.host[:rows].to(self.device, non_blocking=True)
        try:
            xgr.apply_token_bitmask_inplace(scores, bits, backend=self.backend)
        except Exception:               # Triton present but unable to build its kernel here (no C compiler...)
            if self.backend != "triton":
                raise
            self.backend = "torch_native"
            xgr.apply_token_bitmask_inplace(scores, bits, backend=self.backend)


class AttentionMask:
    """The attention mask of a decode's KV-cache rows: None (every column real, so the model may skip it) until a
    pass pads a row, then a (rows, columns) tensor on the device."""

    def __init__(self, rows: int, columns: int, device: Any):
        self.rows, self.columns, self.device = rows, columns, device
        self.tensor: torch.Tensor | None = None

    def grow(self, fresh: torch.Tensor, padded: bool) -> torch.Tensor | None:
        """The mask once the pass's columns (``fresh``: 1 real, 0 padding, on the device) are appended."""
        if self.tensor is None and padded:
            self.tensor = torch.ones(self.rows, self.columns, dtype=torch.long, device=self.device)
        if self.tensor is not None:
            self.tensor = torch.cat([self.tensor, fresh], dim=1)
        self.columns += fresh.shape[1]
        return self.tensor

    def keep(self, index: torch.Tensor) -> None:
        """The rows become those listed in ``index`` (repeats copy a row), as the cache's do."""
        self.rows = index.shape[0]
        if self.tensor is not None:
            self.tensor = self.tensor[index]


class Row:
    """One completion being decoded: its tokens and text, its grammar matcher, what it feeds the model next, where."""

    def __init__(self, matcher, first: int, position: int):
        self.matcher, self.tokens, self.text = matcher, [], ""
        self.pending, self.position, self.finish = [first], position, None


def decode(forward: Forward, keep_rows: Callable[[torch.Tensor], None], prompt_ids: Sequence[int], rows: int, *,
           compiled, tokenizer, token_texts: Sequence[str], stop_ids: Sequence[int], pad_id: int, max_tokens: int,
           temperature: float, top_p: float, guard: Callable[[str], bool] | None = None, device: Any = "cpu",
           clock: StepClock | None = None) -> list[tuple[list[int], str]]:
    """Decode ``rows`` completions of a prompt whose KV cache (every prompt token but the last) is held, as ``rows``
    copies, by ``forward`` (:data:`Forward`: the rows' logits at the given positions of a pass); ``keep_rows(index)``
    drops the cache rows not in ``index``. ``compiled``: xgrammar's compiled grammar, or None (free text). Returns
    ``(token ids, finish reason)`` per row, the stop token included when the row stopped. ``clock``: where the time
    went. Each step copies to the host only the sampled tokens (and the prefix guard's few candidates)."""
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
    stop, attention = set(stop_ids), AttentionMask(rows, past, device)
    grammar = GrammarMask(device) if compiled is not None else None
    clock.lap("setup")
    while live:
        if any(r.finish for r in live):                 # rows that ended leave the batch (and the cache)
            index = [i for i, r in enumerate(live) if r.finish is None]
            if not index:
                break
            index_t = torch.tensor(index, dtype=torch.long, device=device)
            keep_rows(index_t)
            attention.keep(index_t)
            live = [live[i] for i in index]
            clock.lap("cache")
        scores = next_scores(forward, live, attention, grammar=grammar, pad_id=pad_id, guard=guard,
                             token_texts=token_texts, temperature=temperature, top_p=top_p, device=device, clock=clock)
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


def next_scores(forward: Forward, live: Sequence[Row], attention: AttentionMask, *, grammar: GrammarMask | None,
                pad_id: int, guard: Callable[[str], bool] | None, token_texts: Sequence[str], temperature: float,
                top_p: float, device: Any, clock: StepClock | None = None) -> torch.Tensor:
    """One forward pass for the rows in ``live`` (the cache's rows, in order), each fed its pending tokens, which
    advance its position and grow ``attention``: their next-token logits (float32, on the model's device) masked by
    each row's grammar (``grammar``, None for free text) and the prefix guard. The pass's inputs reach the device in
    one copy, and only the last position of each row goes through the model's output layer."""
    clock = clock or NO_CLOCK
    width = max(len(r.pending) for r in live)
    packed = [[r.pending + [pad_id] * (width - len(r.pending)) for r in live],
              [list(range(r.position, r.position + width)) for r in live],
              [[1] * len(r.pending) + [0] * (width - len(r.pending)) for r in live]]
    input_ids, positions, fresh = torch.tensor(packed, dtype=torch.long).to(device, non_blocking=True)
    mask = attention.grow(fresh, padded=any(len(r.pending) < width for r in live))
    last = [len(r.pending) - 1 for r in live]
    for r in live:
        r.position += len(r.pending)
    clock.lap("inputs")
    logits = forward(input_ids, mask, positions, last)
    clock.lap("forward")
    scores = logits.float()
    clock.lap("copy")
    if grammar is not None:
        grammar.apply(scores, [r.matcher for r in live])
    clock.lap("mask")
    if guard is not None:
        guard_rows(scores, range(len(live)), [r.text for r in live], guard, token_texts, temperature, top_p)
        clock.lap("guard")
    return scores


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
