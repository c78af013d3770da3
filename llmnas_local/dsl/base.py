"""Search spaces: the contract every space implements (the registry that names them is :mod:`.registry`).

A space owns its language end to end: the EBNF grammar (package data, the only definition of the language), a strict
parser into frozen spec dataclasses, the canonical text and hash, semantic checks, a prompt description with examples,
one-element mutations (for evolution), and it names the builder that turns a spec into a PyTorch model. The builders
(:mod:`llmnas_local.builder`) read the specs: they import the dsl, never the reverse, and a space finds its builder by
name when it builds (so importing a space stays cheap, without torch).
"""
from __future__ import annotations

import abc
import dataclasses
import functools
import hashlib
import importlib
import importlib.resources
import random
import typing
from typing import Any, Callable

if typing.TYPE_CHECKING:  # torch is heavy: importing a space must stay cheap
    import torch.nn as nn


class DslError(ValueError):
    """A string outside the space's language. The message is one line and names the position and what was expected."""

    def __init__(self, text: str, pos: int, expected: str):
        self.text, self.pos, self.expected = text, pos, expected
        found = repr(text[pos:pos + 12]) if pos < len(text) else "end of input"
        super().__init__(f"at position {pos}: expected {expected}, found {found}")


class SemanticError(ValueError):
    """A string in the language that describes a network that cannot or must not be built. One-line reason."""


@dataclasses.dataclass(frozen=True)
class Constraints:
    """What a proposal must satisfy before it is evaluated: the task's shape and the user's caps."""

    num_classes: int = 10
    in_chans: int = 3
    input_size: int = 32
    max_params_m: float | None = None
    max_flops_m: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Slot:
    """A named part of a design that a one-element edit changes (nb201: an edge; cnn: one key of one section).

    ``name`` is what a model writes (``e4``, ``s2.k``), ``label`` what the part is (``edge 3<-0``), ``value`` its
    value as written, ``options`` every other value with the child spec it gives, in the language's order."""

    name: str
    label: str
    value: str
    options: tuple[tuple[str, Any], ...]


