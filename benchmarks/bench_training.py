"""Benchmark of the training evaluator. Claims, checked by the figures this prints:

- the one-epoch proxy on digits (1,294 training images at 32x32, batch 128: 11 steps) takes seconds per trial for
  the ``cnn`` space's example architectures on the project's machine (2 cores);
- running a trial in the isolated worker process costs well under a second more than running the same trial
  in-process (the worker is persistent: torch is imported and the data loaded once per worker, not per trial);
  a worker's start-up (import torch and timm, load the data) is paid once, and again only after a crash or time-out;
- the decoded-array cache turns tens of seconds of JPEG decoding of CIFAR-10 into about a second.

Each architecture is trained ``--repeats`` times in the worker and ``--repeats`` times in-process, alternately (same
code, same seed: the accuracies must agree exactly; one untimed warm-up trial on each side first); overhead = worker
wall time - in-process wall time of the same trial.
Caches live in a temporary directory that is removed at the end. The machine may be shared: the load average is
printed before and after; timings are mean +- std.

    python benchmarks/bench_training.py [--cifar PATH/cifar10_jpg.tar.gz] [--repeats 3] [--threads 2] [--examples 3]
                                        [--device cuda] [--dtype bfloat16] [--synthetic 45000]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from llmnas_local.evaluators.data import DataSpec, describe_dataset, load_dataset
from llmnas_local.evaluators.training import TrainingConfig, TrainingEvaluator
from llmnas_local.evaluators.worker import WORKER_START_S, TrialRunner, space_ref
from llmnas_local.records import EVAL_S, PARAMS_M, PEAK_MEM_MB, TRAIN_S, VAL_ACC, TrialStatus

DEFAULT_CIFAR = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"


def fmt(values: list[float], unit: str = "s", digits: int = 3) -> str:
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.{digits}f} +- {std:.{digits}f} {unit} (n={len(values)})"


def loadavg() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def header(threads: int | None) -> None:
    import numpy
    import timm
    import torch

    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    print(f"machine: {platform.platform()}, {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, "
          f"torch {torch.__version__}, timm {timm.__version__}, numpy {numpy.__version__}, git {sha or '?'}")
    print(f"worker threads: {threads or 'torch default'}; load average before: {loadavg()}")


def bench_load(source: str, cache: str, repeats: int, label: str) -> None:
    t0 = time.perf_counter()
    ds = load_dataset(source, cache_dir=cache)
    first = time.perf_counter() - t0
    cached = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        load_dataset(source, cache_dir=cache)
        cached.append(time.perf_counter() - t0)
    info = describe_dataset(ds)
    print(f"{label}: {info['num_train']}/{info['num_val']}/{info['num_test']} images "
          f"{ds.input_size}x{ds.input_size}x{ds.in_chans}; first load (decode + write cache) {first:.2f} s; "
          f"cached {fmt(cached)}")


def synthetic_cifar(path: Path, n_train: int) -> str:
    """Random CIFAR-shaped data (timings only: accuracies are chance)."""
    import numpy as np

    rng = np.random.default_rng(0)
    np.savez(path, x_train=rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8),
             y_train=rng.integers(0, 10, n_train), x_test=rng.integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8),
             y_test=rng.integers(0, 10, 1000))
    return str(path)


def bench_trials(source: str, cache: str, repeats: int, threads: int | None, n_examples: int, device: str,
                 dtype: str) -> None:
    import torch

    from llmnas_local.dsl import get_space

    space = get_space("cnn")
    examples = space.examples()[:n_examples]
    config = TrainingConfig(device=device, dtype=dtype)
    ev = TrainingEvaluator(DataSpec(source, cache_dir=cache), config, threads=threads)
    print(f"one-epoch proxy on {ev.data_info['name']} ({ev.data_info['num_train']} training images, "
          f"batch {config.batch_size}), device {ev.device}, {dtype}:")
    t0 = time.perf_counter()
    start_s = ev.start()
    print(f"  worker start-up (spawn, import torch + timm, load the data from the cache): {start_s:.2f} s "
          f"(wall {time.perf_counter() - t0:.2f} s)")
    if threads:
        torch.set_num_threads(threads)
    init = {"data": ev.data_spec.to_json(), "fingerprint": ev.data_info["fingerprint"],
            "config": dataclasses.replace(ev.config, device=ev.device).to_json(),
            "constraints": ev.constraints.to_json(), "threads": threads}
    local = TrialRunner(init)                   # the worker's own trial code, in this process
    overheads = []
    try:
        for i, text in enumerate(examples):
            spec = space.parse(text)
            params = ev.precheck(space, spec)[PARAMS_M]
            request = {"space": space_ref(space), "spec": text}
            if i == 0:                          # first-call costs (imports, kernel set-up) on both sides, untimed
                ev.evaluate(space, spec)
                local.run(request, lambda kind, payload: None)
            walls, trains, local_walls, accs, mem = [], [], [], set(), 0.0
            for _ in range(repeats):            # alternate, so that a busy spell hits both sides alike
                out = ev.evaluate(space, spec)
                assert out.status is TrialStatus.COMPLETE and WORKER_START_S not in out.timings, out
                walls.append(out.timings[EVAL_S])
                trains.append(out.metrics[TRAIN_S])
                accs.add(out.metrics[VAL_ACC])
                mem = max(mem, out.metrics[PEAK_MEM_MB])
                t0 = time.perf_counter()
                res = local.run(request, lambda kind, payload: None)
                local_walls.append(time.perf_counter() - t0)
                accs.add(res["metrics"][VAL_ACC])
            over = [w - lw for w, lw in zip(walls, local_walls)]
            overheads += over
            print(f"  {text}\n    {params:.3f} M params; worker trial {fmt(walls)} (training {fmt(trains)}); "
                  f"in-process {fmt(local_walls)}; overhead {fmt(over)}; peak memory {mem:.0f} MiB; "
                  f"val_acc {sorted(accs)}"
                  f"{'' if len(accs) == 1 else '  (differs between runs)'}")
    finally:
        ev.close()
    print(f"  per-trial overhead of the worker, all trials: {fmt(overheads)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cifar", default=str(DEFAULT_CIFAR), help="CIFAR-10 source (the shared JPEG tar.gz)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--examples", type=int, default=3, help="how many of the cnn space's examples to train")
    ap.add_argument("--skip-cifar", action="store_true", help="skip the CIFAR-10 load timing")
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    ap.add_argument("--dtype", default="float32", help="float32 or bfloat16 (autocast)")
    ap.add_argument("--synthetic", type=int, default=0, metavar="N",
                    help="also time the proxy on N random CIFAR-shaped training images (timings only)")
    args = ap.parse_args()
    header(args.threads)
    with tempfile.TemporaryDirectory(prefix="llmnas-bench-") as cache:
        bench_load("digits", cache, args.repeats, "digits")
        bench_trials("digits", cache, args.repeats, args.threads, args.examples, args.device, args.dtype)
        if args.synthetic:
            src = synthetic_cifar(Path(cache) / "synthetic.npz", args.synthetic)
            bench_trials(src, cache, args.repeats, args.threads, args.examples, args.device, args.dtype)
        if not args.skip_cifar:
            if Path(args.cifar).exists():
                bench_load(args.cifar, cache, args.repeats, f"CIFAR-10 ({Path(args.cifar).name})")
            else:
                print(f"CIFAR-10: {args.cifar} not found, skipped (give --cifar PATH)", file=sys.stderr)
    print(f"load average after: {loadavg()}")


if __name__ == "__main__":
    main()
