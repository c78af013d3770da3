"""``llmnas``: the command line. Heavy modules are imported inside commands so that ``--help`` is instant."""
from __future__ import annotations

import click

from llmnas_local.cli.bench_cmd import bench
from llmnas_local.cli.dsl_cmd import dsl
from llmnas_local.cli.models_cmd import models
from llmnas_local.cli.search_cmd import search
from llmnas_local.cli.store_cmd import export, show, top


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmnas_local")
def cli() -> None:
    """Offline neural architecture search driven by a local open-weight LLM."""


for command in (dsl, search, top, show, export, models, bench):
    cli.add_command(command)

if __name__ == "__main__":
    cli()
