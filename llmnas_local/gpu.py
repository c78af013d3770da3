"""The GPU as a search sees it: whether it computes in bfloat16, how busy and how full it is, and how many trainings
run at once under ``--workers auto``.

Everything here is guarded: without an NVIDIA GPU the queries return None and the rules fall back to the cores. No
CUDA context is created in the calling process (it would hold hundreds of MiB of the GPU in the search's own
process): the figures come from NVML through ``pynvml`` (nvidia-ml-py) when it is installed, else from ``nvidia-smi``.

``--workers auto`` (:func:`choose_workers`, the rule; :func:`auto_workers`, its inputs gathered for an evaluator):

- on a GPU, as many concurrent trainings as fit in the GPU's free memory, each counted at 1.25 x the largest peak
  the store measured under the same recipe (``peak_mem_mb``: the allocator's peak, data set included) plus
  ``CUDA_CONTEXT_MB`` for what the allocator does not see (context, cuBLAS/cuDNN workspaces), keeping
  ``GPU_RESERVE`` of the GPU free; before any peak is measured, a training is counted as the resident data set
  plus ``UNMEASURED_GPU_MB``. At most one per core (each worker drives the GPU from one thread; one core stays with
  an in-process LLM) and at most ``MAX_GPU_WORKERS``;
- on the CPU, one training per ``CPU_CORES_PER_TRAINING`` cores once a core is left to an in-process LLM (1 on 2
  cores), and no more than the available memory holds at 1.25 x the measured peak RSS;
- always at least one; a table look-up gets one (it has nothing to overlap).
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import subprocess
import threading
from typing import Any, Iterable, Sequence

# Trial metrics measured on a GPU during a training (whole device: the other workers' trainings count too).
GPU_UTIL_PCT = "gpu_util_pct"          # mean GPU utilisation while this trial trained, %
GPU_MEM_USED_MB = "gpu_mem_used_mb"    # most device memory in use while this trial trained, MiB

PEAK_HEADROOM = 1.25          # a training is counted at this times the largest measured peak
CUDA_CONTEXT_MB = 1024.0      # per worker process, beyond the allocator's peak
UNMEASURED_GPU_MB = 2048.0    # a training before any peak is measured, beyond its resident data
UNMEASURED_CPU_MB = 1024.0
GPU_RESERVE = 0.10            # share of the GPU's memory left free (the LLM's KV cache grows, allocators fragment)
MAX_GPU_WORKERS = 8
CPU_CORES_PER_TRAINING = 2


@dataclasses.dataclass(frozen=True)
class GpuStats:
    """One reading of one GPU."""

    util_pct: float
    mem_used_mb: float
    mem_total_mb: float
    compute_capability: float | None = None      # 8.0 for an A100, 9.0 for an H100/H200; None if unknown

    @property
    def mem_free_mb(self) -> float:
        return max(0.0, self.mem_total_mb - self.mem_used_mb)


def check_device(device: str, name: str = "device") -> None:
    """Raise a one-line ValueError naming ``name`` unless ``device`` is cpu, cuda, cuda:N or auto."""
    if device != "auto" and device.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"{name} must be cpu, cuda, cuda:N or auto, got {device!r}")


def resolve_device(device: str = "auto") -> str:
    """``device`` with "auto" made concrete: cuda when torch sees a GPU (no CUDA context is created), else cpu."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def physical_index(device: str) -> int:
    """The NVML / nvidia-smi index of a torch device name ("cuda", "cuda:1"), through ``CUDA_VISIBLE_DEVICES``."""
    index = int(device.split(":")[1]) if ":" in device else 0
    visible = [v.strip() for v in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if v.strip()]
    if index < len(visible) and visible[index].isdigit():
        return int(visible[index])
    return index


_NVML: Any = None        # the pynvml module once initialised; False once it failed


