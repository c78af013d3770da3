"""Evaluations on a Ray cluster: the driver keeps the proposer, the LLM and the store; each trial is a Ray task.

:class:`RayEvaluator` wraps the evaluator :func:`~llmnas_local.evaluators.create_evaluator` built on the driver. The
driver's copy answers everything but ``evaluate`` (the recipe and its hash, the pre-checks, the task's words), so the
recipe hash, the run id and every stored outcome are those of the local executor. ``evaluate`` submits the trial as a
Ray task with the resource request of :class:`ExecutorConfig` (``cpus_per_trial``, ``gpus_per_trial``: a fractional
GPU share packs several small trainings on one GPU); the task runs the same evaluator, built from the same arguments
on the node it lands on (its data from a path every node sees, or the built-in digits). A training's ``device`` "auto"
and its fitted proxy are decided on the driver for what one trial gets (a GPU share or not, its CPUs), so every node
builds the same recipe whatever its own hardware.

- Data once per node, not once per trial: a Ray worker process keeps the evaluator it built (and so its training
  worker, which holds the data set as tensors) for the next trials; the decoded-array cache on the node's disk is
  filled by the first. A node whose data differ from the driver's (another recipe hash) is refused: the search stops
  with one line, as a local run does when the data cannot be read.
- A node or worker process lost mid-trial (the machine died, its raylet was killed, the process ran out of memory)
  comes back as FAILED with a reason that begins with "the worker exited" (:data:`LOST`): a transient outcome that the
  search loop evaluates again (``BaseEvaluator.retryable``: up to 3 attempts in all), where Ray finds room; then the
  FAILED stays, with its reason. Ray's own task retries are off, so every attempt is one recorded trial.
- An exception of the evaluator on the node (a training worker that cannot start, data it cannot read) is raised on
  the driver as it would be by the local evaluator.
- The driver killed with ``kill -9``: Ray ends the driver's tasks; a resumed search redoes what was in flight.

``workers`` (``Search.run``) is the number of trials in flight; Ray queues what does not fit the cluster.
:meth:`RayEvaluator.slots` tells how many trials the cluster can run at once with the request (``--workers auto``).

Ray is optional (``pip install 'llmnas_local[ray]'``) and imported only here, lazily.
"""
from __future__ import annotations

import dataclasses
import math
import os
import threading
import uuid
from typing import Any, Callable, Mapping

from llmnas_local.dsl.base import BaseSpace
from llmnas_local.evaluators.base import BaseEvaluator
from llmnas_local.records import Outcome, TrialStatus

EXECUTORS = ("local", "ray")
INSTALL_HINT = "--executor ray needs Ray: pip install 'llmnas_local[ray]' (or pip install ray)"
LOST = "the worker exited: Ray lost the trial's node or process"     # a TRANSIENT_ERRORS prefix: retried
_LOCAL_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"     # "0": Ray's single-machine mode, on loopback


class RayMissing(ValueError):
    """Ray is not installed (a user error: one line that says how to install it)."""


@dataclasses.dataclass(frozen=True)
class ExecutorConfig:
    """Where evaluations run. ``local``: in this process's thread pool (training in local worker processes). ``ray``:
    as Ray tasks, each asking for ``cpus_per_trial`` CPUs and ``gpus_per_trial`` GPUs (a fraction packs trials on one
    GPU). ``address``: None starts a Ray instance on this machine, listening on loopback only (or joins
    ``$RAY_ADDRESS``); ``"auto"`` joins the cluster this machine is a node of; ``HOST:PORT`` a head node's GCS.
    None of these settings changes a result: they are not in the recipe."""

    kind: str = "local"
    address: str | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise ValueError(f"executor must be one of {', '.join(EXECUTORS)}, got {self.kind!r}")
        if not (isinstance(self.cpus_per_trial, (int, float)) and self.cpus_per_trial > 0):
            raise ValueError(f"cpus_per_trial must be a positive number, got {self.cpus_per_trial!r}")
        if not (isinstance(self.gpus_per_trial, (int, float)) and self.gpus_per_trial >= 0):
            raise ValueError(f"gpus_per_trial must be a number >= 0, got {self.gpus_per_trial!r}")
        if self.gpus_per_trial > 1 and self.gpus_per_trial != int(self.gpus_per_trial):
            raise ValueError(f"gpus_per_trial above 1 must be a whole number, got {self.gpus_per_trial}")
        if self.kind == "local" and (self.address is not None or self.gpus_per_trial or self.cpus_per_trial != 1):
            raise ValueError("address, cpus_per_trial and gpus_per_trial are for the ray executor (executor = ray)")

    @classmethod
    def from_mapping(cls, raw: "ExecutorConfig | Mapping[str, Any] | str | None") -> "ExecutorConfig":
        """From a config, a mapping of its fields (a grid's ``[executor]`` table), a kind, or None (local)."""
        if raw is None or isinstance(raw, ExecutorConfig):
            return raw or cls()
        if isinstance(raw, str):
            return cls(kind=raw)
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"executor: unknown key(s) {', '.join(sorted(unknown))} "
                             f"(kind, address, cpus_per_trial, gpus_per_trial)")
        return cls(**raw)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def resolve_device(device: str, config: ExecutorConfig) -> str:
    """The training device of a trial that Ray runs: ``auto`` is ``cuda`` when a trial gets a GPU share, else
    ``cpu`` (the driver's own GPUs do not count: the recipe names where trials train). ``cuda`` needs a share."""
    if device == "auto":
        return "cuda" if config.gpus_per_trial > 0 else "cpu"
    if device.startswith("cuda") and config.gpus_per_trial == 0:
        raise ValueError("device cuda with the ray executor needs a GPU share per trial (--gpus-per-trial)")
    return device


