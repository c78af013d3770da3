"""Parameters and FLOPs of a built model, measured on a dummy forward pass that also checks the output shape."""
from __future__ import annotations

import logging

import torch
import torch.nn as nn

from llmnas_local.builder.caps import ModelProfile
from llmnas_local.dsl.base import SemanticError

# FLOPs of triton kernels do not concern these models; the import-time warning that triton is absent is noise here.
logging.getLogger("torch.utils.flop_counter").setLevel(logging.ERROR)
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402  (after the logger is quieted)


def profile_model(model: nn.Module, num_classes: int, in_chans: int, input_size: int) -> ModelProfile:
    """Count parameters, run one image through ``model`` in eval mode counting FLOPs, and check the output shape."""
    params = sum(p.numel() for p in model.parameters())
    was_training = model.training
    model.eval()
    try:
        x = torch.zeros(1, in_chans, input_size, input_size)
        counter = FlopCounterMode(display=False)
        with torch.no_grad(), counter:
            out = model(x)
    finally:
        model.train(was_training)
    if tuple(out.shape) != (1, num_classes):
        raise SemanticError(f"output shape {tuple(out.shape)} != expected (1, {num_classes})")
    return ModelProfile(params_m=params / 1e6, flops_m=counter.get_total_flops() / 1e6)
