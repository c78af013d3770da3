"""``llmnas report``: a self-contained HTML page with figures about a search."""
from __future__ import annotations

import click

from llmnas_local.cli.errors import user_errors
from llmnas_local.cli.store_cmd import open_existing


@click.command()
@click.argument("store", type=click.Path(file_okay=False))
@click.option("--run", "run_id", default=None, help="Only this run (default: every run in the store).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Folder to write index.html and PNGs into.")
@user_errors
def report(store: str, run_id: str | None, out: str) -> None:
    """Write OUT/index.html about STORE: best-so-far curve, accuracy against parameters and FLOPs with the Pareto
    front, outcomes, the LLM's calls, the leaderboard (with final trainings). Safe while a search writes STORE."""
    from llmnas_local.report import write_report

    with open_existing(store, readonly=True) as st:
        page = write_report(st, out, run_id, source=store)
    click.echo(f"wrote {page}")
