"""The one-epoch proxy itself: the training settings (:class:`TrainingConfig`), the data as tensors on the device and
the training loop, as a worker process runs them (:mod:`llmnas_local.evaluators.worker`); the evaluator that drives
the workers is :class:`llmnas_local.evaluators.training.TrainingEvaluator`. torch is imported inside the functions.

Defaults are the method's proxy (one epoch of SGD, lr 0.01, momentum 0.9, weight decay 5e-4 on every parameter,
cosine schedule per step down to 0, batch 128, plain cross-entropy) with no augmentation: one epoch is too short for
augmentation to pay, and a flip is wrong for some data (digits); ``augment="flip"`` turns on a seeded random
horizontal flip. A search's defaults depend on the data and the machine: :func:`llmnas_local.evaluators.fit.fit_proxy`
(digits trains longer, on smaller images: :data:`DIGITS_PROXY`).
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

from llmnas_local.evaluators.data import Dataset
from llmnas_local.gpu import check_device, resolve_device
from llmnas_local.records import TEST_ACC, TRAIN_LOSS, TRAIN_S, VAL_ACC

TRAINING_VERSION = 1        # bump when the meaning of a recipe changes (loop, normalisation, evaluation)
EVAL_BATCH = 1000
AUGMENTS = ("none", "flip")
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16", "auto")          # "auto": bfloat16 autocast on a GPU that has it, else float32
MEMORY_FORMATS = ("contiguous", "channels_last", "auto")   # "auto": channels_last on a GPU, else contiguous

# The method's one-epoch proxy (arXiv 2603.12091): the default recipe.
METHOD_PROXY = {"epochs": 1, "batch_size": 128, "lr": 0.01}
# On sklearn's digits (1,293 training images) the method's proxy is 10 SGD steps and every model stays at chance, so
# the embedded default trains longer on smaller images, under caps that keep one trial under a minute on 2 cores
# (measured: 94-99% validation accuracy for the space's examples).
DIGITS_PROXY = {"epochs": 3, "batch_size": 32, "lr": 0.05, "resolution": 16, "max_params_m": 1.0, "max_flops_m": 25.0}


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a proposal is trained. Every field is in the recipe, resolved (:meth:`resolved`): ``device`` as its type,
    ``dtype`` and ``memory_format`` as the concrete values the training used, so a CPU run (float32, contiguous) and
    a GPU run (bfloat16 autocast, channels-last) of the same settings never share a recipe hash."""

    epochs: int = 1
    batch_size: int = 128
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False
    schedule: str = "cosine"          # "cosine": per step from lr to 0; "constant"
    augment: str = "none"             # "none" or "flip" (random horizontal flip, seeded)
    seed: int = 0                     # model initialisation, batch order, augmentation
    device: str = "auto"              # "cpu", "cuda", "cuda:N" or "auto" (cuda when available)
    dtype: str = "auto"               # "float32", "bfloat16" (autocast; runs on CPU too if asked) or "auto"
    memory_format: str = "auto"       # "contiguous", "channels_last" (model and batches) or "auto"
    deterministic: bool = True        # deterministic algorithms (cuDNN and friends); slower on GPU

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        for field, allowed in (("schedule", SCHEDULES), ("augment", AUGMENTS), ("dtype", DTYPES),
                               ("memory_format", MEMORY_FORMATS)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {', '.join(allowed)}, got {getattr(self, field)!r}")
        check_device(self.device)

    def resolved_device(self) -> str:
        return resolve_device(self.device)

    def resolved(self, device: str | None = None) -> "TrainingConfig":
        """This config with ``device`` (default: :meth:`resolved_device`), ``dtype`` and ``memory_format`` concrete.
        ``auto`` means bfloat16 autocast and channels-last on a CUDA device (bfloat16 only where the GPU computes in
        it: compute capability 8.0 or more, or unknown), float32 and contiguous on the CPU."""
        device = device or self.resolved_device()
        on_gpu = device.startswith("cuda")
        dtype, memory_format = self.dtype, self.memory_format
        if dtype == "auto":
            from llmnas_local.gpu import bf16_supported

            dtype = "bfloat16" if on_gpu and bf16_supported(device) else "float32"
        if memory_format == "auto":
            memory_format = "channels_last" if on_gpu else "contiguous"
        return dataclasses.replace(self, device=device, dtype=dtype, memory_format=memory_format)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


def lr_at(config: TrainingConfig, step: int, total: int) -> float:
    """Learning rate of 0-based ``step`` out of ``total``."""
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / total))


# -- data on the device -------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class TensorData:
    """A data set's splits as normalised float (N, C, H, W) tensors and int64 labels on one device."""

    x_train: Any
    y_train: Any
    x_val: Any
    y_val: Any
    x_test: Any
    y_test: Any
    mean: tuple[float, ...]
    std: tuple[float, ...]


def prepare_tensors(ds: Dataset, device: str) -> TensorData:
    """Normalise once with the training split's per-channel statistics (exact integer sums: deterministic)."""
    import numpy as np
    import torch

    n_px, s1, s2 = 0, 0, 0
    for i in range(0, len(ds.x_train), 4096):
        c = ds.x_train[i:i + 4096].reshape(-1, ds.in_chans).astype(np.int64)
        n_px, s1, s2 = n_px + len(c), s1 + c.sum(0), s2 + (c * c).sum(0)
    mean = s1 / n_px
    std = np.sqrt(np.maximum(s2 / n_px - mean * mean, 1e-12))
    m = torch.tensor(mean / 255.0, dtype=torch.float32).view(1, -1, 1, 1)
    s = torch.tensor(std / 255.0, dtype=torch.float32).view(1, -1, 1, 1)

    def images(x: np.ndarray) -> torch.Tensor:
        out = torch.empty((len(x), x.shape[3], x.shape[1], x.shape[2]), dtype=torch.float32, device=device)
        for i in range(0, len(x), 4096):
            chunk = torch.from_numpy(x[i:i + 4096]).to(device).permute(0, 3, 1, 2).float().div_(255.0)
            out[i:i + 4096] = (chunk - m.to(device)) / s.to(device)
        return out

    def labels(y: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)).to(device)

    return TensorData(images(ds.x_train), labels(ds.y_train), images(ds.x_val), labels(ds.y_val),
                      images(ds.x_test), labels(ds.y_test), tuple(mean / 255.0), tuple(std / 255.0))


# -- the proxy training -------------------------------------------------------------------------------------------
def train_and_score(model: Any, data: TensorData, config: TrainingConfig, device: str) -> dict[str, float]:
    """Train ``model`` (already seeded and built) as ``config`` says; return train_s, train_loss, val_acc, test_acc.

    Raises :class:`Diverged` ("diverged: loss is nan at step N", N counted from 1) as soon as a loss is not finite.
    ``config``'s ``auto`` settings are resolved for ``device`` (:meth:`TrainingConfig.resolved`).
    """
    import torch
    import torch.nn.functional as F

    config = config.resolved(device)
    dev = torch.device(device)
    layout = torch.channels_last if config.memory_format == "channels_last" else torch.contiguous_format
    model.to(dev, memory_format=layout).train()
    opt = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                          weight_decay=config.weight_decay, nesterov=config.nesterov)
    gen = torch.Generator().manual_seed(config.seed)
    n, bs = len(data.y_train), config.batch_size
    steps_per_epoch = n // bs + (1 if n % bs > 1 else 0)      # a last batch of one would break BatchNorm: dropped
    total = config.epochs * steps_per_epoch
    losses = torch.zeros(total, device=dev)
    check_every = 1 if dev.type == "cpu" else 25               # a check syncs the GPU: not every step there
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.dtype == "bfloat16")
    _sync(dev)
    t0 = time.perf_counter()
    step = checked = 0
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=gen).to(dev)
        for i in range(steps_per_epoch):
            idx = perm[i * bs:(i + 1) * bs]
            x, y = data.x_train[idx], data.y_train[idx]
            if config.augment == "flip":
                flip = (torch.rand(len(idx), generator=gen) < 0.5).to(dev).view(-1, 1, 1, 1)
                x = torch.where(flip, x.flip(3), x)
            x = x.contiguous(memory_format=layout)
            for group in opt.param_groups:
                group["lr"] = lr_at(config, step, total)
            with amp:
                loss = F.cross_entropy(model(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses[step] = loss.detach()
            step += 1
            if step - checked >= check_every or step == total:
                _check_finite(losses, checked, step)
                checked = step
    _sync(dev)
    train_s = time.perf_counter() - t0
    return {TRAIN_S: train_s, TRAIN_LOSS: losses[total - steps_per_epoch:].mean().item(),
            VAL_ACC: accuracy(model, data.x_val, data.y_val, amp, layout),
            TEST_ACC: accuracy(model, data.x_test, data.y_test, amp, layout)}


def accuracy(model: Any, x: Any, y: Any, amp: Any, layout: Any = None) -> float:
    """Top-1 accuracy in % in eval mode (batches in memory ``layout``, a torch memory format, if given)."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad(), amp:
        for i in range(0, len(y), EVAL_BATCH):
            batch = x[i:i + EVAL_BATCH]
            if layout is not None:
                batch = batch.contiguous(memory_format=layout)
            correct += (model(batch).argmax(1) == y[i:i + EVAL_BATCH]).sum().item()
    return 100.0 * correct / max(1, len(y))


def _check_finite(losses: Any, start: int, stop: int) -> None:
    import torch

    window = losses[start:stop]
    if not bool(torch.isfinite(window).all()):
        bad = int((~torch.isfinite(window)).nonzero()[0, 0])
        value = float(window[bad])
        raise Diverged(f"diverged: loss is {value} at step {start + bad + 1}")


def _sync(dev: Any) -> None:
    import torch

    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