def _nvml_query(index: int) -> GpuStats | None:
    global _NVML
    if _NVML is None:
        try:
            import pynvml

            pynvml.nvmlInit()
            _NVML = pynvml
        except Exception:  # noqa: BLE001 - not installed, no driver: fall back to nvidia-smi
            _NVML = False
    if not _NVML:
        return None
    try:
        h = _NVML.nvmlDeviceGetHandleByIndex(index)
        util = _NVML.nvmlDeviceGetUtilizationRates(h).gpu
        mem = _NVML.nvmlDeviceGetMemoryInfo(h)
        try:
            major, minor = _NVML.nvmlDeviceGetCudaComputeCapability(h)
            cc: float | None = major + minor / 10
        except Exception:  # noqa: BLE001
            cc = None
        return GpuStats(float(util), mem.used / 2**20, mem.total / 2**20, cc)
    except Exception:  # noqa: BLE001
        return None


def _smi_query(index: int) -> GpuStats | None:
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    for fields in ("utilization.gpu,memory.used,memory.total,compute_cap", "utilization.gpu,memory.used,memory.total"):
        try:
            out = subprocess.run([smi, f"--query-gpu={fields}", "--format=csv,noheader,nounits", "-i", str(index)],
                                 capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        if out.returncode == 0:
            return parse_smi_line(out.stdout)
    return None


def parse_smi_line(text: str) -> GpuStats | None:
    """A ``nvidia-smi --query-gpu=utilization.gpu,memory.used,memory.total[,compute_cap]`` line (no units)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return None
    parts = [p.strip() for p in lines[0].split(",")]
    try:
        util, used, total = (float(p) for p in parts[:3])
    except ValueError:
        return None
    try:
        cc: float | None = float(parts[3]) if len(parts) > 3 else None
    except ValueError:
        cc = None
    return GpuStats(util, used, total, cc)


def query_gpu(device: str = "cuda") -> GpuStats | None:
    """Utilisation and memory of the GPU behind a torch device name now; None without one (or on ``cpu``)."""
    if not device.startswith("cuda"):
        return None
    index = physical_index(device)
    return _nvml_query(index) or _smi_query(index)


def bf16_supported(device: str = "cuda") -> bool:
    """Whether the GPU computes in bfloat16 (compute capability 8.0 or more); True when it cannot be told."""
    stats = query_gpu(device)
    return stats is None or stats.compute_capability is None or stats.compute_capability >= 8.0


class GpuSampler:
    """Reads a GPU every ``interval_s`` in a thread, from construction to ``close()`` (or the ``with`` block's end).
    ``latest`` is the last reading (a progress bar reads it without waiting on nvidia-smi); ``summary()`` gives the
    mean utilisation and the most memory in use so far as trial metrics ({} when nothing was read). On the CPU it
    reads nothing."""

    def __init__(self, device: str = "cuda", interval_s: float = 0.5):
        self.device, self.interval_s = device, interval_s
        self.latest: GpuStats | None = None
        self.count, self._util_sum, self._mem_max = 0, 0.0, 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if device.startswith("cuda"):
            self._thread = threading.Thread(target=self._loop, daemon=True, name="gpu-sampler")
            self._thread.start()

    def _loop(self) -> None:
        while True:
            stats = query_gpu(self.device)
            if stats is None:
                return
            self.latest = stats
            self._util_sum += stats.util_pct
            self._mem_max = max(self._mem_max, stats.mem_used_mb)
            self.count += 1
            if self._stop.wait(self.interval_s):
                return

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def __enter__(self) -> "GpuSampler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def summary(self) -> dict[str, float]:
        if not self.count:
            return {}
        return {GPU_UTIL_PCT: self._util_sum / self.count, GPU_MEM_USED_MB: self._mem_max}


def describe(stats: GpuStats | None) -> str:
    """``gpu 75% 40.1/139.8 GiB`` for a progress bar; "" without a GPU."""
    if stats is None:
        return ""
    return f"gpu {stats.util_pct:.0f}% {stats.mem_used_mb / 1024:.1f}/{stats.mem_total_mb / 1024:.1f} GiB"


# -- --workers auto -------------------------------------------------------------------------------------------------
def choose_workers(*, on_gpu: bool, cores: int, free_mb: float | None, peaks_mb: Sequence[float] = (),
                   data_mb: float = 0.0, total_mb: float | None = None, llm_in_process: bool = False,
                   max_gpu_workers: int = MAX_GPU_WORKERS) -> tuple[int, str]:
    """The number of concurrent trainings by the module's rule, and one line saying why. ``free_mb``: free GPU
    memory on a GPU, available RAM on the CPU (None: unknown, not a limit); ``peaks_mb``: measured peaks of trainings
    under this recipe; ``data_mb``: the data set as resident float32 tensors; ``total_mb``: the GPU's memory (for
    the reserve)."""
    llm_cores = 1 if llm_in_process else 0
    if peaks_mb:
        per = max(peaks_mb) * PEAK_HEADROOM + (CUDA_CONTEXT_MB if on_gpu else 0.0)
        basis = f"{max(peaks_mb):,.0f} MiB measured peak of {len(peaks_mb)} trials x {PEAK_HEADROOM:g}"
    else:
        per = data_mb + (UNMEASURED_GPU_MB + CUDA_CONTEXT_MB if on_gpu else UNMEASURED_CPU_MB)
        basis = f"no peak measured yet: data {data_mb:,.0f} MiB + a default"
    if on_gpu:
        by_cores = max(1, cores - llm_cores)
        usable = None if free_mb is None else free_mb - GPU_RESERVE * (total_mb or 0.0)
        cap, cap_why = min(by_cores, max_gpu_workers), f"{cores} cores, at most {max_gpu_workers}"
    else:
        by_cores = (cores - llm_cores) // CPU_CORES_PER_TRAINING
        usable = free_mb
        cap, cap_why = by_cores, f"{cores} cores, {CPU_CORES_PER_TRAINING} per training" + \
            (", 1 for the LLM" if llm_cores else "")
    by_mem = math.inf if usable is None else math.floor(max(0.0, usable) / per)
    n = max(1, min(cap, by_mem))
    where = "GPU" if on_gpu else "CPU"
    mem = "memory unknown" if usable is None else f"{usable:,.0f} MiB {'free' if on_gpu else 'available'}"
    return int(n), (f"--workers auto: {n} on the {where} ({mem} / {per:,.0f} MiB per training [{basis}]; "
                    f"{cap_why})")


def measured_peaks(store: Any, recipe_hash: str) -> list[float]:
    """``peak_mem_mb`` of every trial the store holds under ``recipe_hash`` (any run)."""
    from llmnas_local.records import PEAK_MEM_MB

    peaks: list[float] = []
    for run in store.list_runs():
        if run.recipe_hash == recipe_hash:
            peaks.extend(t.metrics[PEAK_MEM_MB] for t in store.trials(run.run_id) if PEAK_MEM_MB in t.metrics)
    return peaks


def available_ram_mb() -> float | None:
    """``MemAvailable`` of /proc/meminfo, MiB; None where there is none."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def threads_per_worker(workers: int) -> int | None:
    """Torch threads of each of ``workers`` concurrent trainings: the cores split between them (oversubscribed torch
    threads are many times slower); None for one worker (torch's own default)."""
    return None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)


def auto_workers(evaluator: Any, peaks_mb: Iterable[float] = (), *, llm_in_process: bool = False,
                 cores: int | None = None) -> tuple[int, str]:
    """:func:`choose_workers` for an evaluator (a training evaluator's device and data; anything else gets 1), with
    the GPU's or the machine's free memory now. Call it after the LLM is loaded, so its memory is taken."""
    device = getattr(evaluator, "device", None)
    if device is None:
        return 1, "--workers auto: 1 (evaluations are table look-ups)"
    info = getattr(evaluator, "data_info", {}) or {}
    c = evaluator.constraints
    images = sum(int(info.get(k, 0)) for k in ("num_train", "num_val", "num_test"))
    data_mb = images * c.in_chans * c.input_size ** 2 * 4 / 2**20
    on_gpu = device.startswith("cuda")
    stats = query_gpu(device) if on_gpu else None
    free = (stats.mem_free_mb if stats else None) if on_gpu else available_ram_mb()
    return choose_workers(on_gpu=on_gpu, cores=cores or os.cpu_count() or 1, free_mb=free, peaks_mb=list(peaks_mb),
                          data_mb=data_mb, total_mb=stats.mem_total_mb if stats else None,
                          llm_in_process=llm_in_process)
