"""Issue 16: does `transformer`'s default IMDB run train in less time than `lstm`'s?

Both recipes' default runs on ../shared/data/imdb differ in epochs, batch and per-step cost, so
the ratio is of whole training times: each default run's total steps (epochs x steps per epoch,
from the recipe's own Config and the IMDB training split) times its seconds per step. The
seconds per step are measured here, in fresh processes, the two recipes alternating `--repeats`
times, through dlcli's own loop (benchmarks/sides.py's `DLCLI` snippet, epochs after the first
only: the first pays for tracing). Full runs are in the README's reference table; this is the
like-for-like ratio, measured in one run on one machine.

    python benchmarks/transformer_vs_lstm.py [--repeats 3] [--steps 20]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks import sides  # noqa: E402

IMDB = Path(__file__).resolve().parents[2] / "shared" / "data" / "imdb"
IMDB_TRAIN = 25_000  # reviews in IMDB's training split


def default_run(name):
    """(epochs, batch, steps per epoch) of the recipe's default IMDB run."""
    from dlcli.training import registry

    config = registry.load(name).Config()
    fit = IMDB_TRAIN - round(IMDB_TRAIN * config.validation_split)
    return config.epochs, config.batch_size, fit // config.batch_size


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed epoch (3 epochs a run)")
    options = parser.parse_args()
    if not IMDB.is_dir():
        raise SystemExit(f"{IMDB} not found: the benchmark needs ../shared/data beside the checkout.")
    runs = {name: default_run(name) for name in ("lstm", "transformer")}
    seconds = {name: [] for name in runs}
    for repeat in range(options.repeats):  # alternating, each side in a fresh process
        for name, (_, batch, _) in runs.items():
            result = sides.run_snippet(sides.DLCLI, name, IMDB, 3, options.steps, json.dumps({}))
            seconds[name].append(batch / statistics.median(result["speeds"][1:]))
            print(f"repeat {repeat + 1} {name:>11}: {seconds[name][-1]:.3f} s a step of {batch}", flush=True)
    totals = {}
    print("\n| recipe | default run | s per step (median) | training time of the default run |")
    print("|---|---|---|---|")
    for name, (epochs, batch, steps) in runs.items():
        totals[name] = epochs * steps * statistics.median(seconds[name])
        print(f"| {name} | {epochs} epochs x {steps} steps of {batch} | {statistics.median(seconds[name]):.3f} | {totals[name]:.0f} s |")
    per_repeat = [t * runs["transformer"][0] * runs["transformer"][2] / (l * runs["lstm"][0] * runs["lstm"][2])
                  for t, l in zip(seconds["transformer"], seconds["lstm"])]
    ratio = totals["transformer"] / totals["lstm"]
    print(f"\ntransformer / lstm training time: {ratio:.2f} (per repeat {min(per_repeat):.2f}-{max(per_repeat):.2f}); must be < 1")
    return 0 if ratio < 1 else 1


if __name__ == "__main__":
    sys.exit(main())
