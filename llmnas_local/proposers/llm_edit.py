"""``llm-edit``: regularized evolution in which the model chooses the edit.

The backbone is :class:`~llmnas_local.proposers.evolution.EvolutionProposer`'s: an ageing population of the last
``population`` completed evaluations, tournament selection, random members until the population is full (the same
draws as evolution's, so a seed's warm-up is evolution's). Each child is then made one of two ways:

- with probability ``epsilon``, evolution's own uniform one-element mutation, so the proposer's worst case stays
  close to evolution's;
- otherwise the tournament's winner is shown to the model part by part (the space's named slots: nb201's six edges,
  the keys of each cnn section) with the edit memory, and the model chooses the edit -- its answer is
  ``weak part: <slot>`` then ``new value: <value>`` -- among only the edits giving a valid child the run has not
  evaluated: by calibrated scores (``choice="calibrated"``, the default: :mod:`llmnas_local.proposers.edit_choice`)
  or by decoding under a grammar of the allowed answers (``choice="sample"``). The embedded 135M model's raw
  preferences are anti-correlated with a child's accuracy; calibrated, they carry signal
  (benchmarks/bench_edit_scores.py).

The memory (:mod:`llmnas_local.memory.edits`) is the method's diagnostic triple at the level of edits -- the part the
model named as weak (problem), its new value (modification), the child's change in validation accuracy against its
parent (outcome) -- for the last ``window`` edits, plus each slot's record in this run. ``window=0, slot_stats=False``
is the same proposer with no memory.
"""
from __future__ import annotations

import dataclasses
import json
import random
import re
import time
from typing import Any, TYPE_CHECKING

from llmnas_local.dsl import SemanticError
from llmnas_local.dsl.sampler import sample_within
from llmnas_local.llm.base import Constraint
from llmnas_local.memory.edits import EditMemory
from llmnas_local.prompts import PromptContext, editor_messages
from llmnas_local.proposers.base import Proposal
from llmnas_local.proposers.llm_base import BaseLLMProposer
from llmnas_local.proposers.evolution import EvolutionProposer, check_tournament, tournament_winner
from llmnas_local.proposers.edit_choice import NEW_VALUE, WEAK_PART, CalibratedChooser, answer_text
from llmnas_local.records import VAL_ACC, LLMCall

if TYPE_CHECKING:  # the search package imports the proposers: no import cycle at run time
    from llmnas_local.search.history import HistoryView

_ANSWER = re.compile(re.escape(WEAK_PART) + r"(\S+)" + re.escape(NEW_VALUE) + r"(\S+)")
CHOICES = ("calibrated", "sample")


@dataclasses.dataclass(frozen=True)
class LLMEditConfig:
    """Settings of ``llm-edit``. All are part of the run's identity.

    The defaults are the best measured (benchmarks/grids/nb201-llm-edit-*.toml, 20 seeds x 100 on NAS-Bench-201):
    without memory it beats evolution at 100 queries on CIFAR-10 and CIFAR-100; with K = 5 edits and the slot
    records it only ties evolution and is worse than without on CIFAR-10. ``window=5, slot_stats=True`` turns the
    memory on."""

    population: int = 10
    tournament: int = 3
    epsilon: float = 0.5            # share of children made by evolution's random mutation instead of the model
    window: int = 0                 # K: last edits shown (the diagnostic triples); 0, the measured best: no memory
    slot_stats: bool = False        # each slot's record in this run
    hints: bool = False             # the space's domain hints in the description (benchmark knowledge: off)
    choice: str = "calibrated"      # "calibrated": rank the allowed edits by calibrated score; "sample": decode one
    temperature: float = 0.0        # calibrated: 0 takes the best, > 0 draws from softmax(score / T); sample: decoding
    top_p: float = 0.95             # "sample" only
    candidates: int = 1             # edits per call, without replacement
    max_tokens: int = 48            # "sample" only

    def __post_init__(self) -> None:
        check_tournament(self.population, self.tournament)
        if not 0.0 <= self.epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {self.epsilon}")
        if self.window < 0 or self.candidates < 1:
            raise ValueError("window must be >= 0 and candidates >= 1")
        if self.choice not in CHOICES:
            raise ValueError(f"choice must be one of {', '.join(CHOICES)}, got {self.choice!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")


