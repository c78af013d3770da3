"""Fault injection into the training worker's start-up, for tests/faults only: a child Python started with this
folder on PYTHONPATH and ``LLMNAS_FAULT_KILL_STARTS=FILE`` reads a count from FILE and, while it is above zero,
decrements it and SIGKILLs itself, as the OOM killer does to a worker that loads too much data."""
import os
import signal

_counter = os.environ.get("LLMNAS_FAULT_KILL_STARTS")
if _counter:
    try:
        with open(_counter, "r+") as _f:
            _left = int(_f.read().strip() or 0)
            if _left > 0:
                _f.seek(0)
                _f.truncate()
                _f.write(str(_left - 1))
                _f.flush()
                os.fsync(_f.fileno())
                os.kill(os.getpid(), signal.SIGKILL)
    except (OSError, ValueError):
        pass
