"""The in-process backend with the real embedded model (SmolLM2-135M-Instruct) on CPU."""
import json
import re

import pytest

from llmnas_local.llm import BackendError, Constraint, TransformersBackend
from tests.llm.common import DIAG_PROMPT, DIAGNOSIS_SCHEMA, PROMPT, STAGE_GRAMMAR, STAGE_RE

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def backend(smollm2_dir):
    with TransformersBackend(smollm2_dir) as b:
        yield b


def test_grammar_outputs_are_all_valid(backend):
    other = [{"role": "user", "content": "Give one inverted-residual stage string, nothing else."}]
    gens = backend.generate([PROMPT, other], Constraint(grammar=STAGE_GRAMMAR), n=2, max_tokens=80, seed=0)
    assert len(gens) == 2 and gens[0].tokens_in > gens[1].tokens_in > 0          # input order kept
    for g in gens:
        assert len(g.completions) == 2 and g.gen_s > 0
        for c in g.completions:
            assert c.finish_reason == "stop" and re.fullmatch(STAGE_RE, c.text), c
            assert 0 < c.tokens_out <= 80


def test_json_schema_outputs_parse(backend):
    [g] = backend.generate([DIAG_PROMPT], Constraint(json_schema=DIAGNOSIS_SCHEMA), n=3, max_tokens=120, seed=1)
    for c in g.completions:
        assert c.finish_reason == "stop", c
        data = json.loads(c.text)
        assert set(data) == {"problem", "modification"} and all(isinstance(v, str) for v in data.values())


def test_seed_repeats_and_greedy(backend):
    c = Constraint(grammar=STAGE_GRAMMAR)
    a = backend.generate([PROMPT], c, n=2, max_tokens=24, seed=7)[0].texts
    assert backend.generate([PROMPT], c, n=2, max_tokens=24, seed=7)[0].texts == a
    greedy = backend.generate([PROMPT], c, n=2, max_tokens=24, temperature=0)[0].texts
    assert greedy[0] == greedy[1]


def test_distinct_completions_differ_and_repeat_with_the_seed(backend):
    c = Constraint(grammar=STAGE_GRAMMAR)
    for temperature in (0.8, 0):                      # stochastic beam search; at 0, beam search
        [g] = backend.generate([PROMPT], c, n=6, max_tokens=80, temperature=temperature, seed=3, distinct=True)
        assert len(set(g.texts)) == len(g.texts) == 6, g.texts
        assert all(x.finish_reason == "stop" and re.fullmatch(STAGE_RE, x.text) for x in g.completions)
        again = backend.generate([PROMPT], c, n=6, max_tokens=80, temperature=temperature, seed=3, distinct=True)
        assert again[0].texts == g.texts
    [two] = backend.generate([PROMPT, DIAG_PROMPT], c, n=2, max_tokens=80, seed=3, distinct=True)[1:]
    assert len(set(two.texts)) == 2


def test_cut_off_is_reported_and_bad_grammar_is_a_backend_error(backend):
    [g] = backend.generate([PROMPT], None, n=1, max_tokens=3, temperature=0)
    assert g.completions[0].finish_reason == "length" and g.completions[0].tokens_out == 3
    with pytest.raises(BackendError, match="invalid grammar"):
        backend.generate([PROMPT], Constraint(grammar="root ::= undefined_rule"), max_tokens=4)
    assert backend.compile(Constraint(grammar=STAGE_GRAMMAR)) is backend.compile(Constraint(grammar=STAGE_GRAMMAR))


def test_prefix_guard_keeps_every_completion_within_the_caps(backend):
    """The cnn space's guard at 5M FLOPs on digits (16x16): the prompt asks for a wide, deep network; unguarded, the
    model writes ones over the cap, guarded every completion parses, passes the checks and fits."""
    from llmnas_local.dsl import get_space
    from llmnas_local.dsl.base import Constraints, SemanticError
    from llmnas_local.dsl.cnn_cost import cnn_cost

    space = get_space("cnn")
    caps = Constraints(num_classes=10, in_chans=1, input_size=16, max_params_m=1.0, max_flops_m=5.0)
    prompt = [{"role": "user", "content": f"Write a wide and deep CNN.\n{space.describe()}\nExample: "
                                          f"{space.examples()[1]}"}]

    def fits(text):
        spec = space.parse(text)
        try:
            space.check(spec, caps)
        except SemanticError:
            return False
        return cnn_cost(spec, 10, 1, 16).within(caps)

    free, guarded = (backend.generate([prompt], Constraint(grammar=space.grammar(), prefix_guard=guard), n=4,
                                      max_tokens=256, temperature=1.0, seed=1)[0]
                     for guard in (None, space.prefix_guard(caps)))
    assert not all(fits(c.text) for c in free.completions)
    assert all(c.finish_reason == "stop" and fits(c.text) for c in guarded.completions), guarded.texts


