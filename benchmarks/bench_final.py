"""Claim: from a search's store, ``llmnas train --best`` trains the winner fully, and its export and report follow;
this script prints what that costs and gives, on the machine it runs on.

It copies STORE (the final training writes into a store: the original stays as it was), trains the best architecture
by validation (of ``--run``, or of every run) for ``--epochs`` epochs with the documented recipe
(:class:`~llmnas_local.final.FinalConfig`), and prints: the machine, the load average before and after, the commit;
the architecture and its proxy scores from the search; each epoch's loss, validation accuracy and seconds; the final
validation accuracy (best epoch) and the test accuracy (measured once, on those weights); the training's wall time;
then the seconds to export each format (safetensors, ONNX, TorchScript) and to write the report.

    .venv/bin/python benchmarks/bench_final.py runs/digits --epochs 10
    .venv/bin/python benchmarks/bench_final.py runs/cifar10 --epochs 5 --data ../shared/data/cifar10/cifar10_jpg.tar.gz
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

from llmnas_local.final import FinalConfig, train_final
from llmnas_local.final.export import FORMATS, export_model
from llmnas_local.final.train import code_version
from llmnas_local.records import FLOPS_M, PARAMS_M, TEST_ACC, VAL_ACC
from llmnas_local.report import write_report
from llmnas_local.store import LmdbStore


def machine() -> str:
    import torch

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?") \
        if os.path.exists("/proc/cpuinfo") else platform.processor()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{os.cpu_count()} cores {cpu} {platform.machine()}, {gpu}; torch {torch.__version__}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("store")
    ap.add_argument("--run", default=None)
    ap.add_argument("--data", default=None)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(f"code: llmnas_local {code_version()}; load average before: {os.getloadavg()}")
    with tempfile.TemporaryDirectory(prefix="bench_final_") as tmp:
        store = Path(tmp) / "store"
        shutil.copytree(args.store, store, ignore=shutil.ignore_patterns("finals", "locks"))
        config = FinalConfig(epochs=args.epochs, batch_size=args.batch_size, device=args.device)
        t0 = time.perf_counter()
        with LmdbStore(store) as st:
            final = train_final(st, best=True, run_id=args.run, data=args.data, config=config,
                                log=lambda s: print("  " + s, flush=True))
            [trial] = [t for t in st.trials_of_arch(final.arch_hash) if t.run_id == final.run_id][:1]
        wall = time.perf_counter() - t0
        m = final.metrics
        print(f"architecture {final.arch_hash[:12]}: {final.canonical}")
        print(f"  {m[PARAMS_M]:.4f} M parameters, {m[FLOPS_M]:.1f} M FLOPs; search proxy val_acc "
              f"{trial.metrics.get(VAL_ACC, float('nan')):.2f}, test_acc {trial.metrics.get(TEST_ACC, float('nan')):.2f}")
        print(f"final training: {len(final.history)} epochs on {final.recipe['device']}, "
              f"{final.recipe['data']['num_train']} training images: val_acc {m[VAL_ACC]:.2f} (epoch "
              f"{final.best_epoch}), test_acc {m[TEST_ACC]:.2f}")
        epoch_s = [h["epoch_s"] for h in final.history]
        print(f"  training {m['train_s']:.1f} s ({min(epoch_s):.1f}-{max(epoch_s):.1f} s an epoch); wall time of "
              f"train_final (data, build, training, test, record) {wall:.1f} s")
        with LmdbStore(store, readonly=True) as st:
            for fmt in sorted(FORMATS):
                t0 = time.perf_counter()
                export_model(st, final.arch_hash, fmt=fmt, out=Path(tmp) / fmt)
                print(f"export {fmt}: {time.perf_counter() - t0:.2f} s")
            t0 = time.perf_counter()
            write_report(st, Path(tmp) / "report")
            print(f"report: {time.perf_counter() - t0:.2f} s")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
