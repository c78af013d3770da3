"""Claim: a decoding step of the in-process backend costs little beyond the model's forward pass (target: under 2 ms
per step at batch 1), and this script shows where the rest goes.

One step is one forward pass of jump-forward decoding (:mod:`llmnas_local.llm.jump_forward`): the model scores the
rows' pending tokens, the grammar masks the logits, the prefix guard checks the tokens the sampler may draw, the sampler
draws, and the grammar's forced text is appended. For each scenario -- the calls the LLM proposer makes: the improver's
JSON at batch 1, a guarded cnn architecture at batch 1 and 8, eight distinct nb201 cells (stochastic beam search), free
text at batch 1 and 8 -- it runs ``repeats`` seeded calls after a warm-up call (prompt prefix cached, grammar compiled)
and prints, per step, the milliseconds of each section (:class:`~llmnas_local.llm.jump_forward.StepClock`): setup, cache
(rows leaving the KV cache), inputs (building the pass's ids, mask and positions, host to device), forward (the model),
copy (the rows' logits made float32; before the change of issue 15, also copied to the host), mask (grammar bitmask fill and apply), guard, sample, jump (matcher advance and
forced text), distinct (beam bookkeeping); the overhead per step beyond the forward pass; generated tokens/s over the
whole call (prompt prefill of the uncached tail and cache copies included); and a digest of the output texts, equal
before and after a change that must not change them.

On a GPU (``--device cuda``) each call runs twice: once for the wall time and tokens/s, once with the device
synchronised at each section boundary, which charges queued device work to the section that queued it (the split and
the forward time come from that run). ``--random-weights CONFIG_DIR`` builds a random-weight model of the shape in
``CONFIG_DIR/config.json`` with the tokenizer files beside it (for a machine without the weights: honest speed, not
meaningful text).

    .venv/bin/python benchmarks/bench_decode.py                     # embedded SmolLM2-135M, CPU
    python3 benchmarks/bench_decode.py --device cuda --random-weights models/smollm2-135m-instruct
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # steadier on a shared machine (see bench_llm.py)
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench_llm import machine  # noqa: E402

SECTIONS = ("setup", "cache", "inputs", "forward", "copy", "mask", "guard", "sample", "jump", "distinct")
IMPROVER = [{"role": "system", "content": "You review neural architecture search runs."},
            {"role": "user", "content": "The last three CNNs overfit the digits data set: training accuracy 99%, "
                                        "validation 91%. As JSON, name the problem and one modification."}]


@dataclasses.dataclass(frozen=True)
class Scenario:
    name: str
    prompt: list
    constraint: object
    n: int
    max_tokens: int
    distinct: bool = False


def scenarios() -> list[Scenario]:
    from llmnas_local.dsl import get_space
    from llmnas_local.dsl.base import Constraints
    from llmnas_local.llm import Constraint
    from llmnas_local.proposers.llm import DIAGNOSIS_SCHEMA

    cnn, nb201 = get_space("cnn"), get_space("nb201")
    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=5.0)
    guarded = Constraint(grammar=cnn.grammar(), prefix_guard=cnn.prefix_guard(caps))
    cells = Constraint(grammar=nb201.grammar(), identity=lambda text: nb201.arch_hash(nb201.parse(text)))
    cnn_prompt = [{"role": "user", "content": f"Write a wide and deep CNN.\n{cnn.describe()}\n"
                                              f"Example: {cnn.examples()[1]}"}]
    cell_prompt = [{"role": "user", "content": f"Propose one cell.\n{nb201.describe()}\n"
                                               f"Example: {nb201.examples()[0]}"}]
    return [Scenario("json b1", IMPROVER, Constraint(json_schema=DIAGNOSIS_SCHEMA), 1, 120),
            Scenario("cnn+guard b1", cnn_prompt, guarded, 1, 200),
            Scenario("cnn+guard b8", cnn_prompt, guarded, 8, 200),
            Scenario("nb201 distinct b8", cell_prompt, cells, 8, 80, distinct=True),
            Scenario("free b1", IMPROVER, None, 1, 64),
            Scenario("free b8", IMPROVER, None, 8, 64)]


def random_weight_model(config_dir: Path, dest: Path) -> Path:
    """A model folder in ``dest``: random weights (seed 0) of the shape in ``config_dir``'s config.json, and every
    other file of ``config_dir`` (tokenizer, chat template, generation config) copied beside them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(config_dir, local_files_only=True)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(dest)
    for f in config_dir.iterdir():
        if f.is_file() and f.name != "config.json" and f.suffix not in (".safetensors", ".bin", ".gguf", ".pt"):
            shutil.copy(f, dest / f.name)
    return dest


def run_call(backend, s: Scenario, seed: int, sync) -> dict:
    from llmnas_local.llm.jump_forward import StepClock

    backend.clock = clock = StepClock(sync)
    t0 = time.perf_counter()
    [gen] = backend.generate([s.prompt], s.constraint, n=s.n, max_tokens=s.max_tokens, temperature=0.7, top_p=0.95,
                             seed=seed, distinct=s.distinct)
    wall = time.perf_counter() - t0
    backend.clock = None
    return {"wall": wall, "tokens": gen.tokens_out, "steps": clock.counts["forward"], "texts": gen.texts,
            "seconds": dict(clock.seconds)}