def import_ray() -> Any:
    """Ray, imported now (RayMissing when it is not installed)."""
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


def connect(config: ExecutorConfig) -> Any:
    """Connect this process to the cluster of ``config`` (or start a local instance); returns the ray module."""
    ray = import_ray()
    if not ray.is_initialized():
        options: dict[str, Any] = {"log_to_driver": False, "logging_level": "WARNING"}
        try:
            if config.address is None and not os.environ.get("RAY_ADDRESS"):
                _start_local(ray, include_dashboard=False, num_cpus=os.cpu_count() or 1, **options)
            else:
                _check_reachable(config.address)
                ray.init(address=config.address, **options)
        except ConnectionError as e:
            raise ValueError(f"--ray-address {config.address}: no Ray cluster there ({_first_line(e)}); start one "
                             f"with ray start --head") from None
    return ray


def create_ray_evaluator(create: Callable[..., BaseEvaluator], space: BaseSpace,
                         executor: "ExecutorConfig | Mapping[str, Any] | str", **kwargs: Any) -> "RayEvaluator":
    """The evaluator ``create`` (:func:`~llmnas_local.evaluators.create_evaluator`, handed over by it) builds from
    ``kwargs``, its trials run by Ray.

    Ray is connected first (no data is read for a cluster that is not there). A training's ``device`` "auto" and its
    fitted proxy are decided here, for what a trial gets (its CPUs, a GPU share), not for the driver's machine; the
    nodes build their evaluator from the same arguments, so the same recipe."""
    config = ExecutorConfig.from_mapping(executor)
    connect(config)
    if not space.tabular:
        from llmnas_local.evaluators.fit import Machine

        recipe = dict(kwargs.get("recipe") or {})
        recipe["device"] = resolve_device(str(recipe.get("device", "auto")), config)
        kwargs["recipe"] = recipe
        if kwargs.get("machine") is None:
            kwargs["machine"] = Machine(recipe["device"].split(":")[0], max(1, int(config.cpus_per_trial)))
    local = create(space, **kwargs)
    build = {k: v for k, v in kwargs.items() if k != "on_fit"}
    return RayEvaluator(local, {"create": create, "space": space, **build}, config)


def _check_reachable(address: str | None, timeout_s: float = 10.0) -> None:
    """Fail at once when nothing listens at a HOST:PORT address (Ray would keep trying for minutes)."""
    import socket

    host, _, port = (address or "").rpartition(":")
    if not host or not port.isdigit():
        return                                  # "auto", ray://..., $RAY_ADDRESS: Ray's own checks
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as e:
        raise ValueError(f"--ray-address {address}: no Ray head node answers there ({e.strerror or e}); start one "
                         f"with ray start --head --port {port}") from None


def _start_local(ray: Any, **options: Any) -> None:
    """Start a Ray instance of this machine that listens on loopback only, its usage statistics off (unless
    ``$RAY_USAGE_STATS_ENABLED`` says otherwise). Ray would take the machine's routed
    address and listen on every interface; its single-machine mode (what it uses on Windows and macOS: the loopback
    address) is switched on while it starts, in this process (a private constant, read when the address is chosen)
    and in the processes it starts (their environment)."""
    try:
        from ray._private import ray_constants
    except ImportError:          # another Ray layout: its own default
        ray.init(**options)
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")      # nothing leaves the machine
    saved_env, saved = os.environ.get(_LOCAL_ONLY), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_LOCAL_ONLY], ray_constants.ENABLE_RAY_CLUSTER = "0", False
    try:
        ray.init(**options)
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved
        if saved_env is None:
            os.environ.pop(_LOCAL_ONLY, None)
        else:
            os.environ[_LOCAL_ONLY] = saved_env


