"""What goes into a run id: the settings that change what is proposed (lookahead, objective, caps) each change it,
and only when given, so runs made without them keep their ids."""
from __future__ import annotations

from llmnas_local.objective import ACCURACY, parse_objective
from llmnas_local.search import make_run_id

ARGS = ("cnn", "random", {}, "recipe", 0)


def test_objective_and_caps_are_factors_only_when_given():
    plain = make_run_id(*ARGS)
    assert plain == make_run_id(*ARGS, objective=ACCURACY) == make_run_id(*ARGS, caps={})
    ids = {plain, make_run_id(*ARGS, objective=parse_objective("acc@params<=1M")),
           make_run_id(*ARGS, caps={"max_params_m": 1.0}), make_run_id(*ARGS, caps={"max_params_m": 2.0}),
           make_run_id(*ARGS, caps={"max_params_m": 1.0, "max_flops_m": 25.0})}
    assert len(ids) == 5


def test_a_search_with_caps_gets_another_run_id(nb201_csv):
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators import create_evaluator
    from llmnas_local.proposers import create_proposer
    from llmnas_local.search import Search
    from llmnas_local.store.memory_store import MemoryStore

    space = get_space("nb201")
    runs = [Search(space, create_proposer("random"), create_evaluator(space, table=str(nb201_csv), max_params_m=cap),
                   MemoryStore()).run_id for cap in (None, 1.0, None)]
    assert runs[0] == runs[2] != runs[1]
