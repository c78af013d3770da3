"""Spec -> PyTorch model, from timm's blocks and layers; and the profile (parameters, FLOPs, output shape) of a model."""
from __future__ import annotations

from typing import Any

from llmnas_local.builder.profile import ModelProfile, check_caps, profile_model


def build_model(spec: Any, num_classes: int, in_chans: int = 3, input_size: int = 32):
    """Build the network a spec describes. Every spec class names its space in its ``space`` class attribute."""
    from llmnas_local.dsl import get_space

    return get_space(spec.space).build(spec, num_classes=num_classes, in_chans=in_chans, input_size=input_size)


__all__ = ["ModelProfile", "build_model", "check_caps", "profile_model"]
