"""The one-epoch proxy: train an architecture briefly on local data and score it on the validation split.

Defaults are the method's proxy (one epoch of SGD, lr 0.01, momentum 0.9, weight decay 5e-4 on every parameter,
cosine schedule per step down to 0, batch 128, plain cross-entropy) with no augmentation: one epoch is too short for
augmentation to pay, and a flip is wrong for some data (digits); ``augment="flip"`` turns on a seeded random
horizontal flip.

Data lives as tensors on the training device, normalised once with the training split's per-channel mean and std
(airbench style); batches are sliced from a seeded permutation; there is no DataLoader and no loader process. Each
trial runs in an isolated worker process (:mod:`llmnas_local.evaluators.worker`) under a wall-time limit, so a crash,
a hang or an out-of-memory kill becomes an :class:`Outcome`, never an exception in the search.

On CPU a trial is deterministic for a given recipe (seeded model initialisation and batch order, deterministic
algorithms, exact integer normalisation statistics); the number of threads is not in the recipe and may change the
last bits of a result.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import time
from typing import Any

from llmnas_local.dsl.base import BaseSpace, Constraints, SemanticError
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.evaluators.data import Dataset, DataSpec, describe_dataset, load_dataset
from llmnas_local.evaluators.worker import START_FAILED, TrialWorker, WorkerStartError, one_line, space_ref
from llmnas_local.records import EVAL_S, FLOPS_M, PARAMS_M, TEST_ACC, TRAIN_LOSS, TRAIN_S, VAL_ACC, Outcome

TRAINING_VERSION = 1        # bump when the meaning of a recipe changes (loop, normalisation, evaluation)
EVAL_BATCH = 1000
AUGMENTS = ("none", "flip")
SCHEDULES = ("cosine", "constant")
DTYPES = ("float32", "bfloat16")

# The method's one-epoch proxy (arXiv 2603.12091): the default recipe.
METHOD_PROXY = {"epochs": 1, "batch_size": 128, "lr": 0.01}
# On sklearn's digits (1,293 training images) the method's proxy is 10 SGD steps and every model stays at chance, so
# the embedded default trains longer on smaller images, under caps that keep one trial under a minute on 2 cores
# (measured: 94-99% validation accuracy for the space's examples).
DIGITS_PROXY = {"epochs": 3, "batch_size": 32, "lr": 0.05, "resolution": 16, "max_params_m": 1.0, "max_flops_m": 25.0}


def proxy_defaults(source: str) -> dict[str, Any]:
    """Recipe defaults (training settings, resolution, caps) for a data source: DIGITS_PROXY for ``digits``, else the
    method's proxy."""
    return dict(DIGITS_PROXY if source == "digits" else METHOD_PROXY)


