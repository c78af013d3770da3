"""In-process backend: a transformers causal LM on CPU or GPU, constrained by xgrammar's logits processor.

The default of the CPU path (the embedded SmolLM2). A single prompt with ``n`` samples -- what the LLM proposer sends --
is prefilled once and its KV cache copied to the ``n`` rows. The caches of the last few prompts are kept, so the next
call prefills only what follows the longest part it shares with one of them (the system text, task, space description
and examples of the proposer's prompts; the improver's prompt and the generator's each find their own). The rows are
then decoded with jump-forward decoding (:mod:`llmnas_local.llm.jump_forward`): one forward pass per token the model
chooses, none per token the grammar forces (an nb201 cell: about 10 passes, not 51); with ``distinct=True`` the rows
are the beams of a stochastic beam search (:mod:`llmnas_local.llm.distinct_decoding`), so the ``n`` completions are
drawn without replacement. A step keeps the logits on the model's device (grammar mask and sampling there) and copies
only the chosen tokens to the host (benchmarks/bench_decode.py). Several prompts are decoded together by transformers'
``generate`` as one left-padded batch (chunked by ``max_batch_rows``), token by token. Grammars are compiled once per text and cached (the 64 most
recent); the logits processor is new for every ``generate`` of transformers (it holds per-row matcher state). A
constraint's ``prefix_guard`` is enforced too (:mod:`llmnas_local.llm.guarded_decoding`): tokens the sampler may draw
are masked once no completion passes it.
"""
from __future__ import annotations

import collections
import copy
import inspect
import json
import os
import time
from pathlib import Path
from typing import Any, Mapping

from llmnas_local.llm.base import (FINISH_LENGTH, FINISH_STOP, BackendError, BaseBackend, Completion, Constraint,
                                   Generation, Scores)
from llmnas_local.llm.models import EMBEDDED
from llmnas_local.llm.prefix_cache import PrefixCache

COMPILED_CACHE = 64     # compiled grammars kept, least recently used dropped first
_DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
           "float16": "float16", "fp16": "float16", "half": "float16"}


