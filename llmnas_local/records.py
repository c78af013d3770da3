"""The shared vocabulary of a search: trial states, metric names, outcomes and trial records.

Every module that produces or consumes results speaks in these types. Records are frozen and JSON-serialisable;
the store persists them as they are. State values are part of the on-disk format and never change.
"""
from __future__ import annotations

import dataclasses
import enum
import json
import time
from typing import Any

# Metric names: the unit is in the name. Use these constants, never the strings.
VAL_ACC = "val_acc"            # % on the validation split: the only number used for selection
TEST_ACC = "test_acc"          # % on the test split: reported, never used for selection
PARAMS_M = "params_m"          # millions of parameters
FLOPS_M = "flops_m"            # millions of FLOPs (multiply-adds x 2, torch's FlopCounterMode) for one image
TRAIN_S = "train_s"            # wall seconds of training
PEAK_MEM_MB = "peak_mem_mb"    # peak memory of the evaluation, MiB (RSS on CPU, allocator peak on GPU)
TRAIN_LOSS = "train_loss"      # mean training loss of the last epoch

# Timing names (seconds), kept apart from metrics.
PROPOSE_S = "propose_s"
BUILD_S = "build_s"
EVAL_S = "eval_s"
TIME_LIMIT_S = "time_limit_s"  # the wall-time limit an evaluation ran under (kept with a TIMEOUT)

# How the errors of an evaluation whose process died or could not start begin: the machine's doing (out of memory,
# a signal), not necessarily the architecture's. Such a FAILED, like a TIMEOUT, is transient: it may be evaluated again.
TRANSIENT_ERRORS = ("killed by signal", "the worker exited", "the worker closed", "training worker failed to start")


class TrialStatus(enum.IntEnum):
    """What happened to a proposal. Values are stored on disk: never renumber."""

    COMPLETE = 0    # evaluated; metrics hold its results
    INVALID = 1     # did not parse, or failed a semantic check (stride, channels, caps): never evaluated
    FAILED = 2      # the evaluation raised, diverged (NaN loss) or was killed (out of memory)
    TIMEOUT = 3     # the evaluation ran past its time limit
    DUPLICATE = 4   # this run already proposed this architecture: answered from the store, not counted again
    PENDING = 5     # asked, not yet told (only seen in memory; a crash leaves no such record)

    @property
    def finished(self) -> bool:
        return self is not TrialStatus.PENDING

    @property
    def evaluated(self) -> bool:
        """Whether the evaluator ran on it (or another run's identical evaluation answered it): budget counts these."""
        return self in (TrialStatus.COMPLETE, TrialStatus.FAILED, TrialStatus.TIMEOUT)


