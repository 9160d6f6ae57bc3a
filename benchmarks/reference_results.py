"""Train every recipe to its published reference on the real data and print the results table.

    python benchmarks/reference_results.py            # all rows (about an hour on 2 cores)
    python benchmarks/reference_results.py cnn lstm   # some recipes

Each row runs `dlcli train ... --json` as a subprocess with the recipe's defaults and prints
the measured value next to the bar it must clear. Needs ../shared/data beside the checkout.
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.references import REFERENCES, SHARED, check  # noqa: E402


def run(recipe, args, out):
    command = [sys.executable, "-m", "dlcli", "train", recipe, *args, "-o", out, "--json"]
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout), time.perf_counter() - started


def main(selected):
    if not Path(SHARED).is_dir():
        raise SystemExit(f"{SHARED} not found: run from the repository root with ../shared beside it.")
    cache = {}
    print("| recipe | data | command | measured | must be | reference | time |")
    print("|---|---|---|---|---|---|---|")
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        for i, (recipe, label, args, path, op, threshold, reference) in enumerate(REFERENCES):
            if selected and recipe not in selected:
                continue
            key = (recipe, tuple(args))
            if key not in cache:
                cache[key] = run(recipe, args, str(Path(tmp) / f"run{i}"))
            metrics, seconds = cache[key]
            value, bound, passed = check(metrics, path, op, threshold)
            failures += not passed
            command = " ".join(["dlcli train", recipe, *args])
            print(f"| {recipe} | {label} | `{command}` | {path} = {value:.4f} | {op} {bound:.4f} "
                  f"{'ok' if passed else 'MISSED'} | {reference} | {seconds:.0f} s |", flush=True)
    print(f"\n{failures} reference(s) missed" if failures else "\nevery reference reached")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(set(sys.argv[1:])))