def check_backend(config: LLMEditConfig, backend) -> None:
    """Reject a choice the backend (an instance, or its class before a model is loaded) cannot make."""
    if config.choice == "calibrated" and not backend.scores_continuations:
        raise ValueError(f"llm-edit's choice 'calibrated' needs a backend that scores continuations "
                         f"(transformers), not {backend.name}: use choice 'sample'")


class LLMEditProposer(BaseLLMProposer):
    name = "llm-edit"
    MAX_REDRAWS = 50     # tournaments tried for a parent with an allowed edit

    def __init__(self, backend, config: LLMEditConfig = LLMEditConfig(), model_name: str | None = None):
        super().__init__(backend, model_name)
        self.config = config
        self.memory = EditMemory(config.window, config.slot_stats)
        self._evolution = EvolutionProposer(config.population, config.tournament)
        self._facts: dict[Any, str | None] = {}      # child spec -> its hash, or None if it fails the checks
        check_backend(config, backend)
        self._chooser = CalibratedChooser(backend, config.temperature) if config.choice == "calibrated" else None

    def settings(self) -> dict[str, Any]:
        s = dataclasses.asdict(self.config)
        if s["choice"] == "sample":
            del s["choice"]          # the first form of the proposer: runs stored before the setting keep their id
        s["backend"], s["model"], s["tournament_draw"] = self.backend.name, self.model_name, "with_replacement"
        return s

    def propose(self, history: HistoryView, n: int, rng: random.Random) -> list[Proposal]:
        alive = history.completed[-self.config.population:]
        if len(alive) < self.config.population:            # warm-up: evolution's random members, same draws
            return [Proposal(self._member(history, rng)) for _ in range(n)]
        if rng.random() < self.config.epsilon:
            return [self._evolution.offspring(history, alive, rng)]
        parent, edits = self._parent_and_edits(history, alive, rng)
        if parent is None:                                  # every tried parent's children are known: evolution's walk
            return [self._evolution.offspring(history, alive, rng)]
        return self._ask_model(history, parent, edits, rng)

    def _member(self, history: HistoryView, rng: random.Random) -> str:
        """A random member: evolution's warm-up draw (:func:`~llmnas_local.dsl.sampler.sample_within`: within the
        caps where the space has a cost model, cnn; the plain draw on nb201), so a seed's warm-up pairs with
        evolution's."""
        return sample_within(history.space, history.constraints, rng)

    # -- the model's edit -------------------------------------------------------------------------------------------
    def _ask_model(self, history: HistoryView, parent, edits: dict, rng: random.Random) -> list[Proposal]:
        t0 = time.perf_counter()
        space, caps = history.space, history.constraints
        slots = space.slots(space.parse(parent.raw))
        made = self.memory.edits(history) if self.memory.enabled else []
        ctx = PromptContext(task=history.task, description=space.describe(self.config.hints),
                            examples=(), elites=(), triples=(), max_params_m=caps.max_params_m,
                            max_flops_m=caps.max_flops_m)
        messages = editor_messages(ctx, parent.metrics[VAL_ACC],
                                   [f"{s.name} ({s.label}) = {s.value}" for s in slots],
                                   tuple(self.memory.by_slot(made)), tuple(self.memory.recent(made)))
        if self._chooser is not None:
            return self._choose_calibrated(space, ctx, slots, messages, parent, edits, rng, t0)
        seed = rng.randrange(2**31)
        call_id = str(rng.randrange(2**62))      # drawn after the seed, as the records before call ids were
        labels = {s.name: s for s in slots}

        def read(c) -> tuple[str, dict[str, Any]]:
            m = _ANSWER.fullmatch(c.text.strip())
            child = edits.get((m.group(1), m.group(2))) if m else None
            if child is None:    # cut off or malformed: recorded as an invalid proposal with the model's text
                return c.text.strip(), {}
            slot, value = m.group(1), m.group(2)
            return space.format(child), {"extra": {"edit": {"slot": slot, "value": value}},
                                         "diagnosis": _diagnosis(labels[slot], value)}

        return self.ask(messages, Constraint(grammar=edit_grammar(edits)), t0=t0, parent_hash=parent.arch_hash,
                        call={"temperature": self.config.temperature}, read=read, call_id=call_id,
                        n=self.config.candidates, max_tokens=self.config.max_tokens,
                        temperature=self.config.temperature, top_p=self.config.top_p, seed=seed,
                        distinct=self.config.candidates > 1 and self.backend.samples_distinct)

    def _choose_calibrated(self, space, ctx, slots, messages, parent, edits: dict, rng: random.Random,
                           t0: float) -> list[Proposal]:
        keys = list(edits)
        chosen, scores, calibrated = self._chooser.choose(ctx, slots, messages, keys, self.config.candidates, rng)
        labels = {s.name: s for s in slots}
        call = LLMCall(call_id=str(rng.randrange(2**62)), backend=self.backend.name, model=self.model_name,
                       temperature=self.config.temperature, prompt=json.dumps(messages, ensure_ascii=False),
                       tokens_in=scores.tokens_in, gen_s=scores.gen_s, finish_reason="scored")
        share = (time.perf_counter() - t0) / len(chosen)
        out = []
        for i in chosen:
            slot, value = keys[i]
            llm = dataclasses.replace(
                call, raw_output=answer_text(slot, value),
                diagnosis=_diagnosis(labels[slot], value),
                extra={"edit": {"slot": slot, "value": value}, "choice": "calibrated", "options": len(keys),
                       "score": round(scores.values[i], 4), "calibrated_score": round(calibrated[i], 4)})
            out.append(Proposal(space.format(edits[keys[i]]), parent_hash=parent.arch_hash, llm=llm, propose_s=share))
        return out

    def _parent_and_edits(self, history: HistoryView, alive, rng: random.Random):
        """The tournament's winner and its allowed edits ``{(slot, value): child spec}``: children that pass the
        space's checks and caps and that the run has not evaluated. A parent with none is replaced by a fresh
        tournament, ``MAX_REDRAWS`` times; then ``(None, {})``."""
        space = history.space
        guard = space.prefix_guard(history.constraints)
        for _ in range(self.MAX_REDRAWS):
            parent = tournament_winner(alive, self.config.tournament, rng, history.objective)
            slots = space.slots(space.parse(parent.raw))
            if slots is None:
                raise ValueError(f"llm-edit needs a space with named slots; {space.name} has none")
            edits = {}
            for slot in slots:
                for value, child in slot.options:
                    arch_hash = self._fact(space, history.constraints, guard, child)
                    if arch_hash is not None and not history.is_known(arch_hash):
                        edits[(slot.name, value)] = child
            if edits:
                return parent, edits
        return None, {}

    def _fact(self, space, constraints, guard, spec) -> str | None:
        if spec not in self._facts:
            try:
                space.check(spec, constraints)
                ok = guard is None or guard(space.format(spec))
            except SemanticError:
                ok = False
            self._facts[spec] = space.arch_hash(spec) if ok else None
        return self._facts[spec]


def _diagnosis(slot, value: str) -> dict[str, str]:
    """The diagnostic triple's problem (the part named as weak, with its value) and modification (its new value)."""
    return {"problem": f"{slot.name} ({slot.label}) = {slot.value}", "modification": f"{slot.name} -> {value}"}


def edit_grammar(edits: dict[tuple[str, str], Any]) -> str:
    """EBNF of the answers ``weak part: <slot>\\nnew value: <value>`` for exactly the allowed ``(slot, value)``
    pairs (``edits``' keys, slots in their first order)."""
    values: dict[str, list[str]] = {}
    for slot, value in edits:
        values.setdefault(slot, []).append(value)
    new_value = json.dumps(NEW_VALUE)        # an EBNF string literal: the newline escaped
    alternatives = [f'"{slot}" {new_value} (' + " | ".join(f'"{v}"' for v in vs) + ")" for slot, vs in values.items()]
    return f"root ::= {json.dumps(WEAK_PART)} (\n    " + "\n  | ".join(alternatives) + "\n)\n"
