"""What a search optimises: validation accuracy alone, under budgets on size, or traded against size.

Syntax (``llmnas search --objective``), parsed strictly::

    acc                              validation accuracy (the default)
    acc@params<=1M                   the most accurate model with at most 1 M parameters
    acc@flops<=25M,params<=500K      under several budgets at once
    acc-2*params                     accuracy minus 2 points per million parameters (a weighted trade-off)
    acc-0.1*flops@params<=1M         both: a trade-off under a budget

Metrics: ``params`` (parameters) and ``flops`` (FLOPs per image), both counted in millions; a budget's number takes
an optional suffix ``K``, ``M`` (the default) or ``G``. A weight is in accuracy points per million. No latency is
measured yet, so there is no latency budget.

A trial's rank under an objective is ``(within every budget, score)``, higher first, where the score is the
validation accuracy minus the weighted terms. A trial over a budget (or without the metric a budget names) ranks
below every trial within the budgets, so evolution's tournaments prefer models within budget, and is never
:meth:`HistoryView.best`: "the best model under 1 M parameters" is what a search returns. The objective changes what
the proposers do, so it is part of a run's identity (its run id); it does not change an evaluation, so it is not part
of the recipe, and runs under different objectives share their stored evaluations.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Any, Mapping

from llmnas_local.records import FLOPS_M, PARAMS_M, VAL_ACC

METRICS = {"params": PARAMS_M, "flops": FLOPS_M}       # the objective's words -> metric names (millions)
_SUFFIX = {"K": 1e-3, "M": 1.0, "G": 1e3}
_NUMBER = r"(\d+(?:\.\d+)?)"
_METRIC = "(" + "|".join(METRICS) + ")"
_TERM = re.compile(rf"-{_NUMBER}\*{_METRIC}")
_BUDGET = re.compile(rf"{_METRIC}<={_NUMBER}([KMG]?)")


class ObjectiveError(ValueError):
    """An objective that does not parse: one line naming what is wrong."""


@dataclasses.dataclass(frozen=True)
class Objective:
    """``weights``: (metric word, points per million) subtracted from the validation accuracy; ``budgets``: (metric
    word, upper bound in millions). Both in the order written. The default (neither) is accuracy alone."""

    weights: tuple[tuple[str, float], ...] = ()
    budgets: tuple[tuple[str, float], ...] = ()

    @property
    def is_accuracy(self) -> bool:
        """Accuracy alone: the default, under which every run is ranked as it always was."""
        return not self.weights and not self.budgets

    def feasible(self, metrics: Mapping[str, float]) -> bool:
        """Within every budget (a metric the trial lacks is not within it)."""
        return all(metrics.get(METRICS[m]) is not None and metrics[METRICS[m]] <= bound for m, bound in self.budgets)

    def score(self, metrics: Mapping[str, float]) -> float:
        """Validation accuracy minus the weighted terms (a missing metric counts as infinitely large)."""
        penalty = sum(w * metrics.get(METRICS[m], float("inf")) for m, w in self.weights if w)
        return metrics[VAL_ACC] - penalty

    def key(self, trial: Any) -> tuple[bool, float]:
        """Sort key of a completed trial (anything with ``metrics``): larger is better."""
        return self.feasible(trial.metrics), self.score(trial.metrics)

    def __str__(self) -> str:
        text = "acc" + "".join(f"-{w:g}*{m}" for m, w in self.weights)
        if self.budgets:
            text += "@" + ",".join(f"{m}<={b:g}M" for m, b in self.budgets)
        return text

    def describe(self) -> str:
        """A phrase for people: what "best" means under this objective."""
        what = "validation accuracy" + "".join(f" - {w:g} x M {m}" for m, w in self.weights)
        if self.budgets:
            what += " among models with " + " and ".join(f"at most {b:g}M {m}" for m, b in self.budgets)
        return what


ACCURACY = Objective()


def parse_objective(text: str) -> Objective:
    """The objective ``text`` writes (the module docstring's syntax); :class:`ObjectiveError` otherwise."""
    s = "".join(str(text).split())
    if not s.startswith("acc"):
        raise ObjectiveError(f"objective {text!r} must start with 'acc' (e.g. acc, acc@params<=1M, acc-2*params)")
    head, _, tail = s[3:].partition("@")
    weights, pos = [], 0
    while pos < len(head):
        m = _TERM.match(head, pos)
        if not m:
            raise ObjectiveError(f"objective {text!r}: expected '-<weight>*params' or '-<weight>*flops' after "
                                 f"'{s[:3 + pos]}'")
        weights.append((m.group(2), float(m.group(1))))
        pos = m.end()
    budgets = []
    if s[3:].count("@") > 1 or s.endswith("@"):
        raise ObjectiveError(f"objective {text!r}: write the budgets once, after one '@' (params<=1M,flops<=25M)")
    for part in tail.split(",") if tail else ():
        m = _BUDGET.fullmatch(part)
        if not m:
            raise ObjectiveError(f"objective {text!r}: budget {part!r} is not <metric><=<number>[K|M|G] with metric "
                                 f"params or flops")
        budgets.append((m.group(1), float(m.group(2)) * _SUFFIX[m.group(3) or "M"]))
    for kind, items in (("weight", weights), ("budget", budgets)):
        names = [m for m, _ in items]
        if len(set(names)) != len(names):
            raise ObjectiveError(f"objective {text!r}: a {kind} on the same metric twice")
    return Objective(tuple(weights), tuple(budgets))
