"""Benchmark of drawing cnn proposals within caps (``llmnas_local.dsl.sampler.sample_within``). Claims, checked by the
figures this prints:

(a) the share of the grammar's plain draws that fit the caps (32 px, 3 channels, 10 classes; the fitted CPU caps of
    1 M parameters and 25 M FLOPs, and tighter ones), i.e. what a random search without the redraw would have spent
    on proposals the search rejects;
(b) the time of one draw within the caps: a few milliseconds (every redraw included), against seconds to minutes of
    training per proposal;
(c) every draw within the caps passes the built model's check (``TrainingEvaluator.precheck``'s profile: torch's
    FlopCounterMode), on a sample of them.

    python benchmarks/bench_sample_caps.py [--draws 2000] [--checked 50] [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import platform
import random
import time

from llmnas_local.dsl import Constraints, get_space
from llmnas_local.dsl.sampler import sample_within

CAPS = ((1.0, 25.0), (0.5, 10.0), (2.0, 100.0))


def _cpu_model() -> str:
    from llmnas_local.bench.provenance import machine_info

    return machine_info().get("cpu_model") or "?"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=2000)
    ap.add_argument("--checked", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, {_cpu_model()}; load {os.getloadavg()[0]:.2f}")
    space = get_space("cnn")
    for params, flops in CAPS:
        caps = Constraints(num_classes=10, in_chans=3, input_size=32, max_params_m=params, max_flops_m=flops)
        guard = space.prefix_guard(caps)
        rng = random.Random(args.seed)
        fit = sum(guard(space.sample(rng)) for _ in range(args.draws))
        rng = random.Random(args.seed + 1)
        t0 = time.perf_counter()
        draws = [sample_within(space, caps, rng) for _ in range(args.draws // 10)]
        per_draw_ms = 1000 * (time.perf_counter() - t0) / len(draws)
        print(f"caps {params:g}M params / {flops:g}M FLOPs: {fit / args.draws:.1%} of {args.draws} plain draws fit "
              f"(about {args.draws / max(fit, 1):.0f} draws a fitting one); sample_within {per_draw_ms:.2f} ms a "
              f"draw ({len(draws)} draws)")
        if params == 1.0:
            from llmnas_local.builder import check_caps, profile_model

            for text in draws[:args.checked]:
                spec = space.parse(text)
                model = space.build(spec, num_classes=10, in_chans=3, input_size=32)
                check_caps(profile_model(model, 10, 3, 32), caps)        # raises if over the caps
            print(f"  {min(args.checked, len(draws))} draws built and profiled: all within the caps")


if __name__ == "__main__":
    main()
