"""Jump-forward decoding with a fake model over a tiny vocabulary and real xgrammar matchers: one forward pass per
choice, forced text fed with the next pass, positions and masks consistent per row, finished rows leave the batch."""
import torch
import xgrammar as xgr

from llmnas_local.llm.jump_forward import decode, sample

VOCAB = ["<eos>", "<pad>", "<p>", "|", "a", "b", "ab", "~", "~~"]
EOS, PAD, PROMPT = 0, 1, 2
GRAMMAR = 'root ::= "|" ("a" | "b" ("a" | "b")) "~~~|"'      # row choosing "a" needs one choice, "b" two


class FakeTokenizer:
    def encode(self, text, add_special_tokens=False):
        """Greedy longest match, as a BPE tokenizer would write the forced text."""
        ids, pos = [], 0
        while pos < len(text):
            token = max((i for i, t in enumerate(VOCAB) if text.startswith(t, pos)), key=lambda i: len(VOCAB[i]))
            ids.append(token)
            pos += len(VOCAB[token])
        return ids


class FakeModel:
    """Keeps every row's real tokens (mask 1) and checks the position ids against them; row r prefers ``PREFER[r]``
    (then "a"), and everything else is equally unlikely."""

    def __init__(self, rows, prompt_len, prefer):
        self.seqs = [[PROMPT] * (prompt_len - 1) for _ in range(rows)]
        self.prefer, self.calls, self.kept, self.columns = list(prefer), [], [], prompt_len - 1
        self.unmasked = 0                                        # passes given no mask

    def forward(self, input_ids, attention_mask, position_ids, last):
        """The logits of each row at its position ``last[row]``; no mask (None) means no padding anywhere."""
        self.calls.append(input_ids.tolist())
        width = input_ids.shape[1]
        self.columns += width                                    # the cache's length: real and padded tokens
        if attention_mask is None:
            self.unmasked += 1
            attention_mask = torch.ones(len(self.seqs), self.columns, dtype=torch.long)
        assert attention_mask.shape == (len(self.seqs), self.columns)
        logits = torch.zeros(len(self.seqs), len(VOCAB))
        for r, seq in enumerate(self.seqs):
            for k in range(width):
                if attention_mask[r, -width + k]:
                    assert position_ids[r, k] == len(seq), "a real token's position is its index in the row"
                    seq.append(int(input_ids[r, k]))
                else:
                    assert input_ids[r, k] == PAD
            assert int(attention_mask[r, -width:].sum()) == last[r] + 1, "last: the row's last real token"
            logits[r] = self.next_logits(r)
        return logits

    def next_logits(self, r):
        """Row r's logits, the same at every position."""
        logits = torch.zeros(len(VOCAB))
        logits[VOCAB.index(self.prefer[r])] = 5.0
        logits[VOCAB.index("a")] += 1.0
        return logits

    def keep_rows(self, index):
        """Keep the rows listed (a repeated one is copied)."""
        self.kept.append(index.tolist())
        self.seqs = [list(self.seqs[i]) for i in index.tolist()]
        self.prefer = [self.prefer[i] for i in index.tolist()]


def _decode(rows, prefer, max_tokens=20, temperature=0.0):
    info = xgr.TokenizerInfo(VOCAB, stop_token_ids=[EOS])
    compiled = xgr.GrammarCompiler(info).compile_grammar(GRAMMAR)
    model = FakeModel(rows, 5, prefer)
    out = decode(model.forward, model.keep_rows, [PROMPT] * 5, rows, compiled=compiled, tokenizer=FakeTokenizer(),
                 token_texts=VOCAB, stop_ids=[EOS], pad_id=PAD, max_tokens=max_tokens, temperature=temperature,
                 top_p=1.0)
    return out, model


def test_one_forward_pass_per_choice_and_finished_rows_leave_the_batch():
    out, model = _decode(2, ["a", "b"])
    texts = ["".join(VOCAB[t] for t in tokens if t != EOS) for tokens, _ in out]
    assert texts == ["|a~~~|", "|bb~~~|"] and [finish for _, finish in out] == ["stop", "stop"]
    assert out[0][0][-1] == EOS                                  # the stop token is written without a pass
    assert len(model.calls) == 2                                 # row 0 chose once, row 1 twice
    assert model.calls[0] == [[PROMPT, VOCAB.index("|")]] * 2    # the last prompt token and the forced "|"
    assert model.kept == [[1]]                                   # row 0 left after the first pass
    assert model.calls[1] == [[VOCAB.index("b")]]                # row 1 alone: its second choice


def test_forced_text_is_tokenized_canonically_and_rows_pad_to_the_longest():
    out, model = _decode(3, ["b", "a", "b"])
    assert [VOCAB[t] for t in out[0][0]] == ["|", "b", "b", "~~", "~", "|", "<eos>"]
    assert model.calls[1] == [[VOCAB.index("b")], [VOCAB.index("b")]]   # rows 0 and 2; row 1 is done