class BaseSpace(abc.ABC):
    """A search space. Subclasses set ``name`` and ``grammar_file``, implement the abstract methods, and either name
    their ``builder`` or override :meth:`build`."""

    name: str = ""
    grammar_file: str = ""
    builder: str = ""                   # "module:function" of (spec, num_classes, in_chans, input_size) -> nn.Module
    tabular: bool = False               # evaluated by a look-up in a benchmark table, not by training
    literal_space: str | None = None    # the registered variant whose canonical form is the spec as written (every
                                        # string its own architecture), for protocols that count queries that way

    # -- language -----------------------------------------------------------------------------------------------
    def grammar(self) -> str:
        """The EBNF text (xgrammar / vLLM structured-outputs dialect, root rule ``root``)."""
        return _read_grammar(self.grammar_file)

    @abc.abstractmethod
    def parse(self, text: str) -> Any:
        """Parse ``text`` into a frozen spec. Accepts exactly the grammar's language; raises :class:`DslError`."""

    @abc.abstractmethod
    def format(self, spec: Any) -> str:
        """The DSL text of a spec, as written (no canonicalisation)."""

    @abc.abstractmethod
    def canonicalize(self, spec: Any) -> Any:
        """The canonical spec: every spec that describes the same network maps to the same canonical spec."""

    def canonical(self, spec: Any) -> str:
        """The canonical text of a spec; it is in the language and parses back to the canonical spec."""
        return self.format(self.canonicalize(spec))

    def arch_hash(self, spec: Any) -> str:
        """``sha256(space name + canonical text)``, hex."""
        return self.hash_canonical(self.canonical(spec))

    def hash_canonical(self, canonical_text: str) -> str:
        """The architecture hash of a canonical text (what :meth:`arch_hash` computes after canonicalising)."""
        return hashlib.sha256((self.name + "\n" + canonical_text).encode()).hexdigest()

    # -- meaning ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def check(self, spec: Any, constraints: Constraints) -> None:
        """Raise :class:`SemanticError` with a one-line reason if the spec must not be built under ``constraints``.

        Structural checks only (stride vs resolution, divisibility); caps on parameters and FLOPs are checked on the
        built model by :func:`llmnas_local.builder.check_caps`.
        """

    def build(self, spec: Any, num_classes: int, in_chans: int, input_size: int) -> "nn.Module":
        """Build the network from timm's blocks and layers: by default the function ``builder`` names."""
        if not self.builder:
            raise NotImplementedError(f"space {self.name!r} names no builder")
        module, _, function = self.builder.partition(":")
        build = getattr(importlib.import_module(module), function)
        return build(spec, num_classes=num_classes, in_chans=in_chans, input_size=input_size)

    @abc.abstractmethod
    def mutate(self, spec: Any, rng: random.Random) -> Any:
        """A spec that differs from ``spec`` in exactly one element (one edge, one key of one stage...)."""

    def neighbour_grammar(self, spec: Any, allowed: Callable[[Any], bool] | None = None) -> str | None:
        """The grammar of the specs :meth:`mutate` can draw from ``spec`` (one element changed) that ``allowed``
        accepts (e.g. those the run has not evaluated), for a model used as the mutation operator: it chooses which
        element and what to, and cannot copy the parent. ``None`` where the space has no such grammar (the caller then
        uses :meth:`grammar`) or where ``allowed`` leaves no child."""
        return None

    def slots(self, spec: Any) -> list[Slot] | None:
        """The named parts of ``spec`` and their one-element edits, for a model that edits a design part by part
        (``llm-edit``). ``None`` where the space has none."""
        return None

    def subset_grammar(self, allowed: Callable[[Any], bool]) -> str | None:
        """The grammar of the space's strings whose spec ``allowed`` accepts (e.g. valid and not yet evaluated), so
        that decoding cannot repeat what a run knows. ``None`` where the space cannot enumerate its specs (the caller
        then uses :meth:`grammar`) or where ``allowed`` accepts none."""
        return None

    def prefix_guard(self, constraints: Constraints) -> Callable[[str], bool] | None:
        """A predicate on partial DSL text for constrained decoding: False once no completion of the text can pass
        :meth:`check` and the caps of ``constraints``, so a decoder can mask such tokens as it masks those the grammar
        forbids. ``None`` where the space has none."""
        return None

    # -- prompts ------------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def describe(self, hints: bool = False) -> str:
        """A short, plain description of the language for prompts. ``hints=True`` adds what the space's author
        believes about good designs (domain knowledge that may come from a benchmark): an explicit setting of the
        proposers, recorded with each run, never on by default."""

    @abc.abstractmethod
    def examples(self) -> list[str]:
        """A few valid strings for documentation (never chosen for their accuracy)."""

    def prompt_examples(self, seed: int, k: int = 4) -> list[str]:
        """``k`` strings drawn from the space's sampler with a run's seed: what prompts show as examples of the
        language, so no run is anchored on hand-picked designs."""
        rng = random.Random(f"prompt-examples:{seed}")
        return [self.sample(rng) for _ in range(k)]

    def sample(self, rng: random.Random) -> str:
        """A string drawn from the grammar (grammar-driven, so it covers the whole language)."""
        return _grammar_sampler(self.grammar_file).sample(rng)


@functools.lru_cache(maxsize=None)
def _read_grammar(filename: str) -> str:
    return importlib.resources.files("llmnas_local.dsl").joinpath("grammars", filename).read_text()


@functools.lru_cache(maxsize=None)
def _grammar_sampler(filename: str):
    """One sampler per grammar: random search calls ``sample`` once per proposal."""
    from llmnas_local.dsl.sampler import GrammarSampler

    return GrammarSampler(_read_grammar(filename))
