"""GuardedGrammarProcessor with a fake grammar processor: which tokens it checks and masks, and its dead-end rule."""
import math

import torch

from llmnas_local.llm.guarded_decoding import GuardedGrammarProcessor, guard_rows

TOKENS = ["a", "b", "c", "d"]


class FakeMatcher:
    def is_terminated(self):
        return False


class FakeGrammar:
    """Allows every token but "d"."""

    def __init__(self, rows):
        self.matchers = [FakeMatcher() for _ in range(rows)]

    def __call__(self, input_ids, scores):
        scores[:, 3] = -math.inf
        return scores


def _run(guard, logits, temperature=1.0, top_p=0.9):
    proc = GuardedGrammarProcessor(FakeGrammar(1), guard, TOKENS, temperature, top_p)
    out = proc(torch.zeros(1, 5, dtype=torch.long), torch.tensor([logits]))
    return out[0].tolist(), proc


def test_tokens_that_fail_the_guard_are_masked_until_the_nucleus_passes():
    checked = []

    def guard(text):
        checked.append(text)
        return text != "a"

    scores, proc = _run(guard, [5.0, 1.0, 0.0, 9.0])
    assert scores[0] == -math.inf and scores[1] == 1.0 and scores[3] == -math.inf
    assert "a" in checked and "d" not in checked and proc.unguarded_rows == 0


def test_greedy_checks_the_argmax_only_until_one_passes():
    checked = []

    def guard(text):
        checked.append(text)
        return text == "c"

    scores, _ = _run(guard, [5.0, 4.0, 3.0, 9.0], temperature=0)
    assert checked == ["a", "b", "c"] and max(range(4), key=scores.__getitem__) == 2


def test_a_dead_end_keeps_the_grammar_mask_and_is_counted():
    scores, proc = _run(lambda text: False, [5.0, 1.0, 0.0, 9.0])
    assert scores[:3] == [5.0, 1.0, 0.0] and scores[3] == -math.inf and proc.unguarded_rows == 1


def test_texts_follow_the_sampled_tokens():
    seen = []
    proc = GuardedGrammarProcessor(FakeGrammar(1), lambda t: seen.append(t) or True, TOKENS, 0, 1.0)
    proc(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    proc(torch.tensor([[0, 0, 1]]), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    assert seen == ["a", "ba"]


def test_rows_are_guarded_together_each_on_its_own_text():
    """A batch: each row's candidates are checked against its own text, a dead end in one row leaves the others
    guarded, and the rows not listed are not checked."""
    seen = []

    def guard(text):
        seen.append(text)
        return text.startswith("x") or text == "yb"

    scores = torch.tensor([[5.0, 1.0, 0.0, -math.inf]] * 4)
    dead = guard_rows(scores, [0, 1, 3], ["x", "y", "w"], guard, TOKENS, 0, 1.0)
    assert scores.argmax(dim=1).tolist()[:2] == [0, 1]          # "xa" passes; "ya" fails, "yb" passes
    assert scores[1, 0] == -math.inf and dead == 1                # row 3: every allowed token fails
    assert scores[2].tolist()[:3] == scores[3].tolist()[:3] == [5.0, 1.0, 0.0]
    assert sorted(seen) == ["wa", "wb", "wc", "xa", "ya", "yb"]
