"""The objective setting: strict parsing, ranking (budgets first, then the score), HistoryView.best under it, and
evolution on NAS-Bench-201 under a parameter budget (table look-ups: fast)."""
from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from llmnas_local.dsl import Constraints, SemanticError, get_space
from llmnas_local.objective import ACCURACY, ObjectiveError, parse_objective
from llmnas_local.proposers.evolution import EvolutionProposer, tournament_winner
from llmnas_local.records import FLOPS_M, PARAMS_M, VAL_ACC, TrialRecord, TrialStatus
from llmnas_local.search.history import HistoryView


@pytest.mark.parametrize("text, weights, budgets", [
    ("acc", (), ()),
    (" acc @ params<=1M ", (), (("params", 1.0),)),
    ("acc@params<=500K,flops<=1G", (), (("params", 0.5), ("flops", 1000.0))),
    ("acc@flops<=25", (), (("flops", 25.0),)),
    ("acc-2*params", (("params", 2.0),), ()),
    ("acc-0.1*flops-1.5*params@params<=1M", (("flops", 0.1), ("params", 1.5)), (("params", 1.0),)),
])
def test_parse_reads_the_syntax_and_writes_it_back(text, weights, budgets):
    obj = parse_objective(text)
    assert (obj.weights, obj.budgets) == (weights, budgets)
    assert parse_objective(str(obj)) == obj
    assert (obj == ACCURACY) is (text == "acc") and obj.is_accuracy is (text == "acc")


@pytest.mark.parametrize("text, says", [
    ("accuracy", "expected '-<weight>*params'"), ("val_acc", "must start with 'acc'"), ("", "must start with 'acc'"),
    ("acc@latency<=5ms", "budget 'latency<=5ms'"), ("acc@params<1M", "budget 'params<1M'"),
    ("acc@params<=1M@flops<=2M", "after one '@'"), ("acc@", "after one '@'"), ("acc+2*params", "expected"),
    ("acc-2*params-1*params", "weight on the same metric twice"), ("acc@params<=1M,params<=2M", "budget on the same"),
    ("acc@params<=-1M", "budget 'params<=-1M'"), ("acc@params<=1T", "budget"),
])
def test_parse_refuses_anything_else_in_one_line(text, says):
    with pytest.raises(ObjectiveError, match="objective") as e:
        parse_objective(text)
    assert says in str(e.value) and "\n" not in str(e.value)


def _t(val, params, flops=10.0):
    return SimpleNamespace(metrics={VAL_ACC: val, PARAMS_M: params, FLOPS_M: flops})


def test_ranking_puts_trials_within_the_budgets_first_then_the_score():
    obj = parse_objective("acc@params<=1M")
    assert obj.key(_t(70, 0.9)) > obj.key(_t(90, 1.1)) and obj.key(_t(80, 0.5)) > obj.key(_t(70, 0.9))
    assert not obj.feasible({VAL_ACC: 90.0})                  # a budget's metric missing: not within it
    trade = parse_objective("acc-10*params")
    assert trade.score(_t(90, 1.0).metrics) == 80 and trade.key(_t(85, 0.2)) > trade.key(_t(90, 1.0))
    assert ACCURACY.key(_t(90, 1.0)) > ACCURACY.key(_t(85, 0.2))


def test_the_tournament_ranks_by_the_objective():
    alive = [_t(90, 1.5), _t(60, 0.4)]
    obj = parse_objective("acc@params<=1M")
    assert tournament_winner(alive, 50, random.Random(0), obj) is alive[1]
    assert tournament_winner(alive, 50, random.Random(0)) is alive[0]


def _trial(seq, val, params):
    return TrialRecord(run_id="r", seq=seq, proposer="p", raw=f"a{seq}", status=TrialStatus.COMPLETE,
                       canonical=f"a{seq}", arch_hash=f"h{seq}", metrics={VAL_ACC: val, PARAMS_M: params})


def test_history_best_is_the_best_within_the_budget_and_never_one_over_it():
    trials = [_trial(0, 80, 0.5), _trial(1, 95, 1.4), _trial(2, 85, 0.9), _trial(3, 85, 0.8)]
    space = get_space("nb201")
    plain = HistoryView(space, Constraints(), trials)
    assert [t.seq for t in plain.best(3)] == [1, 2, 3] and plain.best()[0].seq == 1
    budget = HistoryView(space, Constraints(), trials, objective=parse_objective("acc@params<=1M"))
    assert budget.best()[0].seq == 2                         # ties: the earliest
    assert [t.seq for t in budget.best(5)] == [2, 3, 0]
    assert HistoryView(space, Constraints(), trials[1:2], objective=budget.objective).best() == []


def test_evolution_under_a_parameter_budget_on_nb201_returns_a_model_within_it(nb201_csv):
    """A search loop over the real table (the study wires the same pieces): under acc@params<=1M the tournaments
    favour cells within the budget, and the best returned is within it, while accuracy alone picks a bigger one."""
    from llmnas_local.evaluators.tabular import TabularEvaluator

    space, evaluator = get_space("nb201"), TabularEvaluator(nb201_csv)
    results = {}
    for text in ("acc", "acc@params<=0.6M"):
        history = HistoryView(space, evaluator.constraints, objective=parse_objective(text))
        proposer, rng = EvolutionProposer(population=10, tournament=3), random.Random(0)
        while len(history.completed) < 150:
            p = proposer.propose(history, 1, rng)[0]
            spec = space.parse(p.text)
            h = space.arch_hash(spec)
            if history.is_known(h):
                continue
            try:
                metrics = evaluator.precheck(space, spec)
            except SemanticError:
                continue
            out = evaluator.evaluate(space, spec)
            history._append(TrialRecord(run_id=text, seq=len(history), proposer="evolution", raw=p.text,
                                        status=out.status, canonical=space.canonical(spec), arch_hash=h,
                                        metrics={**metrics, **out.metrics}))
        results[text] = history
    best = results["acc@params<=0.6M"].best()[0]
    assert best.metrics[PARAMS_M] <= 0.6
    assert results["acc"].best()[0].metrics[PARAMS_M] > 0.6
    within = lambda h: sum(t.metrics[PARAMS_M] <= 0.6 for t in h.completed[10:])  # noqa: E731
    assert within(results["acc@params<=0.6M"]) > within(results["acc"])
