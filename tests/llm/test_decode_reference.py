"""The in-process backend's outputs do not move when its decoding gets faster: fixed prompts, the real embedded model
(SmolLM2-135M on the CPU), every decoding path (jump-forward rows, stochastic beam search and beam search, the prefix
guard, JSON schema, free text, the multi-prompt batch of transformers' ``generate``), greedy and seeded.

The reference texts (decode_reference.json) were written by the code before the decoding-speed work (issue 15) with
``python -m tests.llm.test_decode_reference``; rewrite them only for a change meant to alter what the model writes.
One such change: the sampler now draws among the top-p nucleus alone (same distribution, another random stream), so
the two seeded sampling cases ("stage sampled", "cnn guarded sampled") were rewritten then; with the former sampler
put back, that code still gave every former text.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from tests.llm.common import DIAG_PROMPT, DIAGNOSIS_SCHEMA, PROMPT, STAGE_GRAMMAR

REFERENCE = Path(__file__).with_name("decode_reference.json")
OTHER = [{"role": "user", "content": "Give one inverted-residual stage string, nothing else."}]


def run_cases(backend) -> dict[str, list[list[str]]]:
    """Every case's texts (one list per prompt), decoded by ``backend``."""
    from llmnas_local.dsl import get_space
    from llmnas_local.dsl.base import Constraints
    from llmnas_local.llm import Constraint

    stage = Constraint(grammar=STAGE_GRAMMAR)
    nb201 = get_space("nb201")
    cnn = get_space("cnn")
    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=5.0)
    guarded = Constraint(grammar=cnn.grammar(), prefix_guard=cnn.prefix_guard(caps))
    cnn_prompt = [{"role": "user", "content": f"Write a wide and deep CNN.\n{cnn.describe()}\nExample: "
                                              f"{cnn.examples()[1]}"}]
    nb201_prompt = [{"role": "user", "content": f"Propose one cell.\n{nb201.describe()}\nExample: "
                                                f"{nb201.examples()[0]}"}]
    cells = Constraint(grammar=nb201.grammar(), identity=lambda text: nb201.arch_hash(nb201.parse(text)))
    cases = {
        "stage greedy": ([PROMPT], stage, dict(n=1, max_tokens=80, temperature=0)),
        "stage sampled": ([PROMPT], stage, dict(n=4, max_tokens=80, temperature=0.8, top_p=0.95, seed=5)),
        "stage beam": ([PROMPT], stage, dict(n=4, max_tokens=80, temperature=0, distinct=True)),
        "stage distinct": ([PROMPT], stage, dict(n=4, max_tokens=80, temperature=0.8, top_p=0.95, seed=3,
                                                 distinct=True)),
        "nb201 greedy": ([nb201_prompt], cells, dict(n=1, max_tokens=80, temperature=0)),
        "nb201 distinct": ([nb201_prompt], cells, dict(n=8, max_tokens=80, temperature=1.0, top_p=0.95, seed=11,
                                                       distinct=True)),
        "cnn guarded greedy": ([cnn_prompt], guarded, dict(n=1, max_tokens=256, temperature=0)),
        "cnn guarded sampled": ([cnn_prompt], guarded, dict(n=4, max_tokens=256, temperature=1.0, top_p=0.95,
                                                            seed=1)),
        "json greedy": ([DIAG_PROMPT], Constraint(json_schema=DIAGNOSIS_SCHEMA), dict(n=1, max_tokens=120,
                                                                                        temperature=0)),
        "free greedy": ([OTHER], None, dict(n=1, max_tokens=24, temperature=0)),
        "batch greedy": ([PROMPT, OTHER], stage, dict(n=2, max_tokens=80, temperature=0)),
        "batch guarded greedy": ([cnn_prompt, PROMPT], guarded, dict(n=1, max_tokens=256, temperature=0)),
    }
    backend._prefixes.clear()
    return {name: [g.texts for g in backend.generate(prompts, constraint, **kwargs)]
            for name, (prompts, constraint, kwargs) in cases.items()}


@pytest.mark.slow
def test_outputs_equal_the_reference(smollm2_dir):
    from llmnas_local.llm import TransformersBackend

    expected = json.loads(REFERENCE.read_text())
    with TransformersBackend(smollm2_dir, device="cpu") as backend:
        got = run_cases(backend)
    assert set(got) == set(expected)
    for name in expected:
        assert got[name] == expected[name], name


if __name__ == "__main__":      # write the reference (see the module's docstring)
    from llmnas_local.llm import TransformersBackend
    from llmnas_local.llm.models import ensure_embedded_model

    with TransformersBackend(ensure_embedded_model(), device="cpu") as b:
        texts = run_cases(b)
    REFERENCE.write_text(json.dumps(texts, indent=1) + "\n")
    print(json.dumps(texts, indent=1), file=sys.stderr)
