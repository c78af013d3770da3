"""Bad input gets one clear line and a non-zero exit, never a traceback."""
from __future__ import annotations

import functools
from typing import Any, Callable

import click

# Errors that mean "the user asked for something that cannot be done"; anything else is a bug and keeps its traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError, PermissionError)


class UserError(click.ClickException):
    """One line on stderr (``Error: ...``), exit code 2."""

    exit_code = 2


class SearchError(click.ClickException):
    """A search that could not produce a result (disk full, no worker, nothing completed): one line, exit code 1."""

    exit_code = 1


def ignore_further_interrupts() -> None:
    """After a first Ctrl-C or SIGTERM, ignore the next ones while the command stops (within seconds): a second one
    would interrupt the clean-up and print a traceback. Only the main thread can set handlers."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn user errors raised by a command into ``Error: <one line>`` and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from llmnas_local.llm.base import BackendError
        from llmnas_local.store.base import StoreError

        try:
            return fn(*args, **kwargs)
        except click.exceptions.Exit:
            raise
        except (StoreError, BackendError, *USER_ERRORS) as e:
            message = e.args[0] if isinstance(e, KeyError) and e.args else e
            raise UserError(" ".join(str(message).split())) from None

    return wrapper

