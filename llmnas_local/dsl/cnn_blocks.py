"""The ``cnn`` language's parts: its value tables, its specs, and its block families, one row each: the keys a family is
written with, the timm block that builds it (with its arguments) and what it costs (parameters and FLOPs, without
torch).

The parser, the canonical form and the prompt text read a row's keys (:mod:`llmnas_local.dsl.cnn`), the builder its
timm block (:mod:`llmnas_local.builder.cnn`), the caps guard its cost (:mod:`llmnas_local.dsl.cnn_cost`): a family is
added or changed in one place. No torch here: the builder resolves ``timm_block`` when it builds.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable, ClassVar, Optional

# -- the language's value tables (mirror grammars/cnn.ebnf): key prefix -> ((text, value), ...) ---------------------
_INTS = lambda *vs: tuple((str(v), v) for v in vs)  # noqa: E731
VALUES: dict[str, tuple[tuple[str, object], ...]] = {
    "r": _INTS(1, 2, 3, 4),
    "k": _INTS(3, 5, 7),
    "k1": _INTS(1, 3, 5, 7),        # kernel of cn blocks and the stem (a 1x1 conv is allowed there)
    "s": _INTS(1, 2),
    "e": _INTS(1, 2, 3, 4, 6),
    "b": (("0.25", 0.25), ("0.5", 0.5), ("1.0", 1.0)),
    "g": _INTS(1, 2, 4, 8),
    "c": _INTS(8, 16, 24, 32, 40, 48, 64, 80, 96, 112, 128, 160, 192, 256, 320, 384, 512),
    "se": (("0", 0.0), ("0.25", 0.25)),
    "n": (("re", "re"), ("r6", "r6"), ("sw", "sw"), ("hs", "hs"), ("mi", "mi")),
}
ACT_NAMES = {"re": "relu", "r6": "relu6", "sw": "swish", "hs": "hard_swish", "mi": "mish"}  # timm's codes


@dataclasses.dataclass(frozen=True)
class _Field:
    attr: str     # spec attribute
    prefix: str   # key as written
    table: str    # key of VALUES

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(self.prefix + text for text, _ in VALUES[self.table])

    def text(self, value: object) -> str:
        for text, v in VALUES[self.table]:
            if v == value:
                return self.prefix + text
        raise ValueError(f"{self.attr}={value!r} is not one of {', '.join(self.choices)}")


_R, _K, _K1, _S = _Field("repeats", "r", "r"), _Field("kernel", "k", "k"), _Field("kernel", "k", "k1"), \
    _Field("stride", "s", "s")
_E, _B, _G = _Field("expansion", "e", "e"), _Field("bottle_ratio", "b", "b"), _Field("groups", "g", "g")
_C, _SE, _N = _Field("channels", "c", "c"), _Field("se_ratio", "se", "se"), _Field("act", "n", "n")

STEM_FIELDS = (_K1, _S, _C, _N)
HEAD_FIELDS = (_C, _N)
MAX_STAGES = 6
MAX_REPEATS = 4


def make_divisible(v: float, divisor: int = 8) -> int:
    """``timm.layers.make_divisible`` with its defaults (divisor 8, round_limit 0.9), mirrored so that the space
    stays importable without torch; tests check it against timm."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def bt_mid_channels(channels: int, bottle_ratio: float) -> int:
    """Mid channels of timm's BottleneckBlock: ``make_divisible(channels * bottle_ratio)``."""
    return make_divisible(channels * bottle_ratio)


# -- costs: what the built model has, as torch's FlopCounterMode counts it (a multiply-add = 2) ----------------------
@dataclasses.dataclass(frozen=True)
class Cost:
    params: int
    flops: int

    def __add__(self, other: "Cost") -> "Cost":
        return Cost(self.params + other.params, self.flops + other.flops)

    def within(self, c: Any) -> bool:
        """Whether the cost is within the caps of ``c`` (a :class:`~llmnas_local.dsl.base.Constraints`)."""
        return ((c.max_params_m is None or self.params / 1e6 <= c.max_params_m)
                and (c.max_flops_m is None or self.flops / 1e6 <= c.max_flops_m))


