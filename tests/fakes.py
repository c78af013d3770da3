"""Fakes shared by the tests: an evaluator that scores without training, a proposer that says what it is told, and a
"model" that samples its constraint's grammar. Import them from here (test modules do not import each other)."""
from __future__ import annotations

import hashlib
import random
import threading

from llmnas_local.dsl import Constraints
from llmnas_local.dsl.sampler import GrammarSampler
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.llm.base import BaseBackend, Completion, Generation
from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import VAL_ACC, Outcome, TrialStatus

RESNET_CELL = "|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|skip_connect~2|"


class FakeScoreEvaluator(BaseEvaluator):
    """Scores a cell by a hash of its text; counts its calls. No training, no table."""

    name = "fake-score"

    def __init__(self):
        super().__init__(Constraints())
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def recipe(self):
        return {"fake": 1}

    def precheck(self, space, spec):
        space.check(spec, self.constraints)
        return {}

    def evaluate(self, space, spec):
        text = space.format(spec)
        with self.lock:
            self.calls.append(text)
        score = int(hashlib.sha256(text.encode()).hexdigest()[:6], 16) % 10000 / 100
        return Outcome(TrialStatus.COMPLETE, {VAL_ACC: score})


class ScriptedProposer(BaseProposer):
    """Proposes the given texts in order (a fake for loop tests)."""

    name = "scripted"

    def __init__(self, texts):
        self.texts = list(texts)

    def propose(self, history, n, rng):
        return [Proposal(self.texts.pop(0))]


class FakeMutatorBackend(BaseBackend):
    """A grammar-constrained "model" that samples the constraint's grammar uniformly; records prompts and grammars."""

    name = "fake"

    def __init__(self, model: str = "fake-mutator"):
        super().__init__(model)
        self.prompts, self.grammars = [], []

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        self.prompts.extend(prompts)
        self.grammars.append(constraint.grammar)
        sampler, rng = GrammarSampler(constraint.grammar), random.Random(seed)
        return [Generation([Completion(sampler.sample(rng), 30, "stop") for _ in range(n)], 150, 0.1)]
