"""``llmnas top|show|export``: read a store (with its final trainings) (safe while a search writes to it); ``llmnas store verify|forget``."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import click

from llmnas_local.cli.errors import UserError, user_errors
from llmnas_local.cli.search_cmd import DEFAULT_STORE
from llmnas_local.records import PARAMS_M, TEST_ACC, VAL_ACC, FLOPS_M, TrialRecord, TrialStatus

store_argument = click.argument("store", default=DEFAULT_STORE, type=click.Path(file_okay=False))


def open_existing(store: str, readonly: bool = False):
    """The LMDB store at ``store``; a path without one is a UserError (a write open would create an empty store)."""
    from llmnas_local.store import LmdbStore

    if not (Path(store) / "data.mdb").is_file():
        raise UserError(f"no store at {store}")
    return LmdbStore(store, readonly=readonly)


def _open(path: str):
    from llmnas_local.store import LmdbStore

    return LmdbStore(path, readonly=True)


def _fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


@click.command()
@store_argument
@click.option("-k", "--limit", default=10, show_default=True, help="Rows to show.")
@click.option("--run", "run_id", default=None, help="Only this run (default: every run in the store).")
@click.option("--pareto", is_flag=True, help="Only the accuracy/size front: no other architecture is more accurate "
                                             "(validation) with fewer parameters.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (runs, counts, rows) for scripts.")
@user_errors
def top(store: str, limit: int, run_id: str | None, pareto: bool, as_json: bool) -> None:
    """Leaderboard of STORE: the best distinct architectures by validation accuracy, with their final trainings
    (llmnas train)."""
    from llmnas_local.report.pareto import pareto_front

    with _open(store) as st:
        best: dict[str, TrialRecord] = {}
        counts = {s: 0 for s in TrialStatus}
        for t in st.trials(run_id):
            counts[t.status] += 1
            if t.status is TrialStatus.COMPLETE and VAL_ACC in t.metrics and t.arch_hash not in best:
                best[t.arch_hash] = t
        runs = st.list_runs() if run_id is None else [r for r in [st.get_run(run_id)] if r]
        finals = {a: st.finals(a) for a in best}
    rows = sorted(best.values(), key=lambda t: -t.metrics[VAL_ACC])
    if pareto:
        sized = [t for t in rows if PARAMS_M in t.metrics]
        rows = sorted(pareto_front(sized, lambda t: t.metrics[VAL_ACC], lambda t: t.metrics[PARAMS_M]),
                      key=lambda t: -t.metrics[VAL_ACC])
    rows = rows[:limit]
    status_counts = {s.name.lower(): n for s, n in counts.items() if s is not TrialStatus.PENDING}
    if as_json:
        click.echo(json.dumps({"store": store, "runs": [r.run_id for r in runs], "counts": status_counts,
                               "pareto": pareto, "rows": [_row_json(i, t, finals[t.arch_hash])
                                                          for i, t in enumerate(rows, 1)]}, sort_keys=True))
        return
    click.echo(f"{len(runs)} run(s); trials: " + ", ".join(f"{k} {n}" for k, n in status_counts.items()))
    if not rows:
        click.echo("no completed trial yet")
        return
    if pareto:
        click.echo("accuracy/size Pareto front (validation accuracy against parameters):")
    click.echo(f"{'#':>3} {'val_acc':>8} {'test_acc':>8} {'params_M':>9} {'flops_M':>9}  {'hash':12}  architecture")
    for i, t in enumerate(rows, 1):
        m = t.metrics
        click.echo(f"{i:>3} {_fmt(m.get(VAL_ACC)):>8} {_fmt(m.get(TEST_ACC)):>8} {_fmt(m.get(PARAMS_M), '.4f'):>9} "
                   f"{_fmt(m.get(FLOPS_M), '.1f'):>9}  {t.arch_hash[:12]}  {t.canonical}")
        for f in finals[t.arch_hash]:
            click.echo(f"{'':>3} {_fmt(f.metrics.get(VAL_ACC)):>8} {_fmt(f.metrics.get(TEST_ACC)):>8}  "
                       f"final training: {len(f.history)} epochs, best epoch {f.best_epoch} (recipe "
                       f"{f.recipe_hash[:8]})")


def _row_json(rank: int, t: TrialRecord, finals: list) -> dict:
    return {"rank": rank, "arch_hash": t.arch_hash, "canonical": t.canonical, "run_id": t.run_id, "seq": t.seq,
            "metrics": dict(t.metrics), "finals": [_final_json(f) for f in finals]}


def _final_json(f) -> dict:
    return {"recipe_hash": f.recipe_hash, "metrics": dict(f.metrics), "best_epoch": f.best_epoch,
            "epochs": len(f.history), "weights": f.weights, "run_id": f.run_id, "code_version": f.code_version,
            "created_at": f.created_at}


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.argument("arch_hash")
@click.option("--json", "as_json", is_flag=True, help="One JSON object (trials and final trainings) for scripts.")
@user_errors
def show(store: str, arch_hash: str, as_json: bool) -> None:
    """One architecture of STORE (by hash or a unique hash prefix) with every trial and final training of it."""
    from llmnas_local.final.select import resolve_hash

    with _open(store) as st:
        arch_hash = resolve_hash(st, arch_hash, where=store)
        trials = st.trials_of_arch(arch_hash)
        finals = st.finals(arch_hash)
    if as_json:
        click.echo(json.dumps({"arch_hash": arch_hash, "canonical": trials[0].canonical,
                               "trials": [{**t.to_json(), "status": t.status.name.lower()} for t in trials],
                               "finals": [f.to_json() for f in finals]}, sort_keys=True))
        return
    click.echo(f"hash:      {arch_hash}\ncanonical: {trials[0].canonical}")
    for t in trials:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(t.metrics.items()))
        click.echo(f"- run {t.run_id} trial {t.seq}: {t.status.name.lower()} {metrics}"
                   + (" [from store]" if t.from_store else "") + (f"\n  error: {t.error}" if t.error else "")
                   + f"\n  raw: {t.raw}")
    for f in finals:
        metrics = " ".join(f"{k}={v:.4g}" for k, v in sorted(f.metrics.items()))
        click.echo(f"- final training (recipe {f.recipe_hash[:12]}, {len(f.history)} epochs, best epoch "
                   f"{f.best_epoch}): {metrics}\n  weights: {Path(store) / f.weights}")


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="jsonl", show_default=True)
@click.option("-o", "--output", type=click.File("w"), default="-", help="File to write (default: stdout).")
@user_errors
def export(store: str, fmt: str, output) -> None:
    """Every trial of STORE as CSV or JSON lines."""
    with _open(store) as st:
        trials = list(st.trials())
    if fmt == "jsonl":
        for t in trials:
            d = t.to_json()
            d["status"] = t.status.name.lower()
            output.write(json.dumps(d, sort_keys=True) + "\n")
        return
    metric_names = sorted({k for t in trials for k in t.metrics})
    timing_names = sorted({k for t in trials for k in t.timings})
    writer = csv.writer(output)
    writer.writerow(["run_id", "seq", "proposer", "status", "arch_hash", "parent_hash", "canonical", "raw",
                     "from_store", "error", *metric_names, *timing_names])
    for t in trials:
        writer.writerow([t.run_id, t.seq, t.proposer, t.status.name.lower(), t.arch_hash or "", t.parent_hash or "",
                         t.canonical or "", t.raw, int(t.from_store), t.error,
                         *[t.metrics.get(k, "") for k in metric_names], *[t.timings.get(k, "") for k in timing_names]])


@click.group("store")
def store_group() -> None:
    """Check or maintain a store (verify, forget)."""


@store_group.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--max-problems", default=20, show_default=True, help="Problems to list (all are counted).")
@user_errors
def verify(store: str, max_problems: int) -> None:
    """Read every record of STORE and report what is unreadable or inconsistent (exit 1 if anything is)."""
    from llmnas_local.store.verify import verify_store

    report = verify_store(store)
    click.echo(f"{store}: " + ", ".join(f"{n} {name}" for name, n in report.counts.items()))
    if report.not_cached:
        click.echo(f"{report.not_cached} failed or timed-out outcomes are not cached (forgotten): they are evaluated "
                   f"again when proposed")
    if report.ok:
        click.echo("ok: every record reads back")
        return
    for problem in report.problems[:max_problems]:
        click.echo(f"problem: {problem}")
    more = len(report.problems) - max_problems
    click.echo(f"{len(report.problems)} problem(s)" + (f" ({more} not listed)" if more > 0 else "") +
               "; restore the store from a copy, or export what reads back (llmnas export)")
    raise SystemExit(1)


FORGETTABLE = {"failed": TrialStatus.FAILED, "timeout": TrialStatus.TIMEOUT}


@store_group.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--status", "statuses", multiple=True, type=click.Choice(sorted(FORGETTABLE)),
              help="Outcomes to forget (repeatable) [default: failed and timeout].")
@user_errors
def forget(store: str, statuses: tuple[str, ...]) -> None:
    """Forget the failed or timed-out outcomes of STORE, so that runs evaluate those architectures again. Trials stay
    as they were recorded. Stop the searches that write STORE first."""
    names = sorted(set(statuses or FORGETTABLE))
    with open_existing(store) as st:
        n = st.forget_outcomes(FORGETTABLE[s] for s in names)
    click.echo(f"forgot {n} outcome{'' if n == 1 else 's'} ({', '.join(names)}) in {store}")
