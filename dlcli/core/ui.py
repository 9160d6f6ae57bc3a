"""Terminal output shared by the commands: one rich console, and metric formatting."""

import json
import math
import time
from pathlib import Path

from rich.console import Console
from rich.text import Text

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def output(json_mode):
    """Where human-readable output goes: stderr when stdout is reserved for --json."""
    return err_console if json_mode else console


def print_json(obj):
    print(json.dumps(finite(obj), indent=2, default=str, allow_nan=False))


def fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def metrics_line(metrics):
    return "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items())


class LoggedConsole:
    """A console whose lines also go, as plain text (no colour, no markup, no progress bar), to a
    log file: `dlcli train`'s RUN_DIR/train.log. Lines printed before the run folder exists wait
    in memory until `start_log` names the file; each line is appended and flushed at once, so
    the log survives a crash and a resumed run continues it."""

    def __init__(self, console):
        self.console = console
        self.is_terminal = console.is_terminal
        self.path = None
        self.pending = []

    def print(self, text=""):
        self.console.print(text)
        self.log(text)

    def log(self, text):
        """Writes a line to the log only."""
        line = Text.from_markup(str(text)).plain
        if self.path is None:
            self.pending.append(line)
        else:
            self._append([line])

    def start_log(self, path, header):
        self.path = Path(path)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
        self._append([f"--- {stamp} {header}", *self.pending])
        self.pending = []

    def _append(self, lines):
        with open(self.path, "a", encoding="utf-8") as f:
            f.write("".join(f"{line}\n" for line in lines))


def finite(obj):
    """`obj` with every NaN or infinite float made None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
