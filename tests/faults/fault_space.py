"""A test-only search space whose designs fail on purpose in the training worker (the worker imports it by name).

``fault_c<width>_<fault>``: a tiny conv net from timm layers. Faults act in training mode only, so building and
profiling succeed: ``ok`` trains, ``raise`` raises in forward, ``nan`` makes the loss NaN, ``sleep`` hangs,
``kill`` SIGKILLs its own process (the OOM killer), ``segv`` SIGSEGVs it (a crash in native code).
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

FAULTS = ("ok", "raise", "nan", "sleep", "kill", "segv")


@dataclasses.dataclass(frozen=True)
class FaultSpec:
    space: typing.ClassVar[str] = "fault"
    width: int
    fault: str = "ok"


class FaultSpace(BaseSpace):
    name = "fault"

    def parse(self, text: str) -> FaultSpec:
        parts = text.split("_")
        if len(parts) != 3 or parts[0] != "fault" or not parts[1][1:].isdigit() or parts[2] not in FAULTS:
            raise DslError(text, 0, "fault_c<width>_<fault>")
        return FaultSpec(int(parts[1][1:]), parts[2])

    def format(self, spec: FaultSpec) -> str:
        return f"fault_c{spec.width}_{spec.fault}"

    def canonicalize(self, spec: FaultSpec) -> FaultSpec:
        return spec

    def check(self, spec: FaultSpec, constraints: Constraints) -> None:
        if not 1 <= spec.width <= 64:
            raise SemanticError("width outside 1..64")

    def build(self, spec: FaultSpec, num_classes: int, in_chans: int, input_size: int):
        w = spec.width
        body = nn.Sequential(ConvNormAct(in_chans, w, 3, stride=2), SelectAdaptivePool2d(pool_type="avg", flatten=True),
                             nn.Linear(w, num_classes))
        return _Faulty(body, spec.fault)

    def mutate(self, spec: FaultSpec, rng: random.Random) -> FaultSpec:
        return dataclasses.replace(spec, width=spec.width % 64 + 1)

    def describe(self, hints: bool = False) -> str:
        return "fault_c<width>_<fault>"

    def examples(self) -> list[str]:
        return ["fault_c8_ok"]

    def sample(self, rng: random.Random) -> str:
        return f"fault_c{rng.randint(1, 64)}_ok"


class _Faulty(nn.Module):
    def __init__(self, body: nn.Module, fault: str):
        super().__init__()
        self.body, self.fault = body, fault

    def forward(self, x):
        if self.training:
            if self.fault == "raise":
                raise RuntimeError("boom in forward")
            if self.fault == "sleep":
                time.sleep(600)
            if self.fault in ("kill", "segv"):
                os.kill(os.getpid(), signal.SIGKILL if self.fault == "kill" else signal.SIGSEGV)
        y = self.body(x)
        return y * float("nan") if self.training and self.fault == "nan" else y
