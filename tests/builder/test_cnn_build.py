"""The cnn builder: every family builds from timm's blocks and trains a step; every spec builds or is rejected."""
from __future__ import annotations

import random

import pytest
import torch
import torch.nn as nn

from llmnas_local.builder import profile_model
from llmnas_local.builder.cnn import CnnNet, build_cnn
from llmnas_local.dsl.base import Constraints, SemanticError
from llmnas_local.dsl.cnn import FAMILIES, CnnSpace
from tests.dsl.test_cnn import random_spec

SPACE = CnnSpace()

TINY = {  # one stage of each family, two blocks: a strided first block and a residual second one
    "cn": "cn_r2_k3_s2_c16_nre",
    "ds": "ds_r2_k3_s2_c16_se0.25_nhs",
    "ir": "ir_r2_k5_s2_e3_c16_se0.25_nsw",
    "er": "er_r2_k3_s2_e2_c16_se0_nr6",
    "rb": "rb_r2_k3_s2_c16_nmi",
    "bt": "bt_r2_k3_s2_b0.5_g2_c32_nre",
}


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # tiny models: thread overhead dominates on 2 shared cores
    yield
    torch.set_num_threads(threads)


def test_tiny_table_covers_every_family():
    assert set(TINY) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(TINY))
@pytest.mark.parametrize("in_chans", [1, 3])
def test_every_family_builds_forwards_and_backwards(family, in_chans):
    torch.manual_seed(0)
    spec = SPACE.parse(f"stem_k3_s1_c8_nre {TINY[family]} head_c32_nsw")
    model = SPACE.build(spec, num_classes=5, in_chans=in_chans, input_size=16)
    assert isinstance(model, CnnNet)
    out = model(torch.randn(2, in_chans, 16, 16))
    assert out.shape == (2, 5)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_blocks_are_timms_and_residuals_follow_timm():
    from timm.models._efficientnet_blocks import InvertedResidual, SqueezeExcite
    from timm.models.byobnet import BottleneckBlock

    model = SPACE.build(SPACE.parse(f"stem_k3_s1_c8_nre {TINY['ir']} {TINY['bt']} head_c32_nre"), 10, 3, 32)
    ir0, ir1 = model.stages[0]
    assert isinstance(ir0, InvertedResidual) and not ir0.has_skip and ir1.has_skip   # stride 2 then 1
    assert isinstance(ir0.se, SqueezeExcite) and ir0.se.conv_reduce.out_channels == 2  # 0.25 of the 8 input chs
    assert ir0.conv_dw.stride == (2, 2) and ir1.conv_dw.stride == (1, 1) and ir0.conv_dw.kernel_size == (5, 5)
    bt = model.stages[1][0]
    assert isinstance(bt, BottleneckBlock) and bt.conv2_kxk.conv.groups == 2 and bt.conv2_kxk.conv.out_channels == 16
    assert isinstance(model.stages[1][0].act, nn.ReLU)


def test_activation_codes_map_to_timms_layers():
    acts = {"re": nn.ReLU, "r6": nn.ReLU6, "sw": nn.SiLU, "hs": nn.Hardswish, "mi": nn.Mish}
    for code, cls in acts.items():
        model = SPACE.build(SPACE.parse(f"stem_k3_s1_c8_n{code} cn_r1_k1_s1_c8_n{code} head_c8_n{code}"), 2, 3, 8)
        assert isinstance(model.stem.bn.act, cls) and isinstance(model.conv_head.bn.act, cls), code


def test_profile_counts_positive_params_and_flops():
    spec = SPACE.parse(SPACE.examples()[1])
    prof = profile_model(SPACE.build(spec, 10, 3, 32), num_classes=10, in_chans=3, input_size=32)
    assert prof.params_m > 0.1 and prof.flops_m > 1


def test_builder_raises_semantic_error_not_timm_errors():
    spec = SPACE.parse("stem_k3_s2_c8_nre rb_r1_k3_s2_c8_nre rb_r1_k3_s2_c8_nre head_c8_nre")
    with pytest.raises(SemanticError, match="total stride 8"):
        build_cnn(spec, num_classes=10, in_chans=3, input_size=4)


def test_build_model_dispatches_on_the_spec_space():
    pytest.importorskip("llmnas_local.dsl.nb201")   # the registry loads every built-in space
    from llmnas_local.builder import build_model

    spec = SPACE.parse(f"stem_k3_s1_c8_nre {TINY['ds']} head_c16_nre")
    assert build_model(spec, num_classes=3, in_chans=1, input_size=8)(torch.zeros(2, 1, 8, 8)).shape == (2, 3)


@pytest.mark.parametrize("input_size, in_chans", [(8, 1), (8, 3), (32, 1), (32, 3)])
def test_every_spec_builds_and_runs_or_is_rejected_by_check(input_size, in_chans):
    """The contract: a string in the language either builds and runs forward, or check rejects it. Never a crash.

    Widths are kept small for speed; width does not change which shapes timm accepts (channel counts are multiples
    of 8 throughout), the wide end is covered by the next test.
    """
    rng = random.Random(input_size * 10 + in_chans)
    built = rejected = 0
    for _ in range(80):
        spec = random_spec(rng, widths=(8, 16, 24, 32))
        try:
            SPACE.check(spec, Constraints(num_classes=7, in_chans=in_chans, input_size=input_size))
        except SemanticError as e:
            assert "\n" not in str(e)
            rejected += 1
            continue
        model = SPACE.build(spec, num_classes=7, in_chans=in_chans, input_size=input_size).eval()
        with torch.no_grad():
            assert model(torch.randn(1, in_chans, input_size, input_size)).shape == (1, 7), SPACE.format(spec)
        built += 1
    assert built >= 20 and (rejected >= 1 or input_size == 32)


def test_wide_specs_build_and_run():
    rng = random.Random(5)
    for _ in range(3):
        spec = random_spec(rng, widths=(192, 256, 320, 384, 512))
        spec = type(spec)(spec.stem, spec.stages[:2], spec.head)
        try:
            SPACE.check(spec, Constraints(input_size=8))
        except SemanticError:
            continue
        with torch.no_grad():
            assert SPACE.build(spec, 10, 3, 8).eval()(torch.zeros(1, 3, 8, 8)).shape == (1, 10)
