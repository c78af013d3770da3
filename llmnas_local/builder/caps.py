"""The size of a model and the user's caps on it. No torch here: table look-ups check caps without importing it."""
from __future__ import annotations

import dataclasses

from llmnas_local.dsl.base import Constraints, SemanticError


@dataclasses.dataclass(frozen=True)
class ModelProfile:
    params_m: float   # millions of trainable and frozen parameters
    flops_m: float    # millions of FLOPs for one image (torch's FlopCounterMode: a multiply-add counts 2)


def check_caps(profile: ModelProfile, constraints: Constraints) -> None:
    """Raise :class:`SemanticError` if the model exceeds the user's caps on parameters or FLOPs."""
    if constraints.max_params_m is not None and profile.params_m > constraints.max_params_m:
        raise SemanticError(f"{profile.params_m:.3f}M parameters exceed the cap of {constraints.max_params_m:g}M")
    if constraints.max_flops_m is not None and profile.flops_m > constraints.max_flops_m:
        raise SemanticError(f"{profile.flops_m:.1f}M FLOPs exceed the cap of {constraints.max_flops_m:g}M")