ZERO = Cost(0, 0)


def out_size(size: int, stride: int) -> int:
    return (size - 1) // stride + 1            # timm's symmetric padding, odd kernels


def conv_cost(cin: int, cout: int, k: int, size_out: int, groups: int = 1, bias: bool = False,
              bn: bool = True) -> Cost:
    weights = cout * (cin // groups) * k * k
    return Cost(weights + (cout if bias else 0) + (2 * cout if bn else 0), 2 * weights * size_out * size_out)


def _se(chs: int, rd_ratio: float) -> Cost:
    """timm's SqueezeExcite on a pooled map: 1x1 convs with bias, ``round(chs * rd_ratio)`` reduced channels."""
    rd = round(chs * rd_ratio)
    return conv_cost(chs, rd, 1, 1, bias=True, bn=False) + conv_cost(rd, chs, 1, 1, bias=True, bn=False)


def _shortcut(cin: int, cout: int, stride: int, size_out: int) -> Cost:
    """byobnet's DownsampleAvg where the shape changes (avg-pool, 1x1 conv, batch norm); identity otherwise."""
    return conv_cost(cin, cout, 1, size_out) if cin != cout or stride != 1 else ZERO


def _cn_cost(st, cin: int, stride: int, size: int) -> Cost:
    return conv_cost(cin, st.channels, st.kernel, out_size(size, stride))


def _ds_cost(st, cin: int, stride: int, size: int) -> Cost:
    so = out_size(size, stride)
    cost = conv_cost(cin, cin, st.kernel, so, groups=cin) + conv_cost(cin, st.channels, 1, so)
    return cost + (_se(cin, st.se_ratio) if st.se_ratio else ZERO)


def _expanded_cost(fused: bool) -> Callable[[Any, int, int, int], Cost]:
    def cost(st, cin: int, stride: int, size: int) -> Cost:
        so, mid = out_size(size, stride), make_divisible(cin * st.expansion)
        se = _se(mid, st.se_ratio / st.expansion) if st.se_ratio else ZERO
        expand = (conv_cost(cin, mid, st.kernel, so) if fused else
                  conv_cost(cin, mid, 1, size) + conv_cost(mid, mid, st.kernel, so, groups=mid))
        return expand + se + conv_cost(mid, st.channels, 1, so)

    return cost


def _rb_cost(st, cin: int, stride: int, size: int) -> Cost:
    so, c = out_size(size, stride), st.channels
    return conv_cost(cin, c, st.kernel, so) + conv_cost(c, c, st.kernel, so) + _shortcut(cin, c, stride, so)


def _bt_cost(st, cin: int, stride: int, size: int) -> Cost:
    so, c = out_size(size, stride), st.channels
    mid = bt_mid_channels(c, st.bottle_ratio)
    return (conv_cost(cin, mid, 1, size) + conv_cost(mid, mid, st.kernel, so, groups=st.groups)
            + conv_cost(mid, c, 1, so) + _shortcut(cin, c, stride, so))


# -- the families -----------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BlockFamily:
    """One block family of the language.

    ``args(stage)`` are the timm block's keyword arguments besides ``in_chs``, ``out_chs``, ``stride`` and the
    activation; an ``se`` entry is the squeeze-excite ratio on the block's input channels (None: no squeeze-excite),
    which the builder turns into timm's ``se_layer``. ``byob``: the block takes its layers as byobnet's ``LayerFn``
    (``layers=``) rather than ``act_layer=``. ``cost(stage, in_chs, stride, size)``: one block's cost on a ``size`` x
    ``size`` input."""

    name: str
    fields: tuple[_Field, ...]           # its keys, in the order they are written
    doc: str                             # what it is, for the prompt's description of the language
    timm_block: str                      # "module:Class" of the timm block that builds it
    args: Callable[[Any], dict[str, Any]]
    cost: Callable[[Any, int, int, int], Cost]
    byob: bool = False

    @property
    def form(self) -> str:
        """How it is written, keys only: ``ir_r_k_s_e_c_se_n``."""
        return "_".join([self.name, *(f.prefix for f in self.fields)])


_EFFNET, _BYOB = "timm.models._efficientnet_blocks", "timm.models.byobnet"
BLOCKS: dict[str, BlockFamily] = {b.name: b for b in (
    BlockFamily("cn", (_R, _K1, _S, _C, _N), "plain conv-bn-act blocks", f"{_EFFNET}:ConvBnAct",
                lambda st: {"kernel_size": st.kernel}, _cn_cost),
    BlockFamily("ds", (_R, _K, _S, _C, _SE, _N), "depthwise-separable conv (MobileNetV1)",
                f"{_EFFNET}:DepthwiseSeparableConv",
                lambda st: {"dw_kernel_size": st.kernel, "se": st.se_ratio or None}, _ds_cost),
    BlockFamily("ir", (_R, _K, _S, _E, _C, _SE, _N), "inverted residual, MBConv (MobileNetV2, EfficientNet)",
                f"{_EFFNET}:InvertedResidual",
                lambda st: {"dw_kernel_size": st.kernel, "exp_ratio": float(st.expansion),
                            "se": st.se_ratio / st.expansion if st.se_ratio else None}, _expanded_cost(fused=False)),
    BlockFamily("er", (_R, _K, _S, _E, _C, _SE, _N), "edge residual, fused MBConv (EfficientNetV2)",
                f"{_EFFNET}:EdgeResidual",
                lambda st: {"exp_kernel_size": st.kernel, "exp_ratio": float(st.expansion),
                            "se": st.se_ratio / st.expansion if st.se_ratio else None}, _expanded_cost(fused=True)),
    BlockFamily("rb", (_R, _K, _S, _C, _N), "ResNet basic block", f"{_BYOB}:BasicBlock",
                lambda st: {"kernel_size": st.kernel, "bottle_ratio": 1.0}, _rb_cost, byob=True),
    BlockFamily("bt", (_R, _K, _S, _B, _G, _C, _N), "ResNet bottleneck (ResNeXt when g > 1)",
                f"{_BYOB}:BottleneckBlock",
                lambda st: {"kernel_size": st.kernel, "bottle_ratio": st.bottle_ratio,
                            "group_size": bt_mid_channels(st.channels, st.bottle_ratio) // st.groups
                            if st.groups > 1 else None}, _bt_cost, byob=True),
)}
FAMILIES: dict[str, tuple[_Field, ...]] = {name: b.fields for name, b in BLOCKS.items()}


def block_family(name: str) -> BlockFamily:
    if name not in BLOCKS:
        raise ValueError(f"unknown block family {name!r}")
    return BLOCKS[name]


# -- specs --------------------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StemSpec:
    kernel: int
    stride: int
    channels: int
    act: str


@dataclasses.dataclass(frozen=True)
class StageSpec:
    """``repeats`` blocks of one family; the first has ``stride``, the rest stride 1. None: a key the family lacks."""

    block: str
    repeats: int
    kernel: int
    stride: int
    expansion: Optional[int]
    bottle_ratio: Optional[float]
    groups: Optional[int]
    channels: int
    se_ratio: Optional[float]
    act: str


@dataclasses.dataclass(frozen=True)
class HeadSpec:
    channels: int
    act: str


@dataclasses.dataclass(frozen=True)
class CnnSpec:
    stem: StemSpec
    stages: tuple[StageSpec, ...]
    head: HeadSpec
    space: ClassVar[str] = "cnn"


def make_stage(block: str, **keys: object) -> StageSpec:
    """A stage of ``block`` with the family's keys; keys the family lacks are None."""
    names = {f.attr for f in FAMILIES[block]}
    if set(keys) != names:
        raise ValueError(f"{block} takes keys {sorted(names)}, got {sorted(keys)}")
    full = {f.name: None for f in dataclasses.fields(StageSpec) if f.name != "block"}
    return StageSpec(block=block, **{**full, **keys})


def groups_fit(st: StageSpec) -> bool:
    """Whether a bottleneck's mid channels split into its groups (the other families have no groups)."""
    if st.block != "bt":
        return True
    mid = bt_mid_channels(st.channels, st.bottle_ratio)
    return mid % st.groups == 0 and mid >= st.groups

