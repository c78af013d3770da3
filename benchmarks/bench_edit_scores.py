"""Is the model's choice of edit worth anything? (issue 13: measure before ranking by it.)

For parents drawn from NAS-Bench-201 (seeded, never the reported seeds 0-19), every valid one-edit child is scored by
the embedded model: the log-probability of its answer ``weak part: <slot>\\nnew value: <value>`` after ``llm-edit``'s
prompt with no memory (what the model brings by itself), raw and with contextual calibration (Zhao et al. 2021: minus
the same answer's log-probability after the prompt with the parent's values hidden, which removes the model's fixed
preferences for a slot or a value). Printed per setting:

- Spearman's rho between the score and the child's validation accuracy, per parent, then mean with its 95%
  t-interval over parents (n shown);
- the gain of choosing greedily by the score over choosing uniformly (what evolution's mutation does): the chosen
  child's validation accuracy minus the mean of the parent's children, mean and 95% t-interval;
- the same for sampling from the model's distribution at temperature 0.7 (what ``llm-edit`` does), in expectation.

    python benchmarks/bench_edit_scores.py --table ../shared/data/nb201/nb201_cifar.csv --preset cifar10 --parents 40
"""
from __future__ import annotations

import argparse
import math
import random
import statistics
import time

import torch


def spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    rho = spearmanr(xs, ys).statistic
    return float(rho) if math.isfinite(rho) else 0.0


def t_interval(values: list[float]) -> str:
    from llmnas_local.bench.stats import summarize

    m = summarize(values)
    return f"{m.mean:+.3f} [{m.mean - m.ci95:+.3f}, {m.mean + m.ci95:+.3f}] (n={m.n})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--table", required=True)
    ap.add_argument("--preset", default="cifar10")
    ap.add_argument("--parents", type=int, default=40, help="parents per pool")
    ap.add_argument("--seed", type=int, default=100)
    ap.add_argument("--hints", action="store_true", help="the space's domain hints in the prompt")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from llmnas_local.dsl import SemanticError, get_space
    from llmnas_local.evaluators import TabularEvaluator
    from llmnas_local.llm import create_backend
    from llmnas_local.prompts import PromptContext, editor_messages
    from llmnas_local.proposers.edit_choice import CalibratedChooser, answer_text
    from llmnas_local.records import VAL_ACC

    space = get_space("nb201")
    evaluator = TabularEvaluator(args.table, preset=args.preset)
    caps = evaluator.constraints

    def val(spec) -> float | None:
        try:
            space.check(spec, caps)
        except SemanticError:
            return None
        out = evaluator.evaluate(space, spec)
        return out.metrics.get(VAL_ACC)

    backend = create_backend("transformers", model="smollm2")
    ctx = PromptContext(task=evaluator.describe_task(), description=space.describe(args.hints), examples=(), elites=(),
                        triples=())

    # content-free scores (the parent's values hidden), as llm-edit computes them: once per slot layout
    chooser = CalibratedChooser(backend)
    free = chooser.free_scores(ctx, space.slots(space.parse(space.examples()[0])))

    rng = random.Random(args.seed)
    cells = []
    while len(cells) < 4000:
        spec = space.parse(space.sample(rng))
        v = val(spec)
        if v is not None:
            cells.append((spec, v))
    median = statistics.median(v for _, v in cells)
    pools = {"uniform": [c for c in cells[:args.parents]],
             "above median": [c for c in cells if c[1] > median][:args.parents]}
    t0 = time.perf_counter()
    print(f"preset {args.preset}, hints {'on' if args.hints else 'off'}, seed {args.seed}, embedded SmolLM2-135M, "
          f"{args.threads} thread(s)")
    for pool, parents in pools.items():
        rho_raw, rho_cal, gain_raw, gain_cal, gain_sample = [], [], [], [], []
        for spec, parent_val in parents:
            slots = space.slots(spec)
            options = [(s.name, v, child, val(child)) for s in slots for v, child in s.options]
            options = [o for o in options if o[3] is not None]
            msgs = editor_messages(ctx, parent_val, [f"{s.name} ({s.label}) = {s.value}" for s in slots])
            raw = backend.score(msgs, [answer_text(o[0], o[1]) for o in options]).values
            cal = [r - free[(o[0], o[1])] for r, o in zip(raw, options)]
            vals = [o[3] for o in options]
            mean_child = statistics.fmean(vals)
            rho_raw.append(spearman(raw, vals))
            rho_cal.append(spearman(cal, vals))
            gain_raw.append(vals[max(range(len(raw)), key=raw.__getitem__)] - mean_child)
            gain_cal.append(vals[max(range(len(cal)), key=cal.__getitem__)] - mean_child)
            weights = [math.exp((r - max(raw)) / 0.7) for r in raw]
            gain_sample.append(sum(w * v for w, v in zip(weights, vals)) / sum(weights) - mean_child)
        print(f"parents {pool}: Spearman rho raw {t_interval(rho_raw)}, calibrated {t_interval(rho_cal)}")
        print(f"  gain over a uniform edit (val_acc points): greedy raw {t_interval(gain_raw)}, greedy calibrated "
              f"{t_interval(gain_cal)}, sampled at T=0.7 {t_interval(gain_sample)}")
    print(f"{time.perf_counter() - t0:.0f} s")
    backend.close()


if __name__ == "__main__":
    main()
