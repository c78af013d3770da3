"""Spec -> PyTorch model, from timm's blocks and layers; and the profile (parameters, FLOPs, output shape) of a model."""
from __future__ import annotations

from typing import Any

from llmnas_local.builder.caps import ModelProfile, check_caps


def profile_model(model, num_classes: int, in_chans: int, input_size: int) -> ModelProfile:
    """See :func:`llmnas_local.builder.profile.profile_model` (imported on use: it needs torch)."""
    from llmnas_local.builder.profile import profile_model as profile

    return profile(model, num_classes, in_chans, input_size)


def build_model(spec: Any, num_classes: int, in_chans: int = 3, input_size: int = 32):
    """Build the network a spec describes. Every spec class names its space in its ``space`` class attribute."""
    from llmnas_local.dsl import get_space

    return get_space(spec.space).build(spec, num_classes=num_classes, in_chans=in_chans, input_size=input_size)


__all__ = ["ModelProfile", "build_model", "check_caps", "profile_model"]
