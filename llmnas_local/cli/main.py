"""``llmnas``: the command line. Heavy modules are imported inside commands so that ``--help`` is instant."""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading

import click

from llmnas_local.cli.bench_cmd import bench
from llmnas_local.cli.dsl_cmd import dsl
from llmnas_local.cli.export_cmd import export_model
from llmnas_local.cli.models_cmd import models
from llmnas_local.cli.report_cmd import report
from llmnas_local.cli.search_cmd import search
from llmnas_local.cli.store_cmd import export, show, store_group, top
from llmnas_local.cli.train_cmd import train


class _Cli(click.Group):
    """The group; an output that cannot be written (a full disk behind ``> file``, ``/dev/full``) is one line."""

    def invoke(self, ctx: click.Context):
        try:
            result = super().invoke(ctx)
            sys.stdout.flush()
            return result
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO):
                raise
            _silence_stdout()
            raise click.ClickException(f"cannot write the output: {e.strerror or e}; what a search recorded is in "
                                       f"its store; free space and rerun the command") from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that the flush at exit does not fail again with a traceback."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):
        pass


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
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


for command in (dsl, search, top, show, export, store_group, models, bench, train, export_model, report):
    cli.add_command(command)

if __name__ == "__main__":
    cli()