def is_transient(status: TrialStatus, error: str) -> bool:
    """Whether an evaluation's result may change if it is run again: a TIMEOUT, or a FAILED whose process was killed,
    died or could not start (see ``TRANSIENT_ERRORS``). Exceptions and diverged losses are final."""
    return status is TrialStatus.TIMEOUT or (status is TrialStatus.FAILED and error.startswith(TRANSIENT_ERRORS))


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What an evaluation of one architecture under one recipe produced: the value stored per (arch, recipe)."""

    status: TrialStatus
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"status": int(self.status), "metrics": self.metrics, "error": self.error, "timings": self.timings}

    @property
    def transient(self) -> bool:
        return is_transient(self.status, self.error)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "Outcome":
        return cls(TrialStatus(d["status"]), dict(d.get("metrics", {})), d.get("error", ""), dict(d.get("timings", {})))


@dataclasses.dataclass(frozen=True)
class LLMCall:
    """What an LLM proposer recorded of the model call that wrote a proposal (``TrialRecord.llm``).

    The candidates of one call share its ``call_id`` and the call's own figures (prompt, ``tokens_in``, ``gen_s``, the
    improver's tokens and seconds); ``raw_output``, ``tokens_out``, ``finish_reason`` and ``diagnosis`` are each
    candidate's. ``model`` is the model as the user named it (a registry name), never where its weights are.
    ``prompt`` is the chat as JSON until the store keeps it once, by hash (``prompt_hash``). ``extra``: what one
    proposer adds (the grammar it decoded under, an edit, an unparseable diagnosis...). Records stored before this type
    hold free-form dicts: :meth:`from_json` reads them (unknown keys into ``extra``; no ``call_id``)."""

    call_id: str = ""
    backend: str = ""
    model: str = ""
    temperature: float | None = None
    prompt: str = ""
    prompt_hash: str = ""
    raw_output: str = ""
    tokens_in: int = 0              # per call
    tokens_out: int = 0             # this candidate's
    gen_s: float = 0.0              # per call
    finish_reason: str = ""
    prefix_guard: bool | None = None     # whether decoding enforced the space's prefix guard (None: not recorded)
    improver_tokens_in: int = 0     # the diagnosis call before the generator's (llm), per call
    improver_tokens_out: int = 0
    improver_s: float = 0.0
    diagnosis: dict[str, str] = dataclasses.field(default_factory=dict)   # {"problem": ..., "modification": ...}
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The fields that differ from their defaults, and ``extra``'s keys beside them (as records always held)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "extra" and getattr(self, f.name) != _LLM_DEFAULTS[f.name]}
        return {**self.extra, **out}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "LLMCall":
        known = {k: v for k, v in d.items() if k in _LLM_DEFAULTS and k != "extra"}
        for k in ("tokens_in", "tokens_out", "improver_tokens_in", "improver_tokens_out"):
            if k in known:
                known[k] = int(known[k] or 0)
        for k in ("gen_s", "improver_s"):
            if k in known:
                known[k] = float(known[k] or 0.0)
        if "call_id" in known:          # llm-edit stored an integer before call ids were strings
            known["call_id"] = str(known["call_id"])
        if not isinstance(known.get("diagnosis", {}), dict):
            known["diagnosis"] = {}
        extra = {k: v for k, v in d.items() if k not in _LLM_DEFAULTS or k == "extra"}
        return cls(**known, extra=extra)


_LLM_DEFAULTS = {f.name: f.default if f.default is not dataclasses.MISSING else f.default_factory()
                 for f in dataclasses.fields(LLMCall)}


@dataclasses.dataclass(frozen=True)
class TrialRecord:
    """One proposal and what became of it. Written once, durably, when the trial finishes; never modified."""

    run_id: str
    seq: int                              # 0-based position in the run
    proposer: str
    raw: str                              # the proposal text as the proposer wrote it
    status: TrialStatus
    canonical: str | None = None          # canonical DSL text (None if it did not parse)
    arch_hash: str | None = None
    recipe_hash: str = ""
    parent_hash: str | None = None        # the architecture it was derived from, if any
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    error: str = ""
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    llm: LLMCall | None = None            # the model call that wrote it (LLM proposers); a dict is read as stored
    from_store: bool = False              # answered from an outcome another run stored: not re-evaluated
    created_at: float = dataclasses.field(default_factory=time.time)

    def __post_init__(self) -> None:
        if isinstance(self.llm, dict):        # a stored record (JSON), or a caller's dict
            object.__setattr__(self, "llm", LLMCall.from_json(self.llm) if self.llm else None)

    def to_json(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["metrics"], d["timings"] = dict(self.metrics), dict(self.timings)
        d["status"] = int(self.status)
        d["llm"] = self.llm.to_json() if self.llm is not None else {}
        return d

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "TrialRecord":
        d = dict(d)
        d["status"] = TrialStatus(d["status"])
        return cls(**d)

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True).encode()

    @classmethod
    def loads(cls, data: bytes) -> "TrialRecord":
        return cls.from_json(json.loads(data))


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """The settings a run was started with. A resumed run must be started with the same settings."""

    run_id: str
    space: str
    proposer: str
    proposer_settings: dict[str, Any]
    evaluator: str
    recipe: dict[str, Any]
    recipe_hash: str
    seed: int
    created_at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "RunRecord":
        return cls(**d)


@dataclasses.dataclass(frozen=True)
class FinalRecord:
    """A full training of one architecture (``llmnas train``), written once when it finishes; stored under
    ``(arch_hash, recipe_hash)`` beside the trials, so ``top`` and ``show`` find it by the architecture.

    ``metrics``: ``val_acc`` of the best epoch (selection is on validation), ``test_acc`` of that epoch's weights
    (measured once, at the end), ``params_m``, ``flops_m``, ``train_s``, ``train_loss`` (the best epoch's). ``recipe``:
    the training settings and the data (by fingerprint and split) with the normalisation the weights expect.
    ``weights``: the best epoch's weights (a safetensors file) relative to the store directory, and their sha256."""

    arch_hash: str
    recipe_hash: str
    space: str
    canonical: str
    run_id: str                       # the search run whose trial chose the architecture
    trial_recipe_hash: str            # the proxy recipe that scored it there
    recipe: dict[str, Any]
    metrics: dict[str, float]
    best_epoch: int                   # 1-based
    history: list[dict[str, float]]   # per epoch: epoch, train_loss, val_acc, epoch_s
    weights: str
    weights_sha256: str
    code_version: str
    created_at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> "FinalRecord":
        return cls(**d)