class RayEvaluator(BaseEvaluator):
    """``local`` (the evaluator built on the driver) with its ``evaluate`` run as Ray tasks. ``build``: ``create``
    (the factory) and the keyword arguments it built ``local`` from (the tasks build theirs with them).
    Thread-safe: concurrent ``evaluate`` calls are concurrent tasks."""

    def __init__(self, local: BaseEvaluator, build: Mapping[str, Any], config: ExecutorConfig):
        if config.kind != "ray":
            raise ValueError(f"RayEvaluator runs the ray executor, not {config.kind!r}")
        super().__init__(local.constraints)
        self.local, self.config = local, config
        self.name = local.name
        self.time_limit_s, self.max_attempts = local.time_limit_s, local.max_attempts
        self._ray = connect(config)
        self._key = f"{uuid.uuid4().hex}:{local.recipe_hash()}"
        self._build = self._ray.put(dict(build))
        self._task = self._ray.remote(_evaluate_on_node).options(
            num_cpus=config.cpus_per_trial, num_gpus=config.gpus_per_trial, max_retries=0, retry_exceptions=False)
        self._lock = threading.Lock()
        self._in_flight: set[Any] = set()
        self._aborted = False

    def __getattr__(self, name: str) -> Any:       # the local evaluator's attributes (columns, data_info, config...)
        if name.startswith("_") or name in ("local", "config"):
            raise AttributeError(name)
        return getattr(self.local, name)

    def recipe(self) -> dict[str, Any]:
        return self.local.recipe()

    def precheck(self, space: BaseSpace, spec: Any) -> dict[str, float]:
        return self.local.precheck(space, spec)

    def describe_task(self) -> str:
        return self.local.describe_task()

    def retryable(self, outcome: Outcome, attempts: int) -> bool:
        return self.local.retryable(outcome, attempts)

    def evaluate(self, space: BaseSpace, spec: Any) -> Outcome:
        ray = self._ray
        with self._lock:
            if self._aborted:
                return Outcome(TrialStatus.FAILED, {}, f"{LOST}: the search was stopped")
            ref = self._task.remote(self._key, self._build, space, space.format(spec))
            self._in_flight.add(ref)
        try:
            return Outcome.from_json(ray.get(ref))
        except ray.exceptions.RayTaskError as e:       # the evaluator raised on the node: as it would raise here
            cause = getattr(e, "cause", None)
            raise (cause if isinstance(cause, Exception) else e.as_instanceof_cause()) from None
        except (ray.exceptions.RayError, ConnectionError) as e:    # a node, a worker or the task itself was lost
            return Outcome(TrialStatus.FAILED, {}, f"{LOST}: {_first_line(e)}")
        finally:
            with self._lock:
                self._in_flight.discard(ref)

    def slots(self) -> int:
        """How many trials the cluster can run at once with this request (at least 1)."""
        total = self._ray.cluster_resources()
        fits = [total.get("CPU", 0.0) / self.config.cpus_per_trial]
        if self.config.gpus_per_trial:
            fits.append(total.get("GPU", 0.0) / self.config.gpus_per_trial)
        return max(1, int(math.floor(min(fits) + 1e-9)))

    def abort(self) -> None:
        """Cancel the tasks in flight (their outcomes are dropped; a resumed search redoes them)."""
        with self._lock:
            self._aborted = True
            refs = list(self._in_flight)
        for ref in refs:
            try:
                self._ray.cancel(ref, force=True)
            except Exception:  # noqa: BLE001 - already finished or lost
                pass

    def close(self) -> None:
        self.local.close()


# -- the node's side: runs in a Ray worker process ---------------------------------------------------------------
_NODE: dict[str, Any] = {}       # the evaluator this process built: {"key": ..., "evaluator": ...}


def _evaluate_on_node(key: str, build: dict[str, Any], space: BaseSpace, spec_text: str) -> dict[str, Any]:
    """One trial, on the evaluator this process keeps (built on its first trial, or when the task's GPU changes)."""
    return _node_evaluator(key, build).evaluate(space, space.parse(spec_text)).to_json()


def _node_evaluator(key: str, build: dict[str, Any]) -> BaseEvaluator:
    import ray

    gpus = tuple(str(g) for g in ray.get_gpu_ids())
    if _NODE.get("key") == (key, gpus):
        return _NODE["evaluator"]
    old = _NODE.pop("evaluator", None)
    if old is not None:
        old.close()
    settings = dict(build)
    evaluator = settings.pop("create")(**settings)
    if hasattr(evaluator, "threads"):      # a training evaluator: torch threads = the trial's CPUs (not the driver's)
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        evaluator.threads = max(1, int(cpus))
    expected = key.split(":", 1)[1]
    if evaluator.recipe_hash() != expected:
        node = ray.get_runtime_context().get_node_id()
        raise ValueError(f"node {node[:12]} evaluates under another recipe than the driver "
                         f"({evaluator.recipe_hash()[:12]} vs {expected[:12]}): its data differ; give every node the "
                         f"same data set")
    _NODE.update(key=(key, gpus), evaluator=evaluator)
    return evaluator


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}: {lines[0][:300]}" if lines else type(e).__name__
