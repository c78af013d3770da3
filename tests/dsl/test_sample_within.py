"""sample_within: draws of a space's grammar within a task's caps (rejection against the cost model), seeded; and the
random proposer and evolution, which now propose within the caps instead of having most proposals rejected."""
from __future__ import annotations

import random

from llmnas_local.dsl import Constraints, get_space
from llmnas_local.dsl.cnn_cost import cnn_cost
from llmnas_local.dsl.sampler import sample_within
from llmnas_local.proposers.evolution import EvolutionProposer
from llmnas_local.proposers.random_search import RandomProposer
from llmnas_local.records import FLOPS_M, PARAMS_M, VAL_ACC, TrialRecord, TrialStatus
from llmnas_local.search.history import HistoryView

CNN = get_space("cnn")
CAPS = Constraints(num_classes=10, in_chans=3, input_size=32, max_params_m=1.0, max_flops_m=25.0)


def _within(text: str, caps: Constraints = CAPS) -> bool:
    spec = CNN.parse(text)
    CNN.check(spec, caps)           # raises if structurally invalid
    cost = cnn_cost(spec, caps.num_classes, caps.in_chans, caps.input_size)
    return cost.params / 1e6 <= caps.max_params_m and cost.flops / 1e6 <= caps.max_flops_m


def test_draws_fit_the_caps_and_a_seed_gives_the_same_draws():
    rng = random.Random(0)
    draws = [sample_within(CNN, CAPS, rng) for _ in range(100)]
    assert all(_within(t) for t in draws)
    assert len(set(draws)) == 100
    again = random.Random(0)
    assert [sample_within(CNN, CAPS, again) for _ in range(100)] == draws
    plain = [CNN.sample(random.Random(i)) for i in range(100)]
    assert sum(_within(t) for t in plain) < 30                  # the grammar alone: mostly over these caps


def test_a_space_without_a_cost_model_draws_as_before():
    nb201 = get_space("nb201")
    a, b = random.Random(5), random.Random(5)
    assert [sample_within(nb201, Constraints(), a) for _ in range(20)] == [nb201.sample(b) for _ in range(20)]


def test_caps_nothing_fits_give_the_last_draw_after_max_draws():
    tiny = Constraints(num_classes=10, in_chans=3, input_size=32, max_params_m=1e-6)
    rng, ref = random.Random(1), random.Random(1)
    text = sample_within(CNN, tiny, rng, max_draws=5)
    assert text == [CNN.sample(ref) for _ in range(5)][-1]


def _completed(seq: int, text: str, val: float) -> TrialRecord:
    spec = CNN.parse(text)
    cost = cnn_cost(spec, 10, 3, 32)
    return TrialRecord(run_id="r", seq=seq, proposer="evolution", raw=text, status=TrialStatus.COMPLETE,
                       canonical=CNN.canonical(spec), arch_hash=CNN.arch_hash(spec),
                       metrics={VAL_ACC: val, PARAMS_M: cost.params / 1e6, FLOPS_M: cost.flops / 1e6})


def test_random_search_and_evolution_propose_within_the_caps():
    rng = random.Random(3)
    history = HistoryView(CNN, CAPS)
    proposals = RandomProposer().propose(history, 40, rng)
    assert all(_within(p.text) for p in proposals)
    evolution = EvolutionProposer(population=10, tournament=3)
    warm = [p.text for p in (evolution.propose(history, 1, rng)[0] for _ in range(10))]
    assert all(_within(t) for t in warm)
    history = HistoryView(CNN, CAPS, [_completed(i, t, 20.0 + i) for i, t in enumerate(dict.fromkeys(warm))])
    children = [evolution.propose(history, 1, random.Random(i))[0].text for i in range(40)]
    assert all(_within(t) for t in children)