def bench(backend, s: Scenario, repeats: int, cuda: bool) -> dict:
    import torch

    sync = torch.cuda.synchronize if cuda else None
    run_call(backend, s, 999, None)                       # warm-up: the prompt's cache, the grammar
    timed, split, texts = [], [], []
    for seed in range(repeats):
        timed.append(run_call(backend, s, seed, None))
        split.append(run_call(backend, s, seed, sync) if cuda else timed[-1])
        texts.extend(timed[-1]["texts"])
    steps = sum(r["steps"] for r in split)
    per_step = {k: 1e3 * sum(r["seconds"].get(k, 0.0) for r in split) / steps for k in SECTIONS}
    # pooled over the calls (all their steps), the spread as the std of the per-call figures
    decode_ms = 1e3 * sum(sum(r["seconds"].values()) for r in timed) / sum(r["steps"] for r in timed)
    forward_ms = per_step["forward"]
    per_call = [1e3 * (sum(t["seconds"].values()) / t["steps"] - p["seconds"].get("forward", 0.0) / p["steps"])
                for t, p in zip(timed, split)]
    tok_s = [r["tokens"] / r["wall"] for r in timed]
    tokens_per_step = [r["tokens"] / r["steps"] for r in timed]
    return {"scenario": s.name, "rows": s.n, "repeats": repeats, "tok_s": _ms(tok_s),
            "step_ms": (decode_ms, _ms([1e3 * sum(r["seconds"].values()) / r["steps"] for r in timed])[1]),
            "forward_ms": forward_ms, "overhead_ms": (decode_ms - forward_ms, _ms(per_call)[1]),
            "tokens_per_step": _ms(tokens_per_step), "steps_per_call": steps / repeats,
            "call_s": _ms([r["wall"] for r in timed]), "split_ms": per_step,
            "digest": hashlib.sha256(json.dumps(texts).encode()).hexdigest()[:12], "example": texts[0][:70]}


def _ms(values: list[float]) -> tuple[float, float]:
    return statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="smollm2", help="registry name or model folder (default: the embedded model)")
    ap.add_argument("--random-weights", metavar="CONFIG_DIR", help="a random-weight model of this folder's shape")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None, help="default: float32 on CPU, bfloat16 on GPU")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--json", help="also write the results to this file")
    args = ap.parse_args()
    if args.random_weights and not (Path(args.random_weights) / "config.json").is_file():
        print(f"error: --random-weights: no config.json in {args.random_weights}", file=sys.stderr)
        sys.exit(2)

    from llmnas_local.llm import TransformersBackend

    info = machine()
    print(f"machine: {info['cpu']} | {info['cores']} cores | torch threads {info['torch_threads']} | "
          f"OMP_WAIT_POLICY={info['omp_wait_policy']} | cuda {info['cuda']} | load {os.getloadavg()[0]:.2f}")
    print(f"versions: python {info['python']} torch {info['torch']} transformers {info['transformers']} "
          f"xgrammar {info['xgrammar']} | git {info['git']}")
    chosen = [s for s in scenarios() if not args.only or s.name in args.only.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        model = random_weight_model(Path(args.random_weights), Path(tmp)) if args.random_weights else args.model
        with TransformersBackend(model, device=args.device, dtype=args.dtype) as backend:
            print(f"model: {'random weights of ' + args.random_weights if args.random_weights else backend.model} | "
                  f"device {backend.device} | dtype {backend.dtype} | load {backend.load_s:.1f} s\n", flush=True)
            results = []
            for s in chosen:
                load = os.getloadavg()[0]
                r = bench(backend, s, args.repeats, backend.device.type == "cuda")
                r["load"] = load
                results.append(r)
                print(f"{s.name}: {r['tok_s'][0]:.1f} ± {r['tok_s'][1]:.1f} tok/s, {r['steps_per_call']:.0f} steps "
                      f"a call, {r['tokens_per_step'][0]:.2f} tokens a step, load {load:.2f}, outputs {r['digest']}, "
                      f"e.g. {r['example']!r}", flush=True)
    print(f"\nms per step (all steps of {args.repeats} seeded calls; step = the sections' sum, overhead = step - forward; "
          f"± the std of the per-call figures)")
    print(f"{'scenario':18s} {'rows':>4s} " + " ".join(f"{k:>8s}" for k in SECTIONS)
          + f" {'step':>13s} {'overhead':>13s} {'tok/s':>13s}")
    for r in results:
        print(f"{r['scenario']:18s} {r['rows']:4d} " + " ".join(f"{r['split_ms'][k]:8.2f}" for k in SECTIONS)
              + f" {r['step_ms'][0]:7.2f} ± {r['step_ms'][1]:4.2f} {r['overhead_ms'][0]:7.2f} ± "
                f"{r['overhead_ms'][1]:4.2f} {r['tok_s'][0]:7.1f} ± {r['tok_s'][1]:4.1f}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"machine": info, "args": vars(args), "runs": results}, indent=1))


if __name__ == "__main__":
    main()
