"""The one-epoch proxy's evaluator: train an architecture briefly on local data and score it on the validation split.

The recipe (:class:`TrainingConfig`) and the training loop are in :mod:`llmnas_local.evaluators.proxy`: defaults are the
method's proxy (one epoch of SGD, lr 0.01, momentum 0.9, weight decay 5e-4, cosine schedule, batch 128, no
augmentation). Data lives as tensors on the training device, normalised once with the training split's per-channel mean
and std (airbench style); batches are sliced from a seeded permutation; there is no DataLoader and no loader process.
Each trial runs in an isolated worker process (:mod:`llmnas_local.evaluators.worker`) under a wall-time limit, so a
crash, a hang or an out-of-memory kill becomes an :class:`Outcome`, never an exception in the search.

On CPU a trial is deterministic for a given recipe (seeded model initialisation and batch order, deterministic
algorithms, exact integer normalisation statistics); the number of threads is not in the recipe and may change the last
bits of a result.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

from llmnas_local.dsl.base import BaseSpace, Constraints, SemanticError
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.evaluators.data import DataSpec, describe_dataset, load_dataset
from llmnas_local.evaluators.proxy import (AUGMENTS, DIGITS_PROXY, DTYPES, EVAL_BATCH, MEMORY_FORMATS,  # noqa: F401
                                           METHOD_PROXY, SCHEDULES, TRAINING_VERSION, Diverged, TensorData,
                                           TrainingConfig, accuracy, lr_at, prepare_tensors,
                                           train_and_score)
from llmnas_local.evaluators.worker import START_FAILED, TrialWorker, WorkerStartError, one_line, space_ref
from llmnas_local.records import EVAL_S, FLOPS_M, PARAMS_M, Outcome

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
        self.resolved = self.config.resolved()        # what the workers train with, and what the recipe names
        self.device = self.resolved.device
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
        c = self.resolved
        data = {k: v for k, v in self.data_info.items() if k not in ("name", "format")}
        # Contiguous is what every recipe meant before the field existed: it is left out so their hashes stay.
        layout = {} if c.memory_format == "contiguous" else {"memory_format": c.memory_format}
        return {
            "evaluator": self.name, "version": TRAINING_VERSION, "data": data,
            "normalize": "train_split_mean_std", "augment": c.augment, "loss": "cross_entropy",
            "optimizer": {"name": "sgd", "lr": c.lr, "momentum": c.momentum, "weight_decay": c.weight_decay,
                          "nesterov": c.nesterov, "weight_decay_on": "all"},
            "schedule": f"{c.schedule}_per_step" if c.schedule == "cosine" else c.schedule,
            "epochs": c.epochs, "batch_size": c.batch_size, "last_batch": "kept unless of one image",
            "seed": c.seed, "device": self.device.split(":")[0], "dtype": c.dtype, "deterministic": c.deterministic,
            **layout,
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
                    "config": self.resolved.to_json(),
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
