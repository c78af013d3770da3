"""Final training: train the chosen architecture fully, select its weights on validation, report test once.

The recipe (:class:`FinalConfig`, documented defaults): SGD with Nesterov momentum 0.9, lr 0.05 for batch 128, weight
decay 5e-4 on conv and linear weights (not on norms and biases), cross-entropy with label smoothing 0.1, a cosine
schedule per step from lr to 0 over the epochs given, random crop (zero padding of size/8 on each side) and a random
horizontal flip (no flip on digits, where a flip changes the class), batch order and augmentation from one seeded
generator. Data: the search's data set and train/validation split, whole (:mod:`llmnas_local.final.data`), as tensors
on the device, normalised with the training split's mean and std (:func:`~llmnas_local.evaluators.proxy.prepare_tensors`).

Each epoch ends with the validation accuracy and a checkpoint (model, optimizer, generator, best weights so far,
history) written atomically; a training killed at any point (``kill -9``) resumes from the last checkpoint when run
again, and on CPU ends with the weights an uninterrupted run with as many torch threads has (a sum split among
other threads rounds otherwise). The weights of the epoch with the best validation
accuracy are kept; the test split is scored once, with them, at the end. The result is a :class:`FinalRecord` in the
store (``put_final``) and the weights a safetensors file beside the store's data
(``<store>/finals/<arch hash 12>-<recipe hash 12>/weights.safetensors``).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from pathlib import Path
from typing import Any, Callable

from llmnas_local.final.checkpoint import (CHECKPOINT, WEIGHTS, load_checkpoint, save_checkpoint, save_weights,
                                           training_lock)
from llmnas_local.gpu import check_device, resolve_device
from llmnas_local.records import (FLOPS_M, PARAMS_M, TEST_ACC, TRAIN_LOSS, TRAIN_S, VAL_ACC, FinalRecord,
                                  TrialRecord)
from llmnas_local.store.base import BaseStore

FINAL_VERSION = 1                   # bump when the meaning of a final recipe changes
AUGMENTS = ("auto", "crop-flip", "crop", "none")
FINALS_DIR = "finals"
PROGRESS_EVERY_S = 30.0         # a progress line within an epoch at most this often


@dataclasses.dataclass(frozen=True)
class FinalConfig:
    """How the chosen architecture is trained. Every field but ``device`` (recorded as its type) is in the recipe."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    label_smoothing: float = 0.1
    augment: str = "auto"           # "auto": crop-flip, or crop on digits
    seed: int = 0
    device: str = "auto"            # cpu, cuda, cuda:N or auto (cuda when available)
    dtype: str = "float32"          # or bfloat16 (autocast)
    train_size: int | None = None   # the first N images of the training split (a quick run); None: all of them

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("--epochs must be >= 1 and --batch-size >= 2")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ValueError(f"--lr must be a positive number, got {self.lr}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ValueError(f"--label-smoothing must be in [0, 1), got {self.label_smoothing}")
        if self.augment not in AUGMENTS:
            raise ValueError(f"--augment must be one of {', '.join(AUGMENTS)}, got {self.augment!r}")
        if self.dtype not in ("float32", "bfloat16"):
            raise ValueError(f"--dtype must be float32 or bfloat16, got {self.dtype!r}")
        if self.train_size is not None and self.train_size < 1:
            raise ValueError(f"--train-size must be >= 1, got {self.train_size}")
        check_device(self.device, "--device")

    def resolved_device(self) -> str:
        return resolve_device(self.device)


def final_recipe(config: FinalConfig, data: dict[str, Any], augment: str, device: str) -> dict[str, Any]:
    """Everything that changes the trained weights: the settings and the data (by content and split)."""
    return {
        "kind": "final", "version": FINAL_VERSION, "data": data, "epochs": config.epochs,
        "batch_size": config.batch_size, "optimizer": {"name": "sgd", "nesterov": True, "lr": config.lr,
                                                       "momentum": config.momentum,
                                                       "weight_decay": config.weight_decay,
                                                       "weight_decay_on": "conv and linear weights"},
        "schedule": "cosine_per_step", "loss": "cross_entropy", "label_smoothing": config.label_smoothing,
        "augment": augment, "crop_padding": "size // 8, zeros", "seed": config.seed,
        "device": device.split(":")[0], "dtype": config.dtype, "select": "best val_acc epoch",
    }


def recipe_hash(recipe: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def code_version() -> str:
    """``llmnas_local`` version and, in a git checkout, its commit (``+dirty`` if the package has changes)."""
    import subprocess

    import llmnas_local

    version = llmnas_local.__version__
    root = Path(llmnas_local.__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "."], capture_output=True,
                               text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{sha}{'.dirty' if dirty else ''}" if sha else version


def final_dir(store_dir: Path, arch_hash: str, recipe_h: str) -> Path:
    return Path(store_dir) / FINALS_DIR / f"{arch_hash[:12]}-{recipe_h[:12]}"


def train_final(store: BaseStore, arch: str | None = None, *, best: bool = False, run_id: str | None = None,
                data: str | None = None, config: FinalConfig | None = None, store_dir: str | os.PathLike | None = None,
                log: Callable[[str], None] = lambda s: None) -> FinalRecord:
    """Train an architecture of ``store`` (a hash or unique prefix, or ``best``: see
    :func:`~llmnas_local.final.select.select_trial`) fully and record the result; return its record. A final training
    of the same architecture and recipe that the store holds already is returned as it is. ``store_dir`` is where the
    checkpoints and weights go (default: the store's own directory). ``log`` receives progress lines.

    Raises ValueError (one line) for what the user asked wrongly, and
    :class:`~llmnas_local.evaluators.proxy.Diverged` if the loss becomes NaN (the last checkpoint stays)."""
    from llmnas_local.evaluators.data import describe_dataset
    from llmnas_local.final.data import find_dataset
    from llmnas_local.final.select import select_trial

    config = config or FinalConfig()
    where = str(store_dir or getattr(store, "path", "the store"))
    trial = select_trial(store, arch, best=best, run_id=run_id, where=where)
    run = store.get_run(trial.run_id)
    log(f"architecture {trial.arch_hash[:12]} of run {trial.run_id} (proxy val_acc "
        f"{trial.metrics.get(VAL_ACC, float('nan')):.2f}): {trial.canonical}")
    ds = find_dataset(run.recipe, data, run_id=f"run {run.run_id}")
    if config.train_size is not None and config.train_size < len(ds.y_train):   # in the recipe as num_train
        ds = dataclasses.replace(ds, x_train=ds.x_train[:config.train_size], y_train=ds.y_train[:config.train_size])
    augment = config.augment if config.augment != "auto" else ("crop" if ds.format == "digits" else "crop-flip")
    device = config.resolved_device()
    info = {k: v for k, v in describe_dataset(ds).items() if k not in ("name", "format")}
    recipe = final_recipe(config, info, augment, device)
    rhash = recipe_hash(recipe)
    for done in store.finals(trial.arch_hash):
        if done.recipe_hash == rhash:
            log(f"already trained with this recipe: val_acc {done.metrics[VAL_ACC]:.2f}, test_acc "
                f"{done.metrics[TEST_ACC]:.2f} (epoch {done.best_epoch} of {len(done.history)})")
            return done
    if store_dir is None:
        if not hasattr(store, "path"):
            raise ValueError("give store_dir: where the checkpoints and weights of the training go")
        store_dir = store.path
    directory = final_dir(Path(store_dir), trial.arch_hash, rhash)
    with training_lock(directory):
        return _train_locked(store, trial, run.space, ds, config, recipe, rhash, device, directory, log)


def _train_locked(store: BaseStore, trial: TrialRecord, space_name: str, ds, config: FinalConfig,
                  recipe: dict[str, Any], rhash: str, device: str, directory: Path,
                  log: Callable[[str], None]) -> FinalRecord:
    import random

    import numpy as np
    import torch

    from llmnas_local.builder import profile_model
    from llmnas_local.dsl import get_space
    from llmnas_local.evaluators.proxy import accuracy, prepare_tensors

    space = get_space(space_name)
    random.seed(config.seed)
    np.random.seed(config.seed)
    torch.manual_seed(config.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    model = space.build(space.parse(trial.canonical), num_classes=ds.num_classes, in_chans=ds.in_chans,
                        input_size=ds.input_size)
    profile = profile_model(model, ds.num_classes, ds.in_chans, ds.input_size)
    data = prepare_tensors(ds, device)
    # What the weights expect and mean, beside the recipe (it follows from the data: not in the hash).
    recipe = {**recipe, "normalize": {"mean": list(data.mean), "std": list(data.std)}, "classes": list(ds.classes)}
    dev = torch.device(device)
    model.to(dev)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": config.weight_decay},
                           {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, momentum=config.momentum,
                          nesterov=True)
    gen = torch.Generator().manual_seed(config.seed)
    state = {"epoch": 0, "best_val": -1.0, "best_epoch": 0, "best_model": None, "history": [], "train_s": 0.0}
    ckpt = load_checkpoint(directory / CHECKPOINT, device)
    if ckpt is not None:
        if ckpt.get("recipe_hash") != rhash:
            raise ValueError(f"{directory / CHECKPOINT} belongs to another recipe; delete it to start over")
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        gen.set_state(ckpt["generator"].cpu())
        state = {k: ckpt[k] for k in state}
        log(f"resumed from the checkpoint of epoch {state['epoch']} of {config.epochs}")
    log(f"training {profile.params_m:.3f}M parameters, {profile.flops_m:.1f}M FLOPs on {device}: {len(ds.y_train)} "
        f"training, {len(ds.y_val)} validation images, {config.epochs} epochs, augment {recipe['augment']}")
    amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.dtype == "bfloat16")
    n, bs = len(data.y_train), config.batch_size
    steps = n // bs + (1 if n % bs > 1 else 0)        # a last batch of one would break BatchNorm: dropped
    total = config.epochs * steps
    pad = max(1, ds.input_size // 8)
    epoch_times: list[float] = []
    for epoch in range(state["epoch"], config.epochs):
        t0 = shown = time.perf_counter()
        model.train()
        perm = torch.randperm(n, generator=gen).to(dev)
        loss_sum = torch.zeros((), device=dev)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            x = augment_batch(data.x_train[idx], recipe["augment"], pad, gen)
            for group in opt.param_groups:
                group["lr"] = config.lr * 0.5 * (1.0 + math.cos(math.pi * (epoch * steps + i) / total))
            with amp:
                loss = torch.nn.functional.cross_entropy(model(x).float(), data.y_train[idx],
                                                         label_smoothing=config.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
            if time.perf_counter() - shown > PROGRESS_EVERY_S:       # long epochs (CIFAR on a CPU): a line now and then
                shown = time.perf_counter()
                running = float(loss_sum) / (i + 1)
                _check_finite(running, epoch, state["epoch"])
                left = (steps - i - 1) * (shown - t0) / (i + 1)
                log(f"  epoch {epoch + 1}/{config.epochs}  step {i + 1}/{steps}  loss {running:.4f}"
                    f"  epoch ends in {_duration(left)}")
        train_loss = float(loss_sum) / steps
        _check_finite(train_loss, epoch, state["epoch"])
        val = accuracy(model, data.x_val, data.y_val, amp)
        epoch_s = time.perf_counter() - t0
        epoch_times.append(epoch_s)
        state["history"].append({"epoch": epoch + 1, TRAIN_LOSS: train_loss, VAL_ACC: val, "epoch_s": epoch_s})
        if val > state["best_val"]:
            state["best_val"], state["best_epoch"] = val, epoch + 1
            state["best_model"] = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        state["epoch"], state["train_s"] = epoch + 1, state["train_s"] + epoch_s
        save_checkpoint(directory / CHECKPOINT, {**state, "recipe_hash": rhash, "model": model.state_dict(),
                                                 "optimizer": opt.state_dict(), "generator": gen.get_state()})
        eta = (config.epochs - epoch - 1) * sum(epoch_times) / len(epoch_times)
        log(f"epoch {epoch + 1}/{config.epochs}  loss {train_loss:.4f}  val_acc {val:.2f}  (best {state['best_val']:.2f}"
            f" @ {state['best_epoch']})  {epoch_s:.1f} s  ETA {_duration(eta)}")
    model.load_state_dict(state["best_model"])
    test = accuracy(model, data.x_test, data.y_test, amp)
    best_row = state["history"][state["best_epoch"] - 1]
    metrics = {VAL_ACC: state["best_val"], TEST_ACC: test, PARAMS_M: profile.params_m, FLOPS_M: profile.flops_m,
               TRAIN_S: state["train_s"], TRAIN_LOSS: best_row[TRAIN_LOSS]}
    sha = save_weights(directory / WEIGHTS, state["best_model"])      # no metadata: the same weights, the same bytes
    weights = str((directory / WEIGHTS).relative_to(directory.parents[1]))
    record = FinalRecord(arch_hash=trial.arch_hash, recipe_hash=rhash, space=space_name, canonical=trial.canonical,
                         run_id=trial.run_id, trial_recipe_hash=trial.recipe_hash, recipe=recipe, metrics=metrics,
                         best_epoch=state["best_epoch"], history=state["history"], weights=weights,
                         weights_sha256=sha, code_version=code_version())
    store.put_final(record)
    (directory / CHECKPOINT).unlink(missing_ok=True)
    log(f"done: val_acc {metrics[VAL_ACC]:.2f} (epoch {record.best_epoch}), test_acc {test:.2f}, "
        f"{_duration(state['train_s'])} of training; weights {directory / WEIGHTS}")
    return record


def _check_finite(loss: float, epoch: int, saved: int) -> None:
    """Raise Diverged (one line) if the training loss of 0-based ``epoch`` is not finite; ``saved``: the epochs the
    checkpoint holds."""
    if not math.isfinite(loss):
        from llmnas_local.evaluators.proxy import Diverged

        kept = f"the checkpoint of epoch {saved} is kept" if saved else "no epoch completed"
        raise Diverged(f"diverged: the training loss is {loss} in epoch {epoch + 1}; {kept}; try a lower --lr")


def augment_batch(x, augment: str, pad: int, gen):
    """A random crop (zero padding of ``pad`` on each side, one offset per image) and, for ``crop-flip``, a random
    horizontal flip; the draws come from ``gen`` (a CPU generator), so they are the same on every device."""
    import torch
    import torch.nn.functional as F

    if augment == "none":
        return x
    b, _, h, w = x.shape
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=gen).to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, :, None]          # (b, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, :]          # (b, 1, w)
    batch = torch.arange(b, device=x.device)[:, None, None]
    x = padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)      # (b, c, h, w)
    if augment == "crop-flip":
        flip = (torch.rand(b, generator=gen) < 0.5).to(x.device).view(-1, 1, 1, 1)
        x = torch.where(flip, x.flip(3), x)
    return x.contiguous()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m" if seconds >= 3600 else \
        f"{seconds // 60}m{seconds % 60:02d}s"
