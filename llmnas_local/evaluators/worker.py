"""The isolated trial runner: a persistent child process that trains one architecture at a time.

The parent (:class:`TrialWorker`) starts ``python -m llmnas_local.evaluators.worker --serve FD`` in its own process
group, sends it the data set and training settings once, then one request per trial (the space as ``module:Class``
and the spec as DSL text) over a socket. The child loads the data from the decoded-array cache, keeps it on the
training device as tensors, and answers each trial with a result; torch is imported and the data loaded once per
worker, not once per trial.

What can go wrong in a trial, and what it becomes (the parent never raises for it):

- an exception in build, forward or backward: FAILED, the exception's one-line text;
- a NaN or infinite loss: FAILED, "diverged: loss is nan at step N";
- the wall-time limit passes: TIMEOUT, the process group is killed with SIGKILL;
- the child dies (OOM killer, segfault): FAILED, "killed by signal 9 (out of memory?)";
- the child dies or hangs while it starts (out of memory while loading the data): it is started again, up to
  ``start_attempts`` times with a growing pause, then FAILED, "training worker failed to start: ... (3 attempts)".
  Only a child that reports an exception while starting (a broken data set or environment, not an architecture)
  makes the parent raise :class:`WorkerStartError`.

A killed, dead or unstartable worker and a time-out give a *transient* outcome (``Outcome.transient``): the search may
evaluate it again (see ``BaseEvaluator.retryable``). A TIMEOUT keeps its limit in ``timings[TIME_LIMIT_S]``.

A worker that died or was killed is replaced at once, without waiting: the new one imports torch while the next
proposal is written (on GPU a worker is also replaced after any failed trial, on CPU only after a crash or time-out).
A worker is recycled after ``max_trials`` trials. The child exits by itself when the parent goes away. Peak memory is the child's ``ru_maxrss`` (reset before each trial
through ``/proc/self/clear_refs``; where that fails it is the process's peak so far) on CPU, and
``torch.cuda.max_memory_allocated`` on GPU; both include the resident data set. On GPU a trial also records the
device's mean utilisation and most memory in use while it trained (:mod:`llmnas_local.gpu`: ``gpu_util_pct``,
``gpu_mem_used_mb``; the whole device, other workers included).

For a manual re-run of one trial: ``python -m llmnas_local.evaluators.worker REQUEST.json`` with a JSON object
``{"init": {...}, "request": {...}}`` as :class:`TrialWorker` sends them; it prints the result as JSON.
"""
from __future__ import annotations

import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from llmnas_local.records import BUILD_S, FLOPS_M, PARAMS_M, PEAK_MEM_MB, TIME_LIMIT_S, Outcome, TrialStatus

WORKER_START_S = "worker_start_s"     # timing: seconds spent starting a worker before this trial
START_FAILED = "training worker failed to start"


class WorkerStartError(RuntimeError):
    """A worker could not start. ``transient``: it died or hung (may work next time); else it reported an exception
    (a broken data set or environment: it will not)."""

    def __init__(self, message: str, transient: bool):
        super().__init__(message)
        self.transient = transient


def one_line(e: BaseException) -> str:
    """``Type: first line of the message``, at most 500 characters."""
    lines = str(e).strip().splitlines()
    return (f"{type(e).__name__}: {lines[0]}" if lines else type(e).__name__)[:500]


def space_ref(space: Any) -> str:
    """How the child finds a space: ``module:Class`` (spaces are built without arguments)."""
    cls = type(space)
    return f"{cls.__module__}:{cls.__qualname__}"


def signal_reason(returncode: int) -> str:
    sig = -returncode
    if sig == signal.SIGKILL:
        return f"killed by signal {sig} (out of memory?)"
    try:
        return f"killed by signal {sig} ({signal.Signals(sig).name})"
    except ValueError:
        return f"killed by signal {sig}"