@pytest.fixture(scope="module")
def tiny_random_model(smollm2_dir, tmp_path_factory):
    """A 2-layer random Llama with SmolLM2's tokenizer (16 MB): exercises the GPU path in seconds."""
    import torch
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    folder = tmp_path_factory.mktemp("tiny-llama")
    config = LlamaConfig(vocab_size=49152, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
                         bos_token_id=1, eos_token_id=2, pad_token_id=2)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        LlamaForCausalLM(config).save_pretrained(folder)
    AutoTokenizer.from_pretrained(smollm2_dir).save_pretrained(folder)
    return folder


def test_cuda_bfloat16_when_available(tiny_random_model):
    import torch
    with TransformersBackend(tiny_random_model, device="cuda") as b:
        assert b.dtype == torch.bfloat16
        c = Constraint(grammar=STAGE_GRAMMAR)
        gens = b.generate([PROMPT] * 4, c, n=4, max_tokens=120, seed=0)
        assert all(x.finish_reason == "stop" and re.fullmatch(STAGE_RE, x.text) for g in gens for x in g.completions)
        assert [g.texts for g in b.generate([PROMPT] * 4, c, n=4, max_tokens=120, seed=0)] == [g.texts for g in gens]
        [g] = b.generate([DIAG_PROMPT], Constraint(json_schema=DIAGNOSIS_SCHEMA), n=4, max_tokens=120, seed=0)
        assert all(set(json.loads(t)) == {"problem", "modification"} for t in g.texts)


def test_one_prompt_is_prefilled_once_and_the_next_call_reuses_its_prefix(backend):
    c = Constraint(grammar=STAGE_GRAMMAR)
    longer = [dict(m) for m in PROMPT]
    longer[-1]["content"] += " Keep it small."
    for messages in (PROMPT, PROMPT, longer):      # cold, the whole prefix cached, the prefix up to the change
        [shared] = backend.generate([messages], c, n=1, max_tokens=120, temperature=0)
        [(batched, _)] = backend._generate_chunk([backend.render(messages)], backend.compile(c), 1, 120, 0.0, 1.0)
        assert shared.texts == [x.text for x in batched]        # greedy: the same choices, forced text jumped over
        assert shared.completions[0].finish_reason == "stop"
    ids, cache = backend._prefixes._entries[-1]                  # the last prompt's, all but its last token
    assert cache.get_seq_length() == len(ids) == shared.tokens_in - 1


def test_alternating_prompts_keep_their_own_prefixes(backend):
    """The improver's prompt between two generator prompts does not evict the generator's cache; greedy outputs equal
    those of a cold batch."""
    c = Constraint(grammar=STAGE_GRAMMAR)
    backend._prefixes.clear()
    outputs = []
    for messages in (PROMPT, DIAG_PROMPT, PROMPT, DIAG_PROMPT):
        [shared] = backend.generate([messages], c, n=1, max_tokens=120, temperature=0)
        [(batched, _)] = backend._generate_chunk([backend.render(messages)], backend.compile(c), 1, 120, 0.0, 1.0)
        assert shared.texts == [x.text for x in batched]
        outputs.append(shared.texts)
    assert outputs[0] == outputs[2] and outputs[1] == outputs[3]
    heads = {tuple(backend.tokenizer(backend.render(m), add_special_tokens=False)["input_ids"][:-1])
             for m in (PROMPT, DIAG_PROMPT)}
    assert {tuple(ids) for ids, cache in backend._prefixes._entries if cache.get_seq_length() == len(ids)} == heads


def test_score_equals_a_plain_forward_pass(backend):
    """score() computes continuations as a trie over a cached prefix; each value must equal the log-probability a
    plain forward pass of prompt + continuation gives (nb201 edit answers, and ragged ones with a shared part)."""
    import torch

    messages = [{"role": "user", "content": "Choose one edit of the cell. " + "context " * 40}]
    answers = [f"weak part: e{k}\nnew value: {op}" for k in (1, 4) for op in ("none", "nor_conv_3x3", "avg_pool_3x3")]
    ragged = ["s1.k = 3", "stem.c = 8", "s1.k = 5", "head.n = re", "a", "ab"]
    ids = backend.tokenizer(backend.render(messages), add_special_tokens=False)["input_ids"]

    def plain(text: str) -> float:
        cont = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = backend._model(input_ids=torch.tensor([ids + cont])).logits.float()
        logp = torch.log_softmax(logits, -1)[0]
        return sum(float(logp[len(ids) - 1 + j, t]) for j, t in enumerate(cont))

    for batch in (answers, ragged, ["same", "same"], ["x"]):
        scores = backend.score(messages, batch)
        assert scores.tokens_in == len(ids) and len(scores.values) == len(batch)
        assert scores.values == pytest.approx([plain(t) for t in batch], abs=1e-3)
    assert backend.score(messages, []).values == []
