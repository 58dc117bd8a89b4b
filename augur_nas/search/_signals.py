"""Ctrl-C and SIGTERM during a search: the first one stops after the current batch (what was
found is kept and written), a second Ctrl-C stops at once."""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class StopFlag:
    """Set by the first Ctrl-C (SIGINT) or a SIGTERM: stop after the current batch. A second
    Ctrl-C raises KeyboardInterrupt at once."""

    def __init__(self):
        self.requested = False

    def __bool__(self) -> bool:
        return self.requested


@contextmanager
def graceful_stop(escalate: bool = True, term: bool = False):
    """Install the handlers of a ``StopFlag`` (main thread only) and restore the old ones after."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    old_int = signal.getsignal(signal.SIGINT)
    old_term = signal.getsignal(signal.SIGTERM)

    def on_int(signum, frame):
        if flag.requested and escalate:
            raise KeyboardInterrupt
        flag.requested = True

    def on_term(signum, frame):
        flag.requested = True

    if old_int is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_int)
    if term:
        signal.signal(signal.SIGTERM, on_term)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old_int)
        if term:
            signal.signal(signal.SIGTERM, old_term)