def test_max_tokens_cuts_a_row_even_inside_forced_text():
    out, _ = _decode(1, ["b"], max_tokens=4)
    assert [VOCAB[t] for t in out[0][0]] == ["|", "b", "b", "~~"] and out[0][1] == "length"
    out, _ = _decode(1, ["a"], max_tokens=1)                     # the forced text ends at the limit
    assert [VOCAB[t] for t in out[0][0]] == ["|"] and out[0][1] == "length"


def test_sampling_keeps_the_top_p_nucleus():
    torch.manual_seed(0)
    logits = torch.tensor([[3.0, 2.0, 0.0, -1.0]]).repeat(2000, 1)
    drawn = sample(logits, temperature=1.0, top_p=0.8)
    assert set(drawn.tolist()) == {0, 1}                         # 0.66 + 0.24 >= 0.8: tokens 2 and 3 cut
    assert sample(logits[:1], temperature=0, top_p=0.8).tolist() == [0]


def test_no_mask_until_a_pass_pads_a_row():
    """Rows fed equally many tokens need no attention mask (the model may skip it); from the first padded pass on,
    every pass gets one, its padding columns 0."""
    info = xgr.TokenizerInfo(VOCAB, stop_token_ids=[EOS])
    compiled = xgr.GrammarCompiler(info).compile_grammar('root ::= "|" ("a~~~" | "b") ("a" | "b") "|"')
    model = FakeModel(2, 5, ["a", "b"])
    out = decode(model.forward, model.keep_rows, [PROMPT] * 5, 2, compiled=compiled, tokenizer=FakeTokenizer(),
                 token_texts=VOCAB, stop_ids=[EOS], pad_id=PAD, max_tokens=20, temperature=0.0, top_p=1.0)
    texts = ["".join(VOCAB[t] for t in tokens if t != EOS) for tokens, _ in out]
    assert texts == ["|a~~~a|", "|bb|"]
    a, b, tilde2, tilde = (VOCAB.index(t) for t in ("a", "b", "~~", "~"))
    assert model.calls[1] == [[a, tilde2, tilde], [b, PAD, PAD]]    # row 0's forced "~~~" rides with its choice
    assert model.unmasked == 1 and len(model.calls) == 2


def test_top_nucleus_keeps_what_a_sort_keeps():
    """The nucleus found from the k largest logits is the one transformers' TopPLogitsWarper finds by sorting the
    vocabulary (the tokens whose ascending cumulative probability exceeds 1 - top_p), masked logits and all."""
    from llmnas_local.llm.guarded_decoding import top_nucleus

    gen = torch.Generator().manual_seed(0)
    for trial in range(40):
        logits = torch.randn(3, 500, generator=gen) * (1 + trial % 4)
        if trial % 2:
            logits[torch.rand(3, 500, generator=gen) < 0.9] = float("-inf")     # a grammar's mask
        for top_p in (0.5, 0.9, 0.95, 1.0):
            ordered, order = torch.sort(logits, dim=-1)
            tail = torch.softmax(ordered, dim=-1).cumsum(dim=-1) <= 1 - top_p
            tail[:, -1] = False
            expected = [set(order[r][~tail[r] & torch.isfinite(ordered[r])].tolist()) for r in range(3)]
            values, ids = top_nucleus(logits, top_p)
            got = [set(ids[r][torch.isfinite(values[r])].tolist()) for r in range(3)]
            assert got == expected, (trial, top_p)
            assert torch.equal(values[torch.isfinite(values)], logits.gather(1, ids)[torch.isfinite(values)])


def test_grammar_mask_matches_the_matchers_and_falls_back_from_triton():
    """The bitmask of several rows, filled together, masks what each matcher forbids; where Triton cannot run (here:
    logits on the CPU), the torch kernel takes over for good."""
    from llmnas_local.llm.jump_forward import GrammarMask

    info = xgr.TokenizerInfo(VOCAB, stop_token_ids=[EOS])
    compiled = xgr.GrammarCompiler(info).compile_grammar(GRAMMAR)
    first, second = xgr.GrammarMatcher(compiled), xgr.GrammarMatcher(compiled)
    assert second.accept_token(VOCAB.index("|")) and second.accept_token(VOCAB.index("b"))
    for backend in ("cpu", "triton"):
        mask = GrammarMask("cpu")
        mask.backend = backend
        scores = torch.zeros(2, len(VOCAB))
        mask.apply(scores, [first, second])
        allowed = [[VOCAB[t] for t in range(len(VOCAB)) if scores[r, t] == 0] for r in range(2)]
        assert allowed == [["|"], ["a", "b"]], backend
        assert mask.backend == ("cpu" if backend == "cpu" else "torch_native")