class TransformersBackend(BaseBackend):
    """``model``: a registry name, a local HF folder, a ``.gguf`` file, or a folder plus ``gguf_file``.

    ``device``: "cpu", "cuda", "cuda:1"... (default: cuda when available). ``dtype``: "float32" (CPU default),
    "bfloat16" (GPU default) or "float16". ``max_batch_rows`` bounds prompts x n decoded at once.
    ``prefix_cache``: how many recent prompts keep their KV cache for later calls to share (:class:`PrefixCache`).
    """

    name = "transformers"
    enforces_prefix_guard = True
    samples_distinct = True
    scores_continuations = True

    def __init__(self, model: str | os.PathLike = EMBEDDED, *, gguf_file: str | None = None, device: str | None = None,
                 dtype: str | None = None, max_batch_rows: int = 32, prefix_cache: int = 4,
                 defaults: Mapping[str, float] | None = None):
        import torch
        import transformers
        import xgrammar as xgr

        path, gguf_file = _locate(model, gguf_file)
        super().__init__(str(path / gguf_file) if gguf_file else str(path), defaults)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        dtype = dtype or ("float32" if self.device.type == "cpu" else "bfloat16")
        if dtype not in _DTYPES:
            raise BackendError(f"unknown dtype {dtype!r} (choose from {', '.join(sorted(_DTYPES))})")
        self.dtype = getattr(torch, _DTYPES[dtype])
        self.max_batch_rows = max(1, int(max_batch_rows))
        if self.device.type == "cpu":
            # With an attention mask (jump-forward's padded batches), transformers copies every key/value head of the
            # KV cache once per query head it serves, per layer and pass; torch's CPU kernel reads the grouped heads
            # as they are, with identical logits. SmolLM2, 8 rows x 4 tokens on a 700-token cache: 0.86 -> 0.38 s.
            os.environ.setdefault("TRANSFORMERS_SDPA_FORCE_GQA", "1")
        kwargs: dict[str, Any] = {"local_files_only": True}
        if gguf_file:
            kwargs["gguf_file"] = gguf_file
        t0 = time.perf_counter()
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(path, **kwargs)
            self._model = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=self.dtype, **kwargs)
        except (OSError, ValueError, ImportError) as e:
            raise BackendError(f"cannot load {self.model}: {e}") from e
        self._model.to(self.device).eval()
        accepts = inspect.signature(self._model.forward).parameters
        self._one_logit = {"logits_to_keep": 1} if "logits_to_keep" in accepts else {}
        self.load_s = time.perf_counter() - t0
        if not self.tokenizer.chat_template:
            raise BackendError(f"{self.model} has no chat template (an instruction-tuned model is needed)")
        self.tokenizer.padding_side = "left"
        self.stop_ids = _stop_token_ids(self.tokenizer, self._model.generation_config)
        if not self.stop_ids:
            raise BackendError(f"{self.model} defines no end-of-sequence token")
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.stop_ids[0]
        # vocab_size of the config, not the tokenizer: the logits are padded (Qwen2.5: 152064 vs 151665).
        vocab_size = self._model.get_output_embeddings().weight.shape[0]
        info = xgr.TokenizerInfo.from_huggingface(self.tokenizer, vocab_size=vocab_size, stop_token_ids=self.stop_ids)
        self._compiler = xgr.GrammarCompiler(info, max_threads=max(1, min(8, os.cpu_count() or 1)))
        self._token_texts = [b.decode("utf-8", errors="replace") for b in info.decoded_vocab]
        self._compiled: collections.OrderedDict[str, Any] = collections.OrderedDict()   # LRU, COMPILED_CACHE entries
        self._prefixes = PrefixCache(prefix_cache)          # KV caches of the last prompts
        self.clock = None       # a jump_forward.StepClock: where decoding's time goes (benchmarks/bench_decode.py)

    # -- constraints ------------------------------------------------------------------------------------------------

    def compile(self, constraint: Constraint):
        """The compiled xgrammar grammar of a constraint, cached by its text."""
        compiled = self._compiled.get(constraint.key)
        if compiled is None:
            try:
                if constraint.grammar is not None:
                    compiled = self._compiler.compile_grammar(constraint.grammar)
                else:   # compact JSON: free whitespace lets a weak model pad until max_tokens
                    compiled = self._compiler.compile_json_schema(json.dumps(constraint.json_schema),
                                                                  any_whitespace=False, separators=(",", ":"))
            except Exception as e:  # xgrammar raises RuntimeError/ValueError with a parser message
                raise BackendError(f"invalid {constraint.kind}: {e}") from e
            self._compiled[constraint.key] = compiled
            if len(self._compiled) > COMPILED_CACHE:     # per-parent grammars (llm-evo) would otherwise pile up
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(constraint.key)
        return compiled

    # -- generation -------------------------------------------------------------------------------------------------

    def render(self, messages: list[dict[str, str]]) -> str:
        """The prompt text: the chat template with the assistant turn opened."""
        try:
            return self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as e:
            if not any(m["role"] == "system" for m in messages):
                raise BackendError(f"chat template of {self.model} failed: {e}") from e
        # Templates without a system role (Gemma, Mistral v1): prepend the system text to the first user turn.
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        rest = [dict(m) for m in messages if m["role"] != "system"]
        if rest and rest[0]["role"] == "user":
            rest[0]["content"] = f"{system}\n\n{rest[0]['content']}"
        else:
            rest.insert(0, {"role": "user", "content": system})
        return self.tokenizer.apply_chat_template(rest, add_generation_prompt=True, tokenize=False)

    def _generate(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        return self._decode(prompts, constraint, n, max_tokens, temperature, top_p, seed, distinct=False)

    def _generate_distinct(self, prompts, constraint, *, n, max_tokens, temperature, top_p, seed):
        return self._decode(prompts, constraint, n, max_tokens, temperature, top_p, seed, distinct=True)

    def _decode(self, prompts, constraint, n, max_tokens, temperature, top_p, seed, *, distinct):
        import torch

        if self._model is None:
            raise BackendError(f"{self.name} backend for {self.model} is closed")
        compiled = self.compile(constraint) if constraint is not None else None
        guard = constraint.prefix_guard if constraint is not None else None
        identity = constraint.identity if constraint is not None else None
        texts = [self.render(p) for p in prompts]
        per_chunk = max(1, self.max_batch_rows // n)
        results: list[Generation] = []
        t0 = time.perf_counter()
        devices = [] if self.device.type != "cuda" else [
            torch.cuda.current_device() if self.device.index is None else self.device.index]
        with torch.random.fork_rng(devices=devices, enabled=seed is not None), torch.inference_mode():
            if seed is not None:
                torch.manual_seed(seed)
            if len(texts) == 1 or distinct:      # what the proposers send: one prompt, n samples
                results.extend(self._generate_shared(text, compiled, n, max_tokens, temperature, top_p, guard=guard,
                                                     distinct=distinct, identity=identity) for text in texts)
            else:
                for start in range(0, len(texts), per_chunk):
                    results.extend(self._generate_chunk(texts[start:start + per_chunk], compiled, n, max_tokens,
                                                        temperature, top_p, guard=guard))
        gen_s = time.perf_counter() - t0
        return [Generation(completions=c, tokens_in=t, gen_s=gen_s) for c, t in results]

    def _sampling_kwargs(self, compiled, n, max_tokens, temperature, top_p, guard=None) -> dict[str, Any]:
        import xgrammar as xgr

        from llmnas_local.llm.guarded_decoding import GuardedGrammarProcessor

        sample = temperature > 0
        kwargs: dict[str, Any] = dict(max_new_tokens=max_tokens, eos_token_id=self.stop_ids, pad_token_id=self.pad_id,
                                      do_sample=sample, num_return_sequences=n if sample else 1)
        if sample:
            kwargs.update(temperature=temperature, top_p=top_p, top_k=0)
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        if compiled is not None:
            processor = xgr.contrib.hf.LogitsProcessor(compiled)  # one-shot: new per call
            if guard is not None:
                processor = GuardedGrammarProcessor(processor, guard, self._token_texts, temperature if sample else 0,
                                                    top_p)
            kwargs["logits_processor"] = [processor]
        return kwargs

    def _run_generate(self, **kwargs):
        try:
            return self._model.generate(**kwargs)
        except (RuntimeError, ValueError, AssertionError) as e:
            raise BackendError(f"generation failed: {type(e).__name__}: {e}") from e

    def _completions(self, rows: list[list[int]], n: int, sample: bool) -> list[Completion]:
        stop = set(self.stop_ids)
        completions = []
        for ids in rows:
            end = next((j for j, t in enumerate(ids) if t in stop), None)
            ids = ids if end is None else ids[:end + 1]
            completions.append(Completion(text=self.tokenizer.decode(ids, skip_special_tokens=True),
                                          tokens_out=len(ids),
                                          finish_reason=FINISH_LENGTH if end is None else FINISH_STOP))
        return completions * n if not sample else completions

    def _generate_chunk(self, texts, compiled, n, max_tokens, temperature, top_p, guard=None):
        """Several prompts as one left-padded batch, each prompt repeated ``n`` times."""
        enc = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        kwargs = self._sampling_kwargs(compiled, n, max_tokens, temperature, top_p, guard)
        out = self._run_generate(**enc, **kwargs)
        new = out[:, enc["input_ids"].shape[1]:].tolist()
        rows = kwargs["num_return_sequences"]
        return [(self._completions(new[i * rows:(i + 1) * rows], n, temperature > 0), int(mask))
                for i, mask in enumerate(enc["attention_mask"].sum(dim=1).tolist())]

    def _generate_shared(self, text, compiled, n, max_tokens, temperature, top_p, guard=None, distinct=False,
                         identity=None):
        """One prompt, ``n`` samples: prefill once (reusing the longest cached prefix of a recent prompt), then decode
        the ``n`` rows from copies of that cache with jump-forward decoding (:mod:`llmnas_local.llm.jump_forward`): one
        forward pass per token the model chooses, none per token the grammar forces. ``distinct``: the ``n`` rows are
        the beams of a stochastic beam search (:mod:`llmnas_local.llm.distinct_decoding`), so no two are alike."""
        import torch
        from transformers import DynamicCache

        from llmnas_local.llm.distinct_decoding import decode_distinct
        from llmnas_local.llm.jump_forward import decode

        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        head = ids[:-1]                       # decoding feeds the last token itself
        cache, reuse = self._prefixes.take(head, lambda: DynamicCache(config=self._model.config))
        cache_kw = _cache_keyword()
        if len(head) > reuse:     # for the cache only: the LM head runs on one position (SmolLM2: 1/5 of the work)
            self._model(input_ids=torch.tensor([head[reuse:]], device=self.device), use_cache=True,
                        cache_position=torch.arange(reuse, len(head), device=self.device), **{cache_kw: cache},
                        **self._one_logit)
        self._prefixes.put(head, cache)
        cache = copy.deepcopy(cache)          # decoding grows its copy; the prefix stays for the next call
        sample = temperature > 0 or distinct
        rows = n if sample and not distinct else 1      # stochastic beam search starts from one row and forks it
        if rows > 1:
            cache.batch_repeat_interleave(rows)

        def forward(input_ids, attention_mask, position_ids, last: list[int]):
            """Each row's logits at its position ``last[row]``: the output layer runs on those positions alone."""
            past, width = cache.get_seq_length(), input_ids.shape[1]
            keep = sorted(set(last))
            kwargs = {}
            if self._one_logit:
                kwargs["logits_to_keep"] = 1 if keep == [width - 1] else torch.tensor(keep, device=self.device)
            logits = self._model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                                 cache_position=torch.arange(past, past + width, device=self.device), use_cache=True,
                                 **{cache_kw: cache}, **kwargs).logits
            if len(keep) == 1 and self._one_logit:
                return logits[:, 0]
            column = [keep.index(j) for j in last] if self._one_logit else last
            return logits[torch.arange(len(last), device=self.device), torch.tensor(column, device=self.device)]

        common = dict(compiled=compiled, tokenizer=self.tokenizer, token_texts=self._token_texts,
                      stop_ids=self.stop_ids, pad_id=self.pad_id, max_tokens=max_tokens, temperature=temperature,
                      top_p=top_p, guard=guard, device=self.device, clock=self.clock)
        try:
            if distinct:
                decoded = decode_distinct(forward, cache.batch_select_indices, ids, n, identity=identity, **common)
            else:
                decoded = decode(forward, cache.batch_select_indices, ids, rows, **common)
        except (RuntimeError, ValueError, AssertionError) as e:
            raise BackendError(f"generation failed: {type(e).__name__}: {e}") from e
        return self._completions([tokens for tokens, _ in decoded], n, sample), len(ids)

    def score(self, messages, continuations) -> Scores:
        """The log-probability of each continuation as the assistant's answer to ``messages`` (summed over its tokens,
        the end token excluded). The continuations are scored as a two-level trie, so shared tokens are computed
        once: the prompt and the part all continuations share are one prefill (through the prefix cache); then one
        batched pass over each group's shared part (continuations grouped by their first differing token), then one
        over what follows it, the group's cache rows repeated for its members. ``llm-edit`` ranks its edits by it
        (nb201: 24 answers of 10-16 tokens cost 4 + 6 x 5 + 24 x 7 token positions instead of 24 x 17)."""
        import torch
        from transformers import DynamicCache

        if self._model is None:
            raise BackendError(f"{self.name} backend for {self.model} is closed")
        t0 = time.perf_counter()
        ids = self.tokenizer(self.render(list(messages)), add_special_tokens=False)["input_ids"]
        if not continuations:
            return Scores([], len(ids), 0.0)
        conts = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in continuations]
        if any(not c for c in conts):
            raise ValueError("every continuation needs at least one token")
        shared = _common_prefix_length(conts)
        shared -= shared == min(map(len, conts))            # leave each continuation at least one token to score
        head = ids[:-1]
        values = [0.0] * len(conts)
        with torch.inference_mode():
            cache, reuse = self._prefixes.take(head, lambda: DynamicCache(config=self._model.config))
            if len(head) > reuse:
                self._forward(torch.tensor([head[reuse:]], device=self.device), cache, reuse, **self._one_logit)
            self._prefixes.put(head, cache)
            # Token accounting: ``past`` positions are in the cache; ``pending`` is the next token to feed (never
            # fed last: a pass feeds [pending] + tokens[:-1], and its logits score all of ``tokens``).
            base, past, pending = copy.deepcopy(cache), len(head), ids[-1]
            if shared:              # the shared tokens: scored once, the same for every continuation
                tokens = conts[0][:shared]
                logp = self._logp(self._forward(torch.tensor([[pending] + tokens[:-1]], device=self.device), base,
                                                past))
                common = float(sum(logp[0, j, t] for j, t in enumerate(tokens)))
                values = [common] * len(conts)
                past, pending = past + shared, tokens[-1]
            groups: dict[int, list[int]] = {}
            for i, c in enumerate(conts):
                groups.setdefault(c[shared], []).append(i)
            stems = {g: conts[m[0]][shared:shared + _common_prefix_length([conts[i][shared:] for i in m])]
                     for g, m in groups.items()}
            by_length: dict[int, list[int]] = {}
            for g, stem in stems.items():
                by_length.setdefault(len(stem), []).append(g)
            for length, keys in by_length.items():            # equal stems in one batch: no padding in the cache
                rows = torch.tensor([[pending] + stems[g][:-1] for g in keys], device=self.device)
                stage = copy.deepcopy(base)
                stage.batch_repeat_interleave(len(keys))
                logp = self._logp(self._forward(rows, stage, past))
                todo = []                                     # (member, its stem's row, its tail)
                for r, g in enumerate(keys):
                    stem_score = float(sum(logp[r, j, t] for j, t in enumerate(stems[g])))
                    for i in groups[g]:
                        values[i] += stem_score
                        if len(conts[i]) > shared + length:
                            todo.append((i, r, conts[i][shared + length:]))
                for chunk in range(0, len(todo), self.max_batch_rows):
                    part = todo[chunk:chunk + self.max_batch_rows]
                    width = max(len(t) for _, _, t in part)
                    tail_rows = torch.tensor([[stems[keys[r]][-1]] + t[:-1] + [self.pad_id] * (width - len(t))
                                              for _, r, t in part], device=self.device)
                    rows_cache = copy.deepcopy(stage) if chunk + self.max_batch_rows < len(todo) else stage
                    rows_cache.batch_select_indices(torch.tensor([r for _, r, _ in part], device=self.device))
                    # causal attention: a row's padding after its tail cannot change the tail's scores
                    tail_logp = self._logp(self._forward(tail_rows, rows_cache, past + length))
                    for k, (i, _, t) in enumerate(part):
                        values[i] += float(sum(tail_logp[k, j, tok] for j, tok in enumerate(t)))
        return Scores(values, len(ids), time.perf_counter() - t0)

    def _forward(self, input_ids, cache, past: int, **kwargs):
        """Logits of ``input_ids`` appended to ``cache`` (which holds ``past`` positions), the cache extended."""
        import torch

        return self._model(input_ids=input_ids, use_cache=True, **{_cache_keyword(): cache}, **kwargs,
                           cache_position=torch.arange(past, past + input_ids.shape[1], device=self.device)).logits

    @staticmethod
    def _logp(logits):
        import torch

        return torch.log_softmax(logits.float(), dim=-1)

    def close(self) -> None:
        self._model = None
        self._prefixes.clear()
        self._compiled.clear()