# -- parent side --------------------------------------------------------------------------------------------------
class TrialWorker:
    """A handle on the child process. Used from one thread; ``run`` never raises for what a trial does."""

    def __init__(self, init: dict[str, Any], *, startup_timeout_s: float = 600.0, max_trials: int = 100,
                 restart_after_failure: bool = False, start_attempts: int = 3, start_retry_s: float = 2.0):
        self.init = dict(init)
        self.startup_timeout_s = startup_timeout_s
        self.start_attempts = max(1, int(start_attempts))
        self.start_retry_s = start_retry_s        # pause before the second start; doubled before each next one
        self._stopped = False
        self.max_trials = max_trials
        self.restart_after_failure = restart_after_failure
        self._proc: subprocess.Popen | None = None
        self._conn: Connection | None = None
        self._log = None
        self._ready = False
        self._trials = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> float:
        """Start the child if it is not running, and wait until it has loaded the data. Returns the seconds waited.

        Raises :class:`WorkerStartError` if the child cannot start (once: see ``run`` for the retries).
        """
        if self._stopped:
            raise WorkerStartError(f"{START_FAILED}: the evaluation was stopped", transient=True)
        if self._proc is None or self._proc.poll() is not None:
            self._spawn()
            if self._proc is None:          # stopped meanwhile, from another thread
                raise WorkerStartError(f"{START_FAILED}: the evaluation was stopped", transient=True)
        if self._ready:
            return 0.0
        t0 = time.perf_counter()
        try:
            msg = self._receive(time.monotonic() + self.startup_timeout_s)
        except BaseException:
            self.close()
            raise
        if msg is None or msg[0] != "ready":
            reason = msg[1] if msg and msg[0] in ("fatal", "died") else \
                f"start-up timed out after {self.startup_timeout_s:g} s"
            self.close()
            raise WorkerStartError(f"{START_FAILED}: {reason}", transient=not (msg and msg[0] == "fatal"))
        self._ready = True
        return time.perf_counter() - t0

    def _spawn(self) -> None:
        """Kill the child if any and launch a fresh one with its settings, without waiting for it: it starts while the
        parent does other work (after a crash or a time-out, while the next proposal is written)."""
        self.close()
        if self._stopped:
            return
        parent_sock, child_sock = socket.socketpair()
        self._log = tempfile.TemporaryFile()
        env = dict(os.environ)
        pkg_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (pkg_root, env.get("PYTHONPATH")) if p)
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        if self.init.get("threads"):
            env["OMP_NUM_THREADS"] = str(self.init["threads"])
        fd = child_sock.fileno()
        self._proc = subprocess.Popen([sys.executable, "-m", "llmnas_local.evaluators.worker", "--serve", str(fd)],
                                      pass_fds=(fd,), start_new_session=True, env=env, stdin=subprocess.DEVNULL,
                                      stdout=self._log, stderr=self._log)
        child_sock.close()
        self._conn = Connection(parent_sock.detach())
        self._conn.send(("init", {**self.init, "sys_path": list(sys.path)}))
        self._ready, self._trials = False, 0

    def _start_or_reason(self, timings: dict[str, float]) -> str | None:
        """:meth:`_start_retrying`; None once started, else why it could not start when that failure is transient
        (the trial is then FAILED with it). A worker that reported an exception while starting raises."""
        try:
            self._start_retrying(timings)
        except WorkerStartError as e:
            if not e.transient:
                raise
            return str(e)
        return None

    def _start_retrying(self, timings: dict[str, float]) -> None:
        """``start()``, again after a death or hang, up to ``start_attempts`` times; adds the seconds to timings."""
        for attempt in range(1, self.start_attempts + 1):
            try:
                start_s = self.start()
            except WorkerStartError as e:
                if not e.transient or self._stopped:
                    raise
                if attempt == self.start_attempts:
                    raise WorkerStartError(f"{e} ({attempt} attempts)" if attempt > 1 else str(e), True) from None
                time.sleep(self.start_retry_s * 2 ** (attempt - 1))
                continue
            if start_s:
                timings[WORKER_START_S] = timings.get(WORKER_START_S, 0.0) + start_s
            return

    def run(self, request: dict[str, Any], time_limit_s: float) -> Outcome:
        """Run one trial in the child under a wall-time limit (start-up not counted). Raises only
        :class:`WorkerStartError` for a worker that reported an exception while starting."""
        if self.max_trials and self._trials >= self.max_trials:
            self._spawn()
        profile: dict[str, float] = {}
        timings: dict[str, float] = {}
        if (failed := self._start_or_reason(timings)) is not None:
            return Outcome(TrialStatus.FAILED, profile, failed, timings)
        self._trials += 1
        try:
            try:
                self._conn.send(("trial", request))
            except OSError:             # it died while idle: start a fresh one
                self._spawn()
                if (failed := self._start_or_reason(timings)) is not None:
                    return Outcome(TrialStatus.FAILED, profile, failed, timings)
                self._conn.send(("trial", request))
            deadline = time.monotonic() + time_limit_s
            while True:
                msg = self._receive(deadline)
                if msg is None:
                    self._spawn()
                    return Outcome(TrialStatus.TIMEOUT, profile, f"exceeded the time limit of {time_limit_s:g} s",
                                   {**timings, TIME_LIMIT_S: float(time_limit_s)})
                kind, payload = msg
                if kind == "profile":
                    profile = {k: payload[k] for k in (PARAMS_M, FLOPS_M)}
                    timings[BUILD_S] = payload[BUILD_S]
                elif kind == "result":
                    break
                elif kind == "died":
                    self._spawn()
                    return Outcome(TrialStatus.FAILED, profile, payload, timings)
        except BaseException:          # Ctrl-C and friends: the child's state is unknown; kill it and pass it on
            self.close()
            raise
        status = TrialStatus.COMPLETE if payload["status"] == "complete" else TrialStatus.FAILED
        if status is not TrialStatus.COMPLETE and self.restart_after_failure:
            self._spawn()
        return Outcome(status, {**profile, **payload["metrics"]}, payload.get("error", ""),
                       {**timings, **payload.get("timings", {})})

    def _receive(self, deadline: float) -> tuple[str, Any] | None:
        """The child's next message; ("died", reason) if it died; None at the deadline."""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            if self._conn.poll(min(remaining, 0.5)):
                try:
                    return self._conn.recv()
                except (EOFError, OSError):
                    return ("died", self._death_reason())
            if self._proc.poll() is not None:
                return ("died", self._death_reason())

    def _death_reason(self) -> str:
        try:
            rc = self._proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            return "the worker closed its connection"
        if rc < 0:
            return signal_reason(rc)
        tail = self._log_tail()
        return f"the worker exited with code {rc}" + (f": {tail}" if tail else "")

    def _log_tail(self) -> str:
        try:
            self._log.seek(max(0, self._log.seek(0, 2) - 2000))
            lines = [ln for ln in self._log.read().decode(errors="replace").splitlines() if ln.strip()]
            return lines[-1].strip()[:300] if lines else ""
        except Exception:
            return ""

    def stop(self) -> None:
        """Kill the child's process group now, from any thread, and start no other: a trial in flight in another
        thread ends at once (as a death, to be dropped by the caller). Call ``close`` afterwards."""
        self._stopped = True
        proc = self._proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def close(self) -> None:
        """Kill the child's process group (it holds no state worth saving) and release the connection."""
        if self._proc is not None:
            if self._proc.poll() is None:
                try:
                    os.killpg(self._proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        for handle in (self._conn, self._log):
            if handle is not None:
                handle.close()
        self._proc = self._conn = self._log = None
        self._ready = False

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


# -- child side ---------------------------------------------------------------------------------------------------
class TrialRunner:
    """What the child runs: settings, device and the data as tensors, and ``run`` for one trial. It can also run a
    trial in the calling process (benchmarks, debugging), without isolation."""

    def __init__(self, init: dict[str, Any]):
        from llmnas_local.dsl.base import Constraints
        from llmnas_local.evaluators.data import DataSpec, load_dataset
        from llmnas_local.evaluators.proxy import TrainingConfig, prepare_tensors

        for p in init.get("sys_path", []):
            if p not in sys.path:
                sys.path.append(p)
        self.config = TrainingConfig(**init["config"])
        self.device = self.config.device
        self.constraints = Constraints(**init["constraints"])
        ds = load_dataset(DataSpec(**init["data"]))           # before torch: a bad data set fails fast
        if init.get("fingerprint") and ds.fingerprint != init["fingerprint"]:
            raise RuntimeError(f"the data set changed since the evaluator loaded it (fingerprint "
                               f"{ds.fingerprint[:12]}, expected {init['fingerprint'][:12]})")
        import timm  # noqa: F401  (every space builds from timm: import it before the first trial's clock starts)
        import torch

        if init.get("threads"):
            torch.set_num_threads(int(init["threads"]))
        if self.config.deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        else:
            torch.backends.cudnn.benchmark = True
        self.data = prepare_tensors(ds, self.device)
        del ds
        self._spaces: dict[str, Any] = {}

    def space(self, ref: str) -> Any:
        if ref not in self._spaces:
            module, _, qualname = ref.partition(":")
            obj: Any = importlib.import_module(module)
            for part in qualname.split("."):
                obj = getattr(obj, part)
            self._spaces[ref] = obj()
        return self._spaces[ref]

    def run(self, request: dict[str, Any], send: Any) -> dict[str, Any]:
        """One trial; ``send(kind, payload)`` reports the profile before training starts."""
        import gc
        import random

        import numpy as np
        import torch

        from llmnas_local.builder import profile_model
        from llmnas_local.evaluators.proxy import Diverged, train_and_score
        from llmnas_local.gpu import GpuSampler

        _reset_peak_memory(self.device)
        model = None
        try:
            t0 = time.perf_counter()
            space = self.space(request["space"])
            spec = space.parse(request["spec"])
            seed = self.config.seed
            random.seed(seed)
            np.random.seed(seed)
            torch.manual_seed(seed)
            c = self.constraints
            model = space.build(spec, num_classes=c.num_classes, in_chans=c.in_chans, input_size=c.input_size)
            prof = profile_model(model, c.num_classes, c.in_chans, c.input_size)
            send("profile", {PARAMS_M: prof.params_m, FLOPS_M: prof.flops_m, BUILD_S: time.perf_counter() - t0})
            with GpuSampler(self.device, interval_s=1.0) as gpu:     # reads nothing on the CPU
                metrics = train_and_score(model, self.data, self.config, self.device)
            metrics[PEAK_MEM_MB] = _peak_memory_mb(self.device)
            metrics.update(gpu.summary())
            return {"status": "complete", "metrics": metrics}
        except Diverged as e:
            return {"status": "failed", "metrics": {PEAK_MEM_MB: _peak_memory_mb(self.device)}, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - every failure of a proposal is a result
            return {"status": "failed", "metrics": {PEAK_MEM_MB: _peak_memory_mb(self.device)}, "error": one_line(e)}
        finally:
            del model
            gc.collect()
            if self.device.startswith("cuda"):
                torch.cuda.empty_cache()


def _reset_peak_memory(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats(device)
        return
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory_mb(device: str) -> float:
    if device.startswith("cuda"):
        import torch

        return torch.cuda.max_memory_allocated(device) / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / (2**20 if sys.platform == "darwin" else 1024)


def _watch_parent(ppid: int) -> None:
    """Exit when the parent is gone (a new session gets no hang-up signal), even in the middle of a trial."""
    while True:
        time.sleep(1.0)
        if os.getppid() != ppid:
            os._exit(3)


def serve(fd: int) -> None:
    conn = Connection(fd)
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    try:
        kind, init = conn.recv()
        trainer = TrialRunner(init)
    except Exception as e:  # noqa: BLE001
        conn.send(("fatal", one_line(e)))
        return
    conn.send(("ready", {}))
    while True:
        try:
            kind, request = conn.recv()
        except (EOFError, OSError):
            return
        result = trainer.run(request, lambda k, p: conn.send((k, p)))
        conn.send(("result", result))


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "--serve":
        serve(int(argv[1]))
        return 0
    if len(argv) != 1:
        print("usage: python -m llmnas_local.evaluators.worker REQUEST.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[0]).read_text())
    trainer = TrialRunner(job["init"])
    print(json.dumps(trainer.run(job["request"], lambda k, p: print(json.dumps({k: p}), file=sys.stderr))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
