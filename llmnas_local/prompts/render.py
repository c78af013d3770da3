"""Fill the prompt templates from the feedback memory. Output: chat messages (``[{"role", "content"}]``)."""
from __future__ import annotations

import dataclasses
import functools
import importlib.resources
import string

from llmnas_local.memory.edits import Edit, SlotRecord
from llmnas_local.memory.feedback import Elite, Triple, TrialOutcome

DEFAULT_TASK = "image classification"     # what prompts say when the evaluator describes no task


@functools.lru_cache(maxsize=None)
def load_template(name: str) -> string.Template:
    text = importlib.resources.files("llmnas_local.prompts").joinpath("templates", f"{name}.txt").read_text()
    return string.Template(text)


@dataclasses.dataclass(frozen=True)
class PromptContext:
    """Everything a prompt shows. Built by the LLM proposer from the history and its memory."""

    task: str
    description: str
    examples: tuple[str, ...]
    elites: tuple[Elite, ...]
    triples: tuple[Triple, ...]
    max_params_m: float | None = None
    max_flops_m: float | None = None


def _caps(ctx: PromptContext) -> str:
    caps = []
    if ctx.max_params_m is not None:
        caps.append(f"at most {ctx.max_params_m:g}M parameters")
    if ctx.max_flops_m is not None:
        caps.append(f"at most {ctx.max_flops_m:g}M FLOPs per image")
    return f" Constraints: {', '.join(caps)} (larger designs are rejected)." if caps else ""


def _elites(elites: tuple[Elite, ...]) -> str:
    if not elites:   # not "(none yet)": a small model copies the word into the DSL, where `none` is an operation
        return "(no results yet)"
    lines = []
    for i, e in enumerate(elites, 1):
        size = f", {e.params_m:.3f}M params" if e.params_m is not None else ""
        size += f", {e.flops_m:.1f}M FLOPs" if e.flops_m is not None else ""   # lets the model keep under a cap
        lines.append(f"{i}. {e.text}  -> val_acc {e.val_acc:.2f}{size}")
    return "\n".join(lines)


def outcome_text(o: TrialOutcome) -> str:
    """One line that tells the model what became of a proposal."""
    if o.status == "complete" and o.val_acc is not None:
        delta = "" if o.best_val is None else f" ({o.val_acc - o.best_val:+.2f} vs best {o.best_val:.2f})"
        size = f", {o.params_m:.3f}M params" if o.params_m is not None else ""
        text = f"val_acc {o.val_acc:.2f}{delta}{size}"
    elif o.status == "duplicate":
        prior = f" (val_acc {o.val_acc:.2f})" if o.val_acc is not None else ""
        text = f"already evaluated{prior}: wasted, propose something new"
    elif o.status == "invalid":
        text = f"invalid, not evaluated: {o.error}"
    elif o.status == "timeout":
        text = f"timed out: {o.error}"
    else:
        text = f"failed: {o.error}"
    return text + (f" (proposed {o.times} times)" if o.times > 1 else "")


def edit_outcome_text(e: Edit) -> str:
    """An edit's outcome: the child's val_acc minus its parent's, or what became of the child."""
    return f"{e.delta:+.2f}" if e.delta is not None else e.status


def _triples(triples: tuple[Triple, ...]) -> str:
    if not triples:
        return "(no attempts yet)"
    lines = []
    for i, t in enumerate(triples, 1):
        head = f"{i}. problem: {t.problem or '-'} | modification: {t.modification or '-'}"
        lines.append(f"{head}\n   proposal: {t.proposal}\n   outcome: {outcome_text(t.outcome)}")
    return "\n".join(lines)


def _fill(name: str, ctx: PromptContext, **extra: str) -> list[dict[str, str]]:
    """The system message and the user message of template ``name``, filled from ``ctx`` (and ``extra`` fields)."""
    user = load_template(name).substitute(
        task=ctx.task or DEFAULT_TASK, caps=_caps(ctx), description=ctx.description.strip(),
        examples="\n".join(ctx.examples), elites=_elites(ctx.elites), triples=_triples(ctx.triples), **extra)
    return [{"role": "system", "content": load_template("system").substitute().strip()},
            {"role": "user", "content": user.strip()}]


def improver_messages(ctx: PromptContext) -> list[dict[str, str]]:
    """The improver role: writes the diagnosis ``{problem, modification}`` as JSON."""
    return _fill("improver", ctx)


def generator_messages(ctx: PromptContext, diagnosis: dict[str, str] | None = None) -> list[dict[str, str]]:
    """The generator role: writes one architecture under the space's grammar, given the diagnosis."""
    text = ""
    if diagnosis:
        text = (f"\nDiagnosis: {diagnosis.get('problem', '').strip()}\n"
                f"Apply this modification: {diagnosis.get('modification', '').strip()}\n")
    return _fill("generator", ctx, diagnosis=text)


def mutator_messages(ctx: PromptContext, parent: str, parent_val: float) -> list[dict[str, str]]:
    """The LLM as the mutation operator of an evolutionary loop: writes a child of ``parent``."""
    return _fill("mutator", ctx, parent=parent, parent_val=f"{parent_val:.2f}")


def _edit_memory(records: tuple[SlotRecord, ...], edits: tuple[Edit, ...]) -> str:
    """The edit memory as prompt text ("" when the memory is off): the last edits, then each part's record, the part
    whose best edit gained most first."""
    out = []
    if edits:
        out.append("\nLast edits, oldest first:")
        out += [f"{e.slot} {e.old} -> {e.new}: {edit_outcome_text(e)}" for e in edits]
    if records:
        out.append("\nEach part's edits in this run, best first:")
        ranked = sorted(records, key=lambda r: -(r.best_delta if r.best_delta is not None else -1e9))
        for r in ranked:
            best = "no completed edit" if r.best_delta is None else f"best -> {r.best_value} ({r.best_delta:+.2f})"
            mean = "" if r.mean_delta is None else f", mean {r.mean_delta:+.2f}"
            out.append(f"{r.slot}: {best}; {r.edits} edits, {r.better} better{mean}")
    return "\n".join(out) + "\n" if out else ""


def editor_messages(ctx: PromptContext, parent_val: float | None, parts: list[str],
                    records: tuple[SlotRecord, ...] = (), edits: tuple[Edit, ...] = ()) -> list[dict[str, str]]:
    """The editing role (``llm-edit``): names the parent's weak part and its new value, given the edit memory.
    What changes from call to call (memory, parent) comes last, so consecutive prompts share the longest prefix
    (the backend's cache). ``parent_val`` None: the value hidden (a content-free prompt)."""
    value = "?" if parent_val is None else f"{parent_val:.2f}"
    return _fill("editor", ctx, parent_val=value, parts="\n".join(parts), memory=_edit_memory(records, edits))
