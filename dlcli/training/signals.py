"""Stopping cleanly: SIGTERM (preemption) and Ctrl-C save a checkpoint first."""

import signal
import threading

from dlcli.core.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError
from dlcli.core.lazy import tf


class Interrupted(DlcliError):
    """Training stopped by a signal after saving a checkpoint; `--resume` continues it."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = EXIT_PREEMPTED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class StopSignals:
    """Records SIGTERM/SIGINT instead of dying mid-step; a second Ctrl-C stops at once."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def stop_check(strategy, signals):
    """A function telling whether any worker got a stop signal. Multi-worker runs agree on it
    with one tiny all-reduce, so every worker stops and saves at the same step."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda: signals.received is not None

    @tf.function
    def any_worker(flag):
        return strategy.reduce("SUM", strategy.run(lambda: flag), axis=None)

    return lambda: int(any_worker(tf.constant(int(signals.received is not None)))) > 0
