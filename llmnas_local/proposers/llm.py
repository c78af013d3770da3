"""The LLM proposer: a local open-weight model proposes architectures under the space's grammar, guided by a
feedback memory built from the run's history.

Two roles, as in the method (arXiv 2603.12091): the *improver* reads the memory and writes a diagnosis
``{problem, modification}`` as JSON under a schema; the *generator* writes DSL strings under the grammar, given that
diagnosis. Each part is a switch for ablations (improver on/off, memory window K, elites on/off). One generator call
asks for several candidates. Where the space can write the grammar of its unevaluated valid architectures (nb201),
decoding is constrained to it, so a call never repeats a cell the run knows (``unseen_only``); elsewhere the search
loop answers repeats from the store and the memory shows them to the model as "already evaluated". With ``distinct``,
the candidates of a call are drawn without replacement, so they do not repeat each other either.
"""
from __future__ import annotations

import dataclasses
import json
import random
import time
from typing import Any, TYPE_CHECKING

from llmnas_local.dsl import SemanticError
from llmnas_local.llm.base import Constraint
from llmnas_local.memory.feedback import FeedbackMemory
from llmnas_local.prompts import PromptContext, generator_messages, improver_messages
from llmnas_local.proposers.base import Proposal
from llmnas_local.proposers.llm_base import BaseLLMProposer
from llmnas_local.records import TrialStatus

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView

DIAGNOSIS_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"problem": {"type": "string", "maxLength": 240},
                   "modification": {"type": "string", "maxLength": 240}},
    "required": ["problem", "modification"],
    "additionalProperties": False,
}


@dataclasses.dataclass(frozen=True)
class LLMProposerConfig:
    """Settings of the LLM proposer. Every field changes what it proposes, so all are part of the run's identity."""

    candidates: int = 4             # completions per generator call
    window: int = 5                 # K: diagnostic triples in the prompt (0 = no memory)
    elites: int = 5                 # best designs in the prompt (0 = elites off)
    improver: bool = True           # the diagnosis role on/off
    unseen_only: bool = True        # decode under the grammar of the valid architectures the run has not evaluated,
                                    # where the space can write one (nb201): no call is spent on a known cell
    temperature: float = 0.8
    top_p: float = 0.95
    max_tokens: int = 256           # one architecture string: the cnn grammar bounds it to 219 characters
    improver_max_tokens: int = 200
    heat_per_repeat: float = 0.1    # temperature added per trailing duplicate in the history (a small model that
    max_temperature: float = 1.5    # keeps copying the best design is pushed to explore; derived from the history)
    distinct: bool = False          # a call's candidates sampled without replacement (stochastic beam search), so
                                    # none repeats another; backends with samples_distinct (transformers)
    hints: bool = False             # the space's domain hints in its description (benchmark knowledge: off)

    def __post_init__(self) -> None:
        if self.candidates < 1:
            raise ValueError("candidates must be >= 1")
        if self.window < 0 or self.elites < 0:
            raise ValueError("memory window and elites must be >= 0")


def check_backend(config: LLMProposerConfig, backend) -> None:
    """Reject settings a backend (an instance, or its class before a model is loaded) cannot honour."""
    if config.distinct and not backend.samples_distinct:
        raise ValueError(f"distinct candidates need a backend that samples without replacement (transformers), "
                         f"not {backend.name}")


def heated_temperature(history: HistoryView, base: float, per_repeat: float, ceiling: float) -> float:
    """``base`` raised by ``per_repeat`` for every duplicate at the end of the history, up to ``ceiling``."""
    repeats = 0
    for t in reversed(history.recent(50)):
        if t.status is not TrialStatus.DUPLICATE:
            break
        repeats += 1
    return round(min(max(base + per_repeat * repeats, base), ceiling), 3)


def dsl_constraint(history: HistoryView, grammar: str | None = None) -> Constraint:
    """What a generator call decodes under: the space's grammar (or ``grammar``) and its prefix guard for the task's
    constraints (caps on parameters and FLOPs...), which backends with ``enforces_prefix_guard`` apply token by
    token; the architecture's canonical hash is what makes two outputs one design (for distinct candidates)."""
    space = history.space
    return Constraint(grammar=grammar or space.grammar(), prefix_guard=space.prefix_guard(history.constraints),
                      identity=lambda text: space.arch_hash(space.parse(text)))


def unseen_grammar(history: HistoryView, facts: dict[Any, str | None] | None = None) -> str | None:
    """The grammar of the architectures a run may still propose -- those that pass the space's checks under the task's
    constraints and that the run has not evaluated -- or None where the space cannot write one (the caller then uses
    the space's grammar) or none is left.

    ``facts`` (spec -> its hash, or None where it fails the checks) is filled as specs are met and read on later calls:
    neither changes within a run, and hashing every nb201 cell is most of the work (about 0.3 s a call).
    """
    space, constraints = history.space, history.constraints
    facts = {} if facts is None else facts

    def hash_if_valid(spec) -> str | None:
        try:
            space.check(spec, constraints)
        except SemanticError:
            return None
        return space.arch_hash(spec)

    def fresh(spec) -> bool:
        if spec not in facts:
            facts[spec] = hash_if_valid(spec)
        arch_hash = facts[spec]
        return arch_hash is not None and not history.is_known(arch_hash)

    return space.subset_grammar(fresh)


