"""The cnn space's cost model (against the built timm models) and its prefix guard (what constrained decoding uses to
stay within the caps)."""
import random

import pytest

from llmnas_local.dsl import get_space
from llmnas_local.dsl.base import Constraints, DslError, SemanticError
from llmnas_local.dsl.cnn import parse_cnn
from llmnas_local.dsl.cnn_cost import cnn_cost, cnn_prefix_guard, min_completion_cost

SPACE = get_space("cnn")
DIGITS = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=25.0)
TIGHT = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=0.05, max_flops_m=2.0)
CIFAR = Constraints(num_classes=100, in_chans=3, input_size=32, max_params_m=None, max_flops_m=5.0)
ALPHABET = sorted(set("".join(SPACE.grammar().split("::=")[1:])) & set("abcdeghikmnrstw_0123456789. 6"))


def _random_specs(n, seed):
    rng = random.Random(seed)
    return [parse_cnn(SPACE.sample(rng)) for _ in range(n)]


@pytest.mark.parametrize("task", [DIGITS, CIFAR], ids=["digits16", "cifar32"])
def test_cost_equals_the_built_models_parameters_and_flops(task):
    from llmnas_local.builder import profile_model

    checked = 0
    for spec in _random_specs(60, seed=task.input_size):
        try:
            model = SPACE.build(spec, task.num_classes, task.in_chans, task.input_size)
        except SemanticError:
            continue
        profile = profile_model(model, task.num_classes, task.in_chans, task.input_size)
        cost = cnn_cost(spec, task.num_classes, task.in_chans, task.input_size)
        assert (cost.params, cost.flops) == (round(profile.params_m * 1e6), round(profile.flops_m * 1e6)), \
            SPACE.format(spec)
        checked += 1
    assert checked >= 40


def _viable_ends(text, constraints):
    try:
        spec = parse_cnn(text)
        SPACE.check(spec, constraints)
    except (DslError, SemanticError):
        return False
    return cnn_cost(spec, constraints.num_classes, constraints.in_chans, constraints.input_size).within(constraints)


def _is_prefix(text):
    from llmnas_local.dsl.cnn_cost import _sections
    return _sections(text) is not None


@pytest.mark.parametrize("caps", [DIGITS, TIGHT, CIFAR], ids=["digits", "tight", "cifar"])
def test_a_decoder_led_by_the_guard_never_dead_ends_and_always_ends_within_the_caps(caps):
    """A character-level random walk through the language that keeps only the characters the guard allows: the guard
    always leaves a way on, and whatever string it ends with is valid and within the caps."""
    guard, rng = cnn_prefix_guard(caps), random.Random(0)
    for _ in range(60):
        text = ""
        while True:
            complete = _viable_ends(text, caps)
            allowed = [ch for ch in ALPHABET if _is_prefix(text + ch) and guard(text + ch)]
            if complete and (not allowed or rng.random() < 0.3):
                break
            assert allowed, f"dead end after {text!r}"
            text += rng.choice(allowed)
        assert _viable_ends(text, caps), text


def test_guard_passes_every_prefix_of_a_design_within_the_caps_and_stops_one_over_them():
    within = "stem_k3_s1_c16_nre cn_r1_k3_s1_c16_nre cn_r2_k3_s2_c24_nre head_c256_nre"     # 5.2M FLOPs at 16x16
    over = "stem_k3_s1_c16_nre cn_r1_k3_s1_c16_nre rb_r2_k3_s1_c32_nre rb_r2_k3_s1_c24_nre head_c256_nre"
    guard = cnn_prefix_guard(DIGITS)
    assert all(guard(within[:i]) for i in range(len(within) + 1))
    assert not guard(over)
    first_fail = next(i for i in range(len(over) + 1) if not guard(over[:i]))
    # stopped at the second rb stage's channels, once no completion fits (c8 would: 20.3M FLOPs; the string: 33.1M)
    assert over[:first_fail] == "stem_k3_s1_c16_nre cn_r1_k3_s1_c16_nre rb_r2_k3_s1_c32_nre rb_r2_k3_s1_c2"


def test_guard_stops_a_total_stride_beyond_the_input():
    guard = cnn_prefix_guard(Constraints(num_classes=10, in_chans=1, input_size=4))
    assert guard("stem_k3_s2_c16_nre cn_r1_k3_s2_c16_nre ")
    assert not guard("stem_k3_s2_c16_nre cn_r1_k3_s2_c16_nre cn_r1_k3_s2")


def test_min_completion_cost_never_falls_along_a_string_and_ends_at_its_cost():
    for spec in _random_specs(20, seed=3):
        text = SPACE.format(spec)
        costs = [min_completion_cost(text[:i], CIFAR) for i in range(len(text) + 1)]
        if costs[-1] is None:          # stride over the input: some prefix already had no valid completion
            continue
        assert all(a.flops <= b.flops and a.params <= b.params for a, b in zip(costs, costs[1:])), text
        assert costs[-1] == cnn_cost(spec, 100, 3, 32)


def test_text_outside_the_language_is_left_to_the_grammar():
    assert min_completion_cost("stem_k9", DIGITS) is None
    assert cnn_prefix_guard(DIGITS)("stem_k9")
