"""A test-only search space: a tiny conv net from timm layers, with faults to inject into the worker.

``tiny_c8_ok`` trains normally; the other faults act in training mode only, so building and profiling succeed:
``raise`` raises in forward, ``nan`` makes the logits NaN, ``sleep`` hangs, ``kill`` SIGKILLs its own process.
The worker imports this module by name (``tests.evaluators.tiny_space:TinySpace``).
"""
from __future__ import annotations

import dataclasses
import os
import random
import signal
import time
import typing

import torch.nn as nn
from timm.layers import ConvNormAct, SelectAdaptivePool2d

from llmnas_local.dsl.base import BaseSpace, Constraints, DslError, SemanticError

FAULTS = ("ok", "raise", "nan", "sleep", "kill")


@dataclasses.dataclass(frozen=True)
class TinySpec:
    space: typing.ClassVar[str] = "tiny"
    width: int
    fault: str = "ok"


class TinySpace(BaseSpace):
    name = "tiny"

    def parse(self, text: str) -> TinySpec:
        parts = text.split("_")
        if len(parts) != 3 or parts[0] != "tiny" or not parts[1].startswith("c") or parts[2] not in FAULTS:
            raise DslError(text, 0, "tiny_c<width>_<fault>")
        return TinySpec(int(parts[1][1:]), parts[2])

    def format(self, spec: TinySpec) -> str:
        return f"tiny_c{spec.width}_{spec.fault}"

    def canonicalize(self, spec: TinySpec) -> TinySpec:
        return spec

    def check(self, spec: TinySpec, constraints: Constraints) -> None:
        if spec.width > 256:
            raise SemanticError("width above 256")

    def build(self, spec: TinySpec, num_classes: int, in_chans: int, input_size: int):
        w = spec.width
        body = nn.Sequential(ConvNormAct(in_chans, w, 3, stride=2), ConvNormAct(w, 2 * w, 3, stride=2),
                             SelectAdaptivePool2d(pool_type="avg", flatten=True), nn.Linear(2 * w, num_classes))
        return _Faulty(body, spec.fault)

    def mutate(self, spec: TinySpec, rng: random.Random) -> TinySpec:
        return dataclasses.replace(spec, width=spec.width * 2)

    def describe(self, hints: bool = False) -> str:
        return "tiny_c<width>_<fault>"

    def examples(self) -> list[str]:
        return ["tiny_c8_ok"]


class _Faulty(nn.Module):
    def __init__(self, body: nn.Module, fault: str):
        super().__init__()
        self.body, self.fault = body, fault

    def forward(self, x):
        if self.training:
            if self.fault == "raise":
                raise RuntimeError("boom in forward\nsecond line")
            if self.fault == "sleep":
                time.sleep(60)
            if self.fault == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
        y = self.body(x)
        return y * float("nan") if self.training and self.fault == "nan" else y
