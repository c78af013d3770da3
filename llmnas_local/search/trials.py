"""The search loop's value types, apart so that the loop (:mod:`~llmnas_local.search.study`) and its lookahead
(:mod:`~llmnas_local.search.pipeline`) both import them without importing each other."""
from __future__ import annotations

import dataclasses
import time
from typing import Any

from llmnas_local.proposers.base import Proposal
from llmnas_local.records import TrialStatus


class SearchStalled(RuntimeError):
    """The proposer kept proposing what cannot be evaluated (invalid or known) for too long."""


@dataclasses.dataclass
class Verdict:
    """A proposal that needs no evaluation and the record it gets. ``deferred``: a duplicate of a proposal that is not
    recorded yet (lookahead); its record is written from that one's once it is."""

    proposal: Proposal
    status: TrialStatus
    canonical: str | None = None
    arch_hash: str | None = None
    metrics: dict | None = None
    error: str = ""
    timings: dict | None = None
    from_store: bool = False
    deferred: bool = False


@dataclasses.dataclass
class PendingTrial:
    """A proposal that passed every check and waits for its evaluation."""

    proposal: Proposal
    spec: Any
    canonical: str
    arch_hash: str
    precheck_metrics: dict[str, float]
    build_s: float
    asked_at: float = dataclasses.field(default_factory=time.monotonic)
