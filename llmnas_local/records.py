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
    llm: dict[str, Any] = dataclasses.field(default_factory=dict)   # backend, model, tokens, prompt hash, diagnosis
    from_store: bool = False              # answered from an outcome another run stored: not re-evaluated
    created_at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["status"] = int(self.status)
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
