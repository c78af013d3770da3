"""NAS-Bench-201's network around a cell, module for module as the benchmark built it (xautodl's ``TinyNetwork``):

    stem 3x3 conv + BN -> 5 cells @16 -> residual block 16->32 /2 -> 5 cells @32 -> residual block 32->64 /2
    -> 5 cells @64 -> BN + ReLU -> global average pool -> linear

Cell edges: ``nor_conv_kxk`` = ReLU -> conv kxk (no bias) -> BN; ``avg_pool_3x3`` = 3x3 average pool, stride 1, padding
not counted; ``skip_connect`` = identity; ``none`` = zeros. Every edge is built, dead or not, so parameter counts match
the benchmark's table (``params_M_c10``). Layers come from timm; only the cell wiring and the benchmark's pre-activation
ReLU-conv-BN and residual block (not in timm in this form) are written here.
"""
from __future__ import annotations

import torch
import torch.nn as nn
from timm.layers import ClassifierHead, create_conv2d, create_pool2d, get_act_layer

from llmnas_local.dsl.nb201 import CONV1, CONV3, EDGES, NONE, POOL, SKIP, Nb201Spec

STEM_CHS = 16
CELLS_PER_STAGE = 5


class ReLUConvBN(nn.Sequential):
    """Pre-activation conv: ReLU -> conv (no bias) -> BN."""

    def __init__(self, in_chs: int, out_chs: int, kernel_size: int, stride: int = 1, act_layer=nn.ReLU):
        super().__init__(act_layer(), create_conv2d(in_chs, out_chs, kernel_size, stride=stride),
                         nn.BatchNorm2d(out_chs))


class Zero(nn.Module):
    """The ``none`` edge: zeros shaped like its input (``x * 0``, as the benchmark computes it)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mul(0.0)


class ResidualReduction(nn.Module):
    """The benchmark's ``ResNetBasicblock`` at stride 2: two ReLU-conv-BN 3x3 plus an avg-pool + 1x1 conv shortcut."""

    def __init__(self, in_chs: int, out_chs: int, act_layer=nn.ReLU):
        super().__init__()
        self.conv_a = ReLUConvBN(in_chs, out_chs, 3, stride=2, act_layer=act_layer)
        self.conv_b = ReLUConvBN(out_chs, out_chs, 3, act_layer=act_layer)
        self.downsample = nn.Sequential(create_pool2d("avg", 2, stride=2, padding=0),
                                        create_conv2d(in_chs, out_chs, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.downsample(x) + self.conv_b(self.conv_a(x))


def create_edge(op: str, chs: int, act_layer=nn.ReLU) -> nn.Module:
    """The module of one cell edge (channels in = channels out, stride 1)."""
    if op == NONE:
        return Zero()
    if op == SKIP:
        return nn.Identity()
    if op in (CONV1, CONV3):
        return ReLUConvBN(chs, chs, 1 if op == CONV1 else 3, act_layer=act_layer)
    if op == POOL:
        return create_pool2d("avg", 3, stride=1, padding=1, count_include_pad=False)
    raise ValueError(f"unknown nb201 op {op!r}")


class Nb201Cell(nn.Module):
    """Nodes 0..3; node j = sum over i < j of edge (j <- i) applied to node i; returns node 3."""

    def __init__(self, spec: Nb201Spec, chs: int, act_layer=nn.ReLU):
        super().__init__()
        self.edges = nn.ModuleList(create_edge(op, chs, act_layer) for op in spec.ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x, None, None, None]
        for (to, frm), edge in zip(EDGES, self.edges):
            y = edge(nodes[frm])
            nodes[to] = y if nodes[to] is None else nodes[to] + y
        return nodes[3]


class Nb201Network(nn.Module):
    """The benchmark's macro skeleton with ``spec``'s cell in all 15 cell positions."""

    def __init__(self, spec: Nb201Spec, num_classes: int = 10, in_chans: int = 3, stem_chs: int = STEM_CHS,
                 cells_per_stage: int = CELLS_PER_STAGE, act_layer="relu"):
        super().__init__()
        act_layer = get_act_layer(act_layer)
        self.stem = nn.Sequential(create_conv2d(in_chans, stem_chs, 3), nn.BatchNorm2d(stem_chs))
        blocks: list[nn.Module] = []
        chs = stem_chs
        for stage in range(3):
            if stage:
                blocks.append(ResidualReduction(chs, chs * 2, act_layer=act_layer))
                chs *= 2
            blocks.extend(Nb201Cell(spec, chs, act_layer) for _ in range(cells_per_stage))
        self.cells = nn.Sequential(*blocks)
        self.lastact = nn.Sequential(nn.BatchNorm2d(chs), act_layer())
        self.num_features = chs
        self.head = ClassifierHead(chs, num_classes, pool_type="avg")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.lastact(self.cells(self.stem(x))))


def build_nb201(spec: Nb201Spec, num_classes: int, in_chans: int = 3, input_size: int = 32) -> Nb201Network:
    """Build the benchmark network for ``spec`` (``input_size`` is not needed: the head pools globally; the space's
    ``check`` requires it to be a multiple of 4)."""
    return Nb201Network(spec, num_classes=num_classes, in_chans=in_chans)
