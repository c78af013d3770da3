"""How ``llm-edit`` lets the model choose among allowed edits by calibrated scores (``choice="calibrated"``).

Every allowed answer ``weak part: <slot>\\nnew value: <value>`` is scored by the model's log-probability after the
prompt, in one batched pass, minus the same answer's log-probability after a *content-free* prompt: the same
template with the parent's values hidden and no memory (contextual calibration, Zhao et al. 2021, "Calibrate Before
Use"). What is left is what the parent and the memory change in the model's preferences, not its fixed liking for a
slot or a word. The embedded 135M model's raw scores are anti-correlated with a child's accuracy; calibrated, they are
positively correlated (benchmarks/bench_edit_scores.py, on tuning seeds).
"""
from __future__ import annotations

import math
import random
from typing import Any, Sequence

from llmnas_local.dsl.base import Slot
from llmnas_local.llm.base import Scores
from llmnas_local.prompts import PromptContext, editor_messages


WEAK_PART, NEW_VALUE = "weak part: ", "\nnew value: "    # the answer's two fields, in this order


def answer_text(slot: str, value: str) -> str:
    """The model's answer naming an edit (what ``llm_edit.edit_grammar`` admits)."""
    return f"{WEAK_PART}{slot}{NEW_VALUE}{value}"


class CalibratedChooser:
    """Scores a call's allowed edits and picks ``k`` of them; keeps the content-free scores of each slot layout."""

    def __init__(self, backend, temperature: float = 0.0):
        self.backend, self.temperature = backend, temperature
        self._free: dict[Any, dict[tuple[str, str], float]] = {}

    def free_scores(self, ctx: PromptContext, slots: Sequence[Slot]) -> dict[tuple[str, str], float]:
        """The content-free score of every (slot, value) of this layout, computed once per layout and task."""
        layout = (ctx.task, ctx.description, tuple((s.name, s.label) for s in slots))
        if layout not in self._free:
            keys = [(s.name, v) for s in slots for v in [s.value, *(v for v, _ in s.options)]]
            messages = editor_messages(ctx, None, [f"{s.name} ({s.label}) = ?" for s in slots])
            scores = self.backend.score(messages, [answer_text(*k) for k in keys])
            self._free[layout] = dict(zip(keys, scores.values))
        return self._free[layout]

    def choose(self, ctx: PromptContext, slots: Sequence[Slot], messages, keys: list[tuple[str, str]], k: int,
               rng: random.Random) -> tuple[list[int], Scores, list[float]]:
        """Indices of ``k`` chosen keys (without replacement), the raw scores and the calibrated ones. Temperature 0:
        the best calibrated (ties: the first offered); else drawn from softmax(calibrated / temperature)."""
        scores = self.backend.score(messages, [answer_text(*key) for key in keys])
        free = self.free_scores(ctx, slots)
        calibrated = [raw - free[key] for raw, key in zip(scores.values, keys)]
        left, chosen = list(range(len(keys))), []
        for _ in range(min(k, len(keys))):
            if self.temperature == 0:
                pick = max(left, key=lambda i: (calibrated[i], -i))
            else:
                top = max(calibrated[i] for i in left)
                pick = rng.choices(left, [math.exp((calibrated[i] - top) / self.temperature) for i in left])[0]
            chosen.append(pick)
            left.remove(pick)
        return chosen, scores, calibrated
