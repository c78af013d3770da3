"""Build a ``cnn`` spec (llmnas_local.dsl.cnn) into a PyTorch model, wiring timm's blocks with timm's argument names.

Each block family names its timm block and that block's arguments in the family table
(:data:`llmnas_local.dsl.cnn_blocks.BLOCKS`, with its keys and its cost model); here they are wired the same way for
every family (conventions of timm's EfficientNetBuilder and byobnet, defaults otherwise):
  stem, head conv   timm.layers.ConvNormAct
  cn                _efficientnet_blocks.ConvBnAct (no skip, as timm's ``cn`` default)
  ds / ir / er      DepthwiseSeparableConv / InvertedResidual / EdgeResidual, skip when stride 1 and in == out;
                    squeeze-excite is timm's SqueezeExcite with its ratio taken on the block's input channels
                    (EfficientNetBuilder's default ``se_from_exp=False``: rd_ratio = se / e)
  rb / bt           byobnet.BasicBlock (bottle_ratio 1.0) / BottleneckBlock (bottle_ratio b, group_size = mid // g),
                    with their own shortcut (avg-pool + 1x1 conv where the shape changes)
  head              ConvNormAct 1x1 to c, then ClassifierHead (global average pool, linear)
Weights: timm's EfficientNet (Tensorflow-style) init, ``efficientnet_init_weights``.
"""
from __future__ import annotations

import functools
import importlib
from functools import partial

import torch
import torch.nn as nn
from timm.layers import ClassifierHead, ConvNormAct, get_act_layer, get_norm_act_layer
from timm.models._efficientnet_blocks import SqueezeExcite
from timm.models._efficientnet_builder import efficientnet_init_weights
from timm.models.byobnet import LayerFn

from llmnas_local.dsl.base import Constraints
from llmnas_local.dsl.cnn import ACT_NAMES, CnnSpec, StageSpec, check_cnn
from llmnas_local.dsl.cnn_blocks import block_family


class CnnNet(nn.Module):
    """stem -> stages (one nn.Sequential of blocks each) -> 1x1 conv head -> pool -> linear."""

    def __init__(self, stem: nn.Module, stages: list[nn.Sequential], conv_head: nn.Module, head: ClassifierHead):
        super().__init__()
        self.stem = stem
        self.stages = nn.Sequential(*stages)
        self.conv_head = conv_head
        self.head = head
        self.num_features = head.in_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(self.stages(self.stem(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def _se_layer(rd_ratio: float | None):
    return partial(SqueezeExcite, rd_ratio=rd_ratio) if rd_ratio else None


def _byob_layers(act_layer) -> LayerFn:
    # as byobnet.get_layer_fns does for a model-wide act_layer, here per stage
    return LayerFn(conv_norm_act=partial(ConvNormAct, act_layer=act_layer),
                   norm_act=get_norm_act_layer(nn.BatchNorm2d, act_layer=act_layer), act=act_layer)


@functools.lru_cache(maxsize=None)
def _timm_class(ref: str) -> type[nn.Module]:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def build_block(st: StageSpec, in_chs: int, stride: int) -> nn.Module:
    """One block of stage ``st`` (its repeats and stride are taken from the arguments): its family's timm block with
    the family's arguments (``llmnas_local.dsl.cnn_blocks.BLOCKS``)."""
    family = block_family(st.block)
    act = get_act_layer(ACT_NAMES[st.act])
    args = family.args(st)
    if family.byob:
        args["layers"] = _byob_layers(act)
    else:
        args["act_layer"] = act
        if "se" in args:
            args["se_layer"] = _se_layer(args.pop("se"))
    return _timm_class(family.timm_block)(in_chs=in_chs, out_chs=st.channels, stride=stride, **args)


def build_cnn(spec: CnnSpec, num_classes: int, in_chans: int = 3, input_size: int = 32) -> CnnNet:
    """Build the network; raises SemanticError (from the space's check) rather than any error of timm's."""
    check_cnn(spec, Constraints(num_classes=num_classes, in_chans=in_chans, input_size=input_size))
    stem = ConvNormAct(in_chans, spec.stem.channels, spec.stem.kernel, stride=spec.stem.stride,
                       act_layer=get_act_layer(ACT_NAMES[spec.stem.act]))
    in_chs, stages = spec.stem.channels, []
    for st in spec.stages:
        blocks = []
        for i in range(st.repeats):
            blocks.append(build_block(st, in_chs, st.stride if i == 0 else 1))
            in_chs = st.channels
        stages.append(nn.Sequential(*blocks))
    conv_head = ConvNormAct(in_chs, spec.head.channels, 1, act_layer=get_act_layer(ACT_NAMES[spec.head.act]))
    model = CnnNet(stem, stages, conv_head, ClassifierHead(spec.head.channels, num_classes, pool_type="avg"))
    efficientnet_init_weights(model)
    return model
