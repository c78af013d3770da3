"""The evaluator contract: an evaluator scores one architecture under one fixed recipe and returns an Outcome."""
from __future__ import annotations

import abc
import hashlib
import json
from typing import Any

from llmnas_local.dsl.base import BaseSpace, Constraints
from llmnas_local.records import TIME_LIMIT_S, Outcome, TrialStatus

MAX_ATTEMPTS = 3     # evaluations of one (arch, recipe) whose process was killed or could not start, at most


def recipe_hash(recipe: dict[str, Any]) -> str:
    """sha256 of the recipe's canonical JSON. Every field that can change a result must be in the recipe."""
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class BaseEvaluator(abc.ABC):
    """Scores architectures. ``recipe()`` lists everything that changes a result (data set and split, seed, epochs,
    optimiser, resolution, benchmark table and fidelity...): outcomes are keyed by ``(arch_hash, recipe_hash)``.

    ``evaluate`` never raises for a bad architecture: exceptions, NaN losses, time-outs and out-of-memory kills come
    back as an :class:`Outcome` with the matching status and a one-line reason.
    """

    name: str = ""
    time_limit_s: float | None = None      # wall-time limit of one evaluation, for evaluators that have one
    max_attempts: int = MAX_ATTEMPTS

    def __init__(self, constraints: Constraints):
        self.constraints = constraints

    @abc.abstractmethod
    def recipe(self) -> dict[str, Any]: ...

    def recipe_hash(self) -> str:
        return recipe_hash(self.recipe())

    @abc.abstractmethod
    def precheck(self, space: BaseSpace, spec: Any) -> dict[str, float]:
        """Cheap checks before evaluation: ``space.check`` and the caps on parameters/FLOPs. Raises SemanticError.

        Returns the metrics it measured on the way (e.g. ``params_m``, ``flops_m``).
        """

    @abc.abstractmethod
    def evaluate(self, space: BaseSpace, spec: Any) -> Outcome: ...

    def retryable(self, outcome: Outcome, attempts: int) -> bool:
        """Whether a stored outcome is worth another evaluation under this evaluator's settings, after ``attempts``
        evaluations with a transient outcome: a FAILED whose process was killed, died or could not start, up to
        ``max_attempts`` in all; a TIMEOUT when ``time_limit_s`` is longer than the limit it ran under (unknown for
        records older than ``TIME_LIMIT_S``: retried). Final outcomes (complete, an exception, a diverged loss) never
        are."""
        if not outcome.transient:
            return False
        if outcome.status is TrialStatus.TIMEOUT:
            return self.time_limit_s is not None and self.time_limit_s > outcome.timings.get(TIME_LIMIT_S, 0.0)
        return attempts < self.max_attempts

    def abort(self) -> None:
        """Stop the evaluations in flight in other threads at once (Ctrl-C, a fatal error): their outcomes are to be
        dropped, and no evaluation follows but ``close``. Default: nothing to stop."""

    def describe_task(self) -> str:
        """One line for prompts: what is classified and how candidates are scored. Subclasses say more."""
        c = self.constraints
        return f"classify {c.in_chans}x{c.input_size}x{c.input_size} images into {c.num_classes} classes"

    def close(self) -> None:
        """Release workers and caches."""