def guard_record(backend, constraint: Constraint) -> dict[str, bool]:
    """For each trial's record: whether decoding enforced a prefix guard."""
    return {"prefix_guard": constraint.prefix_guard is not None and backend.enforces_prefix_guard}


class LLMProposer(BaseLLMProposer):
    name = "llm"

    def __init__(self, backend, config: LLMProposerConfig = LLMProposerConfig(), improver_backend=None,
                 model_name: str | None = None):
        check_backend(config, backend)
        super().__init__(backend, model_name)    # the model as the user named it: part of the run's identity
        self.improver_backend = improver_backend or backend
        self.config = config
        self.memory = FeedbackMemory(window=config.window, elites=config.elites)
        self._facts: tuple[Any, dict[Any, str | None]] = (None, {})   # (space, constraints) -> unseen_grammar's memo

    def settings(self) -> dict[str, Any]:
        s = dataclasses.asdict(self.config)
        if not s["distinct"]:               # runs stored before the setting existed keep their identity
            del s["distinct"]
        s["backend"], s["model"] = self.backend.name, self.model_name
        if self.improver_backend is not self.backend:
            s["improver_model"] = str(self.improver_backend.model)
        return s

    def context(self, history: HistoryView) -> PromptContext:
        space, c = history.space, history.constraints
        return PromptContext(task=history.task, description=space.describe(self.config.hints),
                             examples=tuple(space.prompt_examples(history.seed)),
                             elites=tuple(self.memory.elites(history)), triples=tuple(self.memory.triples(history)),
                             max_params_m=c.max_params_m, max_flops_m=c.max_flops_m)

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        t0 = time.perf_counter()
        ctx = self.context(history)
        call: dict[str, Any] = {"extra": {}}
        diagnosis = None
        if self.config.improver:
            diagnosis, call = self._diagnose(ctx, rng)
        messages = generator_messages(ctx, diagnosis)
        temperature = self.temperature(history)
        grammar = unseen_grammar(history, self._facts_for(history)) if self.config.unseen_only else None
        constraint = dsl_constraint(history, grammar)
        call.update(temperature=temperature, diagnosis=diagnosis or {}, **guard_record(self.backend, constraint))
        call["extra"]["grammar"] = "unseen" if grammar else "space"
        best = history.best(1)
        return self.ask(messages, constraint, t0=t0, parent_hash=best[0].arch_hash if best else None, call=call,
                        n=max(n, self.config.candidates), max_tokens=self.config.max_tokens, temperature=temperature,
                        top_p=self.config.top_p, seed=rng.randrange(2**31), distinct=self.config.distinct)

    def _facts_for(self, history: HistoryView) -> dict[Any, str | None]:
        """The memo of :func:`unseen_grammar` for this space and these constraints (one per proposer, i.e. per run)."""
        key = (history.space.name, history.constraints)
        if self._facts[0] != key:
            self._facts = (key, {})
        return self._facts[1]

    def temperature(self, history: HistoryView) -> float:
        """The generator's temperature: the configured one, raised by ``heat_per_repeat`` for every duplicate at the
        end of the history, up to ``max_temperature``. A function of the history, so a resumed run continues alike."""
        return heated_temperature(history, self.config.temperature, self.config.heat_per_repeat,
                                  self.config.max_temperature)

    def _diagnose(self, ctx: PromptContext, rng: random.Random) -> tuple[dict[str, str] | None, dict[str, Any]]:
        """One improver call. A malformed answer is recorded and the generator runs without a diagnosis."""
        [gen] = self.improver_backend.generate([improver_messages(ctx)], Constraint(json_schema=DIAGNOSIS_SCHEMA),
                                               n=1, max_tokens=self.config.improver_max_tokens,
                                               temperature=self.config.temperature, top_p=self.config.top_p,
                                               seed=rng.randrange(2**31))
        text = gen.completions[0].text if gen.completions else ""
        meta: dict[str, Any] = {"improver_tokens_in": gen.tokens_in, "improver_s": gen.gen_s, "extra": {},
                                "improver_tokens_out": sum(c.tokens_out for c in gen.completions)}
        try:
            d = json.loads(text)
            return {"problem": str(d["problem"]).strip(), "modification": str(d["modification"]).strip()}, meta
        except (ValueError, KeyError, TypeError):
            meta["extra"]["improver_error"] = f"unparseable diagnosis: {text[:200]!r}"
            return None, meta

    def close(self) -> None:
        super().close()
        if self.improver_backend is not self.backend:
            self.improver_backend.close()
