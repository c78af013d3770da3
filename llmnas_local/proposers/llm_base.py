"""What every LLM proposer (``llm``, ``llm-evo``, ``llm-edit``) shares: a backend, the model's name as the user gave it,
and the tail of ``propose``: one model call whose completions become proposals, each with its :class:`LLMCall` record
(the call's id and figures shared by its candidates, the completion's own beside them)."""
from __future__ import annotations

import dataclasses
import json
import time
import uuid
from typing import Any, Callable

from llmnas_local.proposers.base import BaseProposer, Proposal
from llmnas_local.records import LLMCall

# A completion -> (the proposal's text, changes to its record); default: the text as written, nothing changed.
Reader = Callable[[Any], "tuple[str, dict[str, Any]]"]


class BaseLLMProposer(BaseProposer):
    """A proposer that asks a model (``backend``); ``model_name`` is what records and settings store (default: the
    backend's model)."""

    def __init__(self, backend, model_name: str | None = None):
        self.backend = backend
        self.model_name = model_name or str(backend.model)

    def ask(self, messages: list[dict[str, str]], constraint, *, t0: float, parent_hash: str | None,
            call: dict[str, Any] | None = None, read: Reader | None = None, call_id: str | None = None,
            **generate: Any) -> list[Proposal]:
        """One call of the backend (``generate``: n, max_tokens, temperature, top_p, seed, distinct...) and its
        completions as proposals: ``call`` holds the record's fields this proposer adds for the whole call, ``read``
        turns a completion into its text and record changes, ``t0`` is when ``propose`` began (its seconds are shared
        by the candidates)."""
        [gen] = self.backend.generate([messages], constraint, **generate)
        record = LLMCall(call_id=call_id or uuid.uuid4().hex, backend=self.backend.name, model=self.model_name,
                         prompt=json.dumps(messages, ensure_ascii=False), tokens_in=gen.tokens_in, gen_s=gen.gen_s,
                         **(call or {}))
        share = (time.perf_counter() - t0) / max(1, len(gen.completions))
        out = []
        for c in gen.completions:
            text, changes = read(c) if read is not None else (c.text.strip(), {})
            llm = dataclasses.replace(record, raw_output=c.text, tokens_out=c.tokens_out,
                                      finish_reason=c.finish_reason, **changes)
            out.append(Proposal(text, parent_hash=parent_hash, llm=llm, propose_s=share))
        return out

    def close(self) -> None:
        self.backend.close()