def _common_prefix_length(seqs: list[list[int]]) -> int:
    n, limit = 0, min(map(len, seqs))
    while n < limit and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def _cache_keyword() -> str:
    """The name transformers gives the KV-cache argument: ``cache`` from 5.x (``past_key_values`` deprecated)."""
    from transformers.generation import utils

    return "cache" if "cache" in getattr(utils, "ALL_CACHE_NAMES", ()) else "past_key_values"


def _locate(model: str | os.PathLike, gguf_file: str | None) -> tuple[Path, str | None]:
    path = Path(model).expanduser()
    if gguf_file is None and path.suffix == ".gguf":
        if not path.is_file():
            raise BackendError(f"GGUF file not found: {path}")
        return path.parent, path.name
    if gguf_file is not None:
        if not (path / gguf_file).is_file():
            raise BackendError(f"GGUF file not found: {path / gguf_file}")
        return path, gguf_file
    from llmnas_local.llm.models import resolve_model
    return resolve_model(model), None


def _stop_token_ids(tokenizer, generation_config) -> list[int]:
    ids: list[int] = []
    for value in (getattr(generation_config, "eos_token_id", None), tokenizer.eos_token_id):
        for i in (value if isinstance(value, (list, tuple)) else [value]):
            if i is not None and int(i) not in ids:
                ids.append(int(i))
    return ids
