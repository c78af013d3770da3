"""``llmnas``: the command line. Heavy modules are imported inside commands so that ``--help`` is instant."""
from __future__ import annotations

import signal
import threading

import click

from llmnas_local.cli.bench_cmd import bench
from llmnas_local.cli.dsl_cmd import dsl
from llmnas_local.cli.models_cmd import models
from llmnas_local.cli.search_cmd import search
from llmnas_local.cli.store_cmd import export, show, store_group, top


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="llmnas_local")
def cli() -> None:
    """Offline neural architecture search driven by a local open-weight LLM."""
    in_main_thread = threading.current_thread() is threading.main_thread()    # where Python lets handlers be set
    if in_main_thread and signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _terminate_like_ctrl_c)


def _terminate_like_ctrl_c(signum, frame) -> None:
    """SIGTERM (``kill``, a scheduler ending a job) unwinds like Ctrl-C: the commands report what is safe, a benchmark
    saves its wall times, stores and model servers close. Ctrl-C is no help to a job started in the background, whose
    SIGINT is ignored."""
    raise KeyboardInterrupt


for command in (dsl, search, top, show, export, store_group, models, bench):
    cli.add_command(command)

if __name__ == "__main__":
    cli()
