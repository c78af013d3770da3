"""Proxy settings that fit the machine: the caps and the proxy training a search uses when the user does not set them.

The rule (:func:`fit_proxy`), from the device the trials run on and the data's size:

- **GPU** (``cuda``): the method's full proxy (arXiv 2603.12091): one epoch of SGD on the whole training split, batch
  128, lr 0.01, at the data's own resolution, scored on the whole validation and test splits; no caps.
- **CPU** with ``cores`` cores: one trial should take about ``TRIAL_S`` (60) seconds for the slowest model the caps
  allow. Images are scaled down to at most ``CPU_MAX_RESOLUTION`` (32) pixels; the caps are 1 M parameters and
  25 M FLOPs per image (the caps measured on digits); training is costed at 3 x the forward FLOPs and the CPU at
  ``CORE_GFLOPS`` (2) GFLOP/s per core, the slowest rate measured for a model within the caps on the 2-core machine
  (most train 5 to 20 times faster). That gives ``TRIAL_S x cores x CORE_GFLOPS / (3 x 25 M)`` image-epochs per
  trial (3,200 on 2 cores): a training subset of that many images for one epoch, or the whole split for up to
  ``CPU_MAX_EPOCHS`` (3) epochs when it is smaller; batch 32 at lr 0.05 (more, smaller steps on a small subset: the
  settings measured on digits). Validation and test splits keep their first ``CPU_EVAL_IMAGES`` (2,000) images.
- **digits** keeps its measured defaults (:data:`~llmnas_local.evaluators.proxy.DIGITS_PROXY`) on any device.

Every fitted value is a default: a setting the user gives (a flag, a grid's field) wins over it, one by one. The
fitted values land in the evaluator's recipe (resolution, split sizes, epochs, batch, lr) and its caps, so the recipe
hash names them. The rule reads only the device kind, the core count and the data's size, never a timing, so the same
command on the same machine gets the same settings and resumes the same run.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from llmnas_local.evaluators.proxy import DIGITS_PROXY, METHOD_PROXY
from llmnas_local.gpu import resolve_device

TRIAL_S = 60.0                 # seconds of training for the slowest model within the caps (CPU)
CORE_GFLOPS = 2.0              # training GFLOP/s of one CPU core, the slowest measured within the caps
CPU_MAX_RESOLUTION = 32
CPU_MAX_EPOCHS = 3
CPU_EVAL_IMAGES = 2000         # validation and test images scored per trial (CPU)
CPU_CAPS = {"max_params_m": 1.0, "max_flops_m": 25.0}
CPU_RECIPE = {"batch_size": 32, "lr": 0.05}
TRAIN_FLOPS_PER_FORWARD = 3    # forward + backward of a training step, in forward passes

# What the fit sets: DataSpec fields, TrainingConfig fields and the caps.
DATA_KEYS = ("resolution", "train_size", "val_size", "test_size")
RECIPE_KEYS = ("epochs", "batch_size", "lr")
CAP_KEYS = ("max_params_m", "max_flops_m")


@dataclasses.dataclass(frozen=True)
class Machine:
    """Where trials run: ``device`` "cpu" or "cuda", and the CPU cores this process may use."""

    device: str
    cores: int

    @classmethod
    def detect(cls, device: str = "auto") -> "Machine":
        """This machine: ``device`` as ``TrainingConfig.device`` takes it ("auto": cuda when torch sees a GPU)."""
        device = resolve_device(device)
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:           # not Linux
            cores = os.cpu_count() or 1
        return cls(device.split(":")[0], max(1, cores))

    def __str__(self) -> str:
        return "a GPU" if self.device == "cuda" else f"{self.cores} CPU core{'s' * (self.cores != 1)}"


@dataclasses.dataclass(frozen=True)
class ProxyFit:
    """The fitted defaults (``settings``: keys of DATA_KEYS, RECIPE_KEYS and CAP_KEYS; None: the data's own, or no
    cap) and why (``reason``, one line)."""

    machine: Machine
    settings: dict[str, Any]
    reason: str

    def describe(self, given: dict[str, Any] | None = None) -> str:
        """Two lines for a person: what the search uses and why; ``given`` (key -> the user's value) marks what the
        user set instead of the fit."""
        given = {k: v for k, v in (given or {}).items() if v is not None}
        s = {**self.settings, **given}

        def show(key: str, text: str) -> str:
            return text + (" (given)" if key in given else "")

        def size(key: str, what: str) -> str:
            return show(key, f"{s[key]:,} {what}" if s[key] is not None else f"all {what}")

        caps = [show(k, f"{s[k]:g}M {unit}") for k, unit in (("max_params_m", "parameters"),
                                                             ("max_flops_m", "FLOPs")) if s[k] is not None]
        res = show("resolution", f"{s['resolution']} px" if s["resolution"] else "native resolution")
        line = (f"proxy: {size('train_size', 'training images')} x {show('epochs', str(s['epochs']))} epoch(s), "
                f"batch {show('batch_size', str(s['batch_size']))}, lr {show('lr', format(s['lr'], 'g'))}, {res}, "
                f"{size('val_size', 'validation')} / {size('test_size', 'test')} images; caps: "
                + (", ".join(caps) if caps else "none"))
        return f"{line}\n  why: {self.reason}; a flag overrides each"


def fit_proxy(source: str, machine: Machine, *, num_train: int, num_val: int, num_test: int,
              input_size: int) -> ProxyFit:
    """The defaults for ``source`` (its name, for digits) with ``num_*`` images in its splits at ``input_size``
    pixels (the resolution it loaded at), on ``machine``. See the module docstring for the rule."""
    if source == "digits":
        settings = {**dict.fromkeys(DATA_KEYS), **{k: DIGITS_PROXY.get(k) for k in (*RECIPE_KEYS, *CAP_KEYS)},
                    "resolution": DIGITS_PROXY["resolution"]}
        return ProxyFit(machine, settings, "digits: its measured defaults (every model at chance under the "
                                           "method's proxy of 10 steps)")
    if machine.device == "cuda":
        settings = {**dict.fromkeys((*DATA_KEYS, *CAP_KEYS)), **{k: METHOD_PROXY[k] for k in RECIPE_KEYS}}
        return ProxyFit(machine, settings, "on a GPU: the method's proxy, one epoch on the full training split")
    resolution = min(input_size, CPU_MAX_RESOLUTION)
    image_epochs = int(TRIAL_S * machine.cores * CORE_GFLOPS * 1e9
                       / (TRAIN_FLOPS_PER_FORWARD * CPU_CAPS["max_flops_m"] * 1e6))
    if num_train >= image_epochs:
        epochs, train_size = 1, image_epochs
    else:
        epochs, train_size = max(1, min(CPU_MAX_EPOCHS, image_epochs // num_train)), None
    settings = {"resolution": resolution if resolution != input_size else None, "train_size": train_size,
                "val_size": CPU_EVAL_IMAGES if num_val > CPU_EVAL_IMAGES else None,
                "test_size": CPU_EVAL_IMAGES if num_test > CPU_EVAL_IMAGES else None,
                "epochs": epochs, **CPU_RECIPE, **CPU_CAPS}
    reason = (f"{machine} and {num_train:,} training images at {input_size} px: about {TRIAL_S:g} s a trial for "
              f"the slowest model within the caps (assumed {CORE_GFLOPS:g} GFLOP/s a core, "
              f"{image_epochs:,} image-epochs)")
    return ProxyFit(machine, settings, reason)
