"""What the side-by-side benchmarks share: each measurement runs in a fresh Python process."""

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_snippet(code, *args):
    """Runs `code` (with `args` as sys.argv[1:]) in a fresh process from the repository root and
    returns the JSON of the last line it prints; a failure ends the benchmark with its stderr."""
    result = subprocess.run(
        [sys.executable, "-c", code, *map(str, args)], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])
