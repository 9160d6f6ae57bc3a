"""Terminal output shared by the commands: one rich console, and metric formatting."""

import json

from rich.console import Console

console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def output(json_mode):
    """Where human-readable output goes: stderr when stdout is reserved for --json."""
    return err_console if json_mode else console


def print_json(obj):
    from dlcli.rundir import finite

    print(json.dumps(finite(obj), indent=2, default=str, allow_nan=False))


def fmt(value):
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1e4 else f"{value:.0f}"
    return str(value)


def metrics_line(metrics):
    return "  ".join(f"{k} {fmt(v)}" for k, v in metrics.items())