@dataclasses.dataclass(frozen=True)
class TrainingConfig:
    """How a proposal is trained. Every field is in the recipe (``device`` as the resolved device type)."""

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
    dtype: str = "float32"            # "float32" or "bfloat16" (autocast)
    deterministic: bool = True        # deterministic algorithms (cuDNN and friends); slower on GPU

    def __post_init__(self) -> None:
        if self.epochs < 1 or self.batch_size < 2:
            raise ValueError("epochs must be >= 1 and batch_size >= 2")
        for field, allowed in (("schedule", SCHEDULES), ("augment", AUGMENTS), ("dtype", DTYPES)):
            if getattr(self, field) not in allowed:
                raise ValueError(f"{field} must be one of {', '.join(allowed)}, got {getattr(self, field)!r}")
        if self.device != "auto" and self.device.split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"device must be cpu, cuda, cuda:N or auto, got {self.device!r}")

    def resolved_device(self) -> str:
        if self.device != "auto":
            return self.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

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
    """
    import torch
    import torch.nn.functional as F

    dev = torch.device(device)
    model.to(dev).train()
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
            VAL_ACC: accuracy(model, data.x_val, data.y_val, amp),
            TEST_ACC: accuracy(model, data.x_test, data.y_test, amp)}


def accuracy(model: Any, x: Any, y: Any, amp: Any) -> float:
    """Top-1 accuracy in % in eval mode."""
    import torch

    model.eval()
    correct = 0
    with torch.no_grad(), amp:
        for i in range(0, len(y), EVAL_BATCH):
            correct += (model(x[i:i + EVAL_BATCH]).argmax(1) == y[i:i + EVAL_BATCH]).sum().item()
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


# -- the evaluator ------------------------------------------------------------------------------------------------
class TrainingEvaluator(BaseEvaluator):
    """Scores an architecture by a short training on local data, in an isolated worker process.

    ``data`` names the data set (see :mod:`llmnas_local.evaluators.data`). The task's shape (classes, channels,
    resolution) comes from the data; give the caps as ``max_params_m``/``max_flops_m`` or in ``constraints``, which
    must then match the data's shape. Settings that do not change a result stay out of the recipe: ``time_limit_s``
    (per trial, from build to the last accuracy; worker start-up not counted), ``threads`` (torch threads in a
    worker; None: torch's default), ``max_trials_per_worker`` (a worker is replaced after that many trials, and after
    a crash or a time-out), ``start_attempts`` (starts of a worker that dies or hangs while loading, per trial) and
    ``max_start_failures`` (trials in a row whose worker could not start before ``evaluate`` raises
    :class:`WorkerStartError`: the machine, not the architectures, is at fault).

    Thread-safe: concurrent ``evaluate`` calls each get their own worker process (one per concurrent call, kept for
    the next ones); with several on one machine, set ``threads`` so that they do not oversubscribe the cores.
    """

    name = "training"

    def __init__(self, data: str | DataSpec = "digits", config: TrainingConfig | None = None,
                 constraints: Constraints | None = None, *, max_params_m: float | None = None,
                 max_flops_m: float | None = None, time_limit_s: float = 600.0, threads: int | None = None,
                 max_trials_per_worker: int = 100, startup_timeout_s: float = 600.0, start_attempts: int = 3,
                 start_retry_s: float = 2.0, max_start_failures: int = 3):
        self.data_spec = data if isinstance(data, DataSpec) else DataSpec(source=str(data))
        self.config = config or TrainingConfig()
        ds = load_dataset(self.data_spec)           # fills the cache the worker reads; arrays are not kept here
        self.data_info = describe_dataset(ds)
        self.classes = ds.classes
        shape = dict(num_classes=ds.num_classes, in_chans=ds.in_chans, input_size=ds.input_size)
        del ds
        if constraints is None:
            constraints = Constraints(**shape, max_params_m=max_params_m, max_flops_m=max_flops_m)
        elif max_params_m is not None or max_flops_m is not None:
            raise ValueError("give the caps either in constraints or as max_params_m/max_flops_m, not both")
        elif any(getattr(constraints, k) != v for k, v in shape.items()):
            raise ValueError(f"constraints {[getattr(constraints, k) for k in shape]} do not match the data set's "
                             f"(num_classes, in_chans, input_size) = {list(shape.values())}")
        super().__init__(constraints)
        self.device = self.config.resolved_device()
        self.time_limit_s = float(time_limit_s)
        self.threads = threads
        self.max_trials_per_worker = max_trials_per_worker
        self.startup_timeout_s = startup_timeout_s
        self.start_attempts, self.start_retry_s = start_attempts, start_retry_s
        self.max_start_failures = max_start_failures
        self._start_failures = 0          # trials in a row whose worker could not start
        self._aborted = False
        self._lock = threading.Lock()
        self._workers: list[TrialWorker] = []
        self._idle: list[TrialWorker] = []

    def recipe(self) -> dict[str, Any]:
        """Everything that changes a result, and nothing else: the data by content fingerprint and split (not by
        its name, path or file format, so that moving or re-packing the same images keeps the recipe)."""
        c = self.config
        data = {k: v for k, v in self.data_info.items() if k not in ("name", "format")}
        return {
            "evaluator": self.name, "version": TRAINING_VERSION, "data": data,
            "normalize": "train_split_mean_std", "augment": c.augment, "loss": "cross_entropy",
            "optimizer": {"name": "sgd", "lr": c.lr, "momentum": c.momentum, "weight_decay": c.weight_decay,
                          "nesterov": c.nesterov, "weight_decay_on": "all"},
            "schedule": f"{c.schedule}_per_step" if c.schedule == "cosine" else c.schedule,
            "epochs": c.epochs, "batch_size": c.batch_size, "last_batch": "kept unless of one image",
            "seed": c.seed, "device": self.device.split(":")[0], "dtype": c.dtype, "deterministic": c.deterministic,
        }

    def describe_task(self) -> str:
        c, d = self.constraints, self.data_info
        return (f"classify {c.in_chans}x{c.input_size}x{c.input_size} images ({d['name']}) into {c.num_classes} "
                f"classes; scored by validation accuracy after {self.config.epochs} epoch(s) of SGD on "
                f"{d['num_train']} images")

    def precheck(self, space: BaseSpace, spec: Any) -> dict[str, float]:
        from llmnas_local.builder import check_caps, profile_model

        c = self.constraints
        space.check(spec, c)
        try:
            model = space.build(spec, num_classes=c.num_classes, in_chans=c.in_chans, input_size=c.input_size)
            profile = profile_model(model, c.num_classes, c.in_chans, c.input_size)
        except SemanticError:
            raise
        except Exception as e:  # a build that raises is a proposal that must not be trained
            raise SemanticError(f"build failed: {one_line(e)}") from e
        check_caps(profile, c)
        return {PARAMS_M: profile.params_m, FLOPS_M: profile.flops_m}

    def evaluate(self, space: BaseSpace, spec: Any) -> Outcome:
        t0 = time.perf_counter()
        request = {"space": space_ref(space), "spec": space.format(spec)}
        worker = self._acquire()
        try:
            outcome = worker.run(request, self.time_limit_s)
        finally:
            self._release(worker)
        with self._lock:
            self._start_failures = self._start_failures + 1 if outcome.error.startswith(START_FAILED) else 0
            failures = self._start_failures
        if failures >= self.max_start_failures and not self._aborted:
            raise WorkerStartError(f"{failures} trials in a row could not start a training worker; last: "
                                   f"{outcome.error}", transient=True)
        return dataclasses.replace(outcome, timings={**outcome.timings, EVAL_S: time.perf_counter() - t0})

    def abort(self) -> None:
        """Kill every worker now; evaluations in flight return at once (their outcomes are to be dropped)."""
        with self._lock:
            self._aborted = True
            workers = list(self._workers)
        for w in workers:
            w.stop()

    def start(self) -> float:
        """Start a worker now (else the first ``evaluate`` does); returns its start-up seconds (0 if running)."""
        worker = self._acquire()
        try:
            return worker.start()
        finally:
            self._release(worker)

    def worker_pids(self) -> list[int]:
        """Process ids of the running workers."""
        with self._lock:
            return [w.pid for w in self._workers if w.pid is not None]

    def _acquire(self) -> TrialWorker:
        with self._lock:
            if self._idle:
                return self._idle.pop()
            init = {"data": self.data_spec.to_json(), "fingerprint": self.data_info["fingerprint"],
                    "config": dataclasses.replace(self.config, device=self.device).to_json(),
                    "constraints": self.constraints.to_json(), "threads": self.threads}
            worker = TrialWorker(init, startup_timeout_s=self.startup_timeout_s,
                                 max_trials=self.max_trials_per_worker, start_attempts=self.start_attempts,
                                 start_retry_s=self.start_retry_s,
                                 restart_after_failure=self.device.startswith("cuda"))
            if self._aborted:
                worker.stop()
            self._workers.append(worker)
            return worker

    def _release(self, worker: TrialWorker) -> None:
        with self._lock:
            if worker in self._workers:
                self._idle.append(worker)

    def close(self) -> None:
        with self._lock:
            workers, self._workers, self._idle = self._workers, [], []
        for w in workers:
            w.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass
