"""The one interface every LLM backend implements: chat prompts in, constrained completions out, in input order.

A proposer builds chat messages, picks a :class:`Constraint` (the DSL grammar, or a JSON schema for the prompt
improver) and calls :meth:`BaseBackend.generate` once with all its prompts: backends batch them. Nothing here knows
about architectures, and no backend ever reaches the network (the OpenAI backend refuses non-loopback servers unless
told otherwise).
"""
from __future__ import annotations

import abc
import dataclasses
import json
from typing import Any, Callable, Hashable, Mapping, Sequence

Messages = Sequence[Mapping[str, str]]          # one chat: [{"role": "system"|"user"|"assistant", "content": str}, ...]

FINISH_STOP = "stop"      # the model ended the text (EOS, or the grammar reached its end)
FINISH_LENGTH = "length"  # cut off by max_tokens: under a grammar, an unfinished (invalid) string


class BackendError(RuntimeError):
    """A backend failed (model missing, server down, bad grammar, ...). The message is always one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


@dataclasses.dataclass(frozen=True)
class Constraint:
    """What the output must match: exactly one of ``grammar`` (EBNF in xgrammar's dialect, root rule ``root``) or
    ``json_schema`` (a JSON schema as a dict). Bound every repetition in a grammar (``{1,6}``) so that even a weak
    model ends a valid string within ``max_tokens``.

    ``prefix_guard`` (optional, grammar only): a predicate on partial outputs, False once no completion can be valid
    (a search space's :meth:`~llmnas_local.dsl.base.BaseSpace.prefix_guard`: caps on parameters and FLOPs...).
    Backends whose ``enforces_prefix_guard`` is True mask the tokens that fail it; the others decode under the grammar
    alone, and what the guard would have stopped is rejected by the search.

    ``identity`` (optional, grammar only): what makes two complete outputs the same design (a space's canonical hash),
    for ``generate(distinct=True)``, whose completions then differ in it and not only in their text."""

    grammar: str | None = None
    json_schema: dict[str, Any] | None = dataclasses.field(default=None, hash=False)
    prefix_guard: Callable[[str], bool] | None = dataclasses.field(default=None, hash=False, compare=False)
    identity: Callable[[str], Hashable] | None = dataclasses.field(default=None, hash=False, compare=False)

    def __post_init__(self) -> None:
        if (self.grammar is None) == (self.json_schema is None):
            raise ValueError("Constraint takes exactly one of grammar= or json_schema=")
        if self.grammar is not None and (not isinstance(self.grammar, str) or not self.grammar.strip()):
            raise ValueError("Constraint.grammar must be a non-empty EBNF string")
        if self.json_schema is not None and not isinstance(self.json_schema, dict):
            raise ValueError("Constraint.json_schema must be a dict")
        if self.prefix_guard is not None and (self.grammar is None or not callable(self.prefix_guard)):
            raise ValueError("Constraint.prefix_guard must be a callable, and goes with a grammar")
        if self.identity is not None and (self.grammar is None or not callable(self.identity)):
            raise ValueError("Constraint.identity must be a callable, and goes with a grammar")

    @property
    def kind(self) -> str:
        return "grammar" if self.grammar is not None else "json_schema"

    @property
    def key(self) -> str:
        """Canonical text of the constraint: the cache key of compiled grammars."""
        if self.grammar is not None:
            return "grammar:" + self.grammar
        return "json_schema:" + json.dumps(self.json_schema, sort_keys=True, separators=(",", ":"))


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sampled answer. ``tokens_out`` counts the generated tokens (the end token included)."""

    text: str
    tokens_out: int
    finish_reason: str   # FINISH_STOP or FINISH_LENGTH


@dataclasses.dataclass(frozen=True)
class Generation:
    """The ``n`` completions of one prompt. ``gen_s`` is the wall time of the call that produced them (shared by all
    the prompts of one batched call)."""

    completions: list[Completion]
    tokens_in: int
    gen_s: float

    @property
    def texts(self) -> list[str]:
        return [c.text for c in self.completions]

    @property
    def tokens_out(self) -> int:
        return sum(c.tokens_out for c in self.completions)


@dataclasses.dataclass(frozen=True)
class Scores:
    """The log-probabilities of given continuations of one prompt (:meth:`BaseBackend.score`), in input order."""

    values: list[float]
    tokens_in: int
    gen_s: float


class BaseBackend(abc.ABC):
    """A loaded (or connected) model. Subclasses set ``name`` and implement :meth:`_generate`.

    ``generate`` returns one :class:`Generation` per prompt, in input order. Put all the prompts of a step into one
    call: backends batch them. ``temperature``/``top_p`` default to the model's recommended values (``defaults``, from
    the registry) when left as None. ``temperature=0`` is greedy (then the ``n`` completions are identical). A ``seed``
    makes sampling repeatable for the same backend, model, prompts and batch; it never touches global RNG state.
    ``distinct=True`` asks for the ``n`` completions of a prompt without replacement: all different in text, and in
    the constraint's ``identity`` where it has one; fewer than ``n`` only where the constraint admits fewer. Backends
    with ``samples_distinct`` can.
    Backends are context managers; ``close()`` is idempotent.
    """

    name: str = "base"
    enforces_prefix_guard: bool = False    # whether decoding masks the tokens a Constraint.prefix_guard rejects
    samples_distinct: bool = False         # whether generate(distinct=True) works (see _generate_distinct)
    scores_continuations: bool = False     # whether score() works

    def __init__(self, model: str, defaults: Mapping[str, float] | None = None):
        self.model = str(model)
        self.defaults = {"temperature": 0.7, "top_p": 0.95, **dict(defaults or {})}

    def generate(self, prompts: Sequence[Messages], constraint: Constraint | None = None, n: int = 1,
                 max_tokens: int = 256, temperature: float | None = None, top_p: float | None = None,
                 seed: int | None = None, distinct: bool = False) -> list[Generation]:
        prompts = [_check_messages(p, i) for i, p in enumerate(prompts)]
        if constraint is not None and not isinstance(constraint, Constraint):
            raise TypeError(f"constraint must be a Constraint or None, not {type(constraint).__name__}")
        temperature = float(self.defaults["temperature"] if temperature is None else temperature)
        top_p = float(self.defaults["top_p"] if top_p is None else top_p)
        if n < 1 or max_tokens < 1:
            raise ValueError(f"n and max_tokens must be >= 1 (got n={n}, max_tokens={max_tokens})")
        if temperature < 0 or not 0 < top_p <= 1:
            raise ValueError(f"need temperature >= 0 and 0 < top_p <= 1 (got {temperature}, {top_p})")
        if distinct and not self.samples_distinct:
            raise BackendError(f"the {self.name} backend cannot sample distinct completions (distinct=True); "
                               f"the transformers backend can")
        if not prompts:
            return []
        if distinct:
            out = self._generate_distinct(prompts, constraint, n=n, max_tokens=max_tokens, temperature=temperature,
                                          top_p=top_p, seed=seed)
            assert len(out) == len(prompts) and all(
                1 <= len(g.completions) <= n for g in out), "backend broke the contract"
            return out
        out = self._generate(prompts, constraint, n=n, max_tokens=max_tokens, temperature=temperature,
                             top_p=top_p, seed=seed)
        assert len(out) == len(prompts) and all(len(g.completions) == n for g in out), "backend broke the contract"
        return out

    @abc.abstractmethod
    def _generate(self, prompts: list[list[dict[str, str]]], constraint: Constraint | None, *, n: int,
                  max_tokens: int, temperature: float, top_p: float, seed: int | None) -> list[Generation]:
        """Arguments already validated; return one Generation of exactly ``n`` completions per prompt, in order."""

    def _generate_distinct(self, prompts: list[list[dict[str, str]]], constraint: Constraint | None, *, n: int,
                           max_tokens: int, temperature: float, top_p: float, seed: int | None) -> list[Generation]:
        """As :meth:`_generate`, the completions of a prompt all different (at least one, at most ``n``). Backends
        that set ``samples_distinct`` implement it."""
        raise NotImplementedError

    def score(self, messages: Messages, continuations: Sequence[str]) -> Scores:
        """The log-probability of each continuation as the assistant's whole answer to ``messages`` (summed over its
        tokens). Backends with ``scores_continuations`` implement it."""
        raise BackendError(f"the {self.name} backend cannot score continuations; the transformers backend can")

    def close(self) -> None:
        """Release the model / stop the server. Idempotent."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={self.model!r})"


def _check_messages(messages: Messages, index: int) -> list[dict[str, str]]:
    if isinstance(messages, (str, bytes)) or not messages:
        raise ValueError(f"prompt {index} must be a non-empty list of chat messages, got {type(messages).__name__}")
    out = []
    for m in messages:
        if not isinstance(m, Mapping) or not isinstance(m.get("role"), str) or not isinstance(m.get("content"), str):
            raise ValueError(f"prompt {index}: each message needs string 'role' and 'content', got {m!r:.80}")
        out.append({"role": m["role"], "content": m["content"]})
    return out
