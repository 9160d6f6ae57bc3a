"""Leave one FSDD speaker out: train speech on five speakers, test on all 500 clips of the sixth.

    python benchmarks/speech_speakers.py                 # all six speakers (one run each)
    python benchmarks/speech_speakers.py theo lucas      # some of them

Each run is `dlcli train speech --data ../shared/data/fsdd --set holdout_speaker=NAME
--set validation_split=0 --json` in a subprocess (no validation: it would hold out a whole
sixth speaker, and nothing in the loop uses it). Prints one row per speaker and the mean, which
must reach benchmarks.references.SPEAKERS_MEAN_ACCURACY. Needs ../shared/data beside the checkout.
"""

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference_results import run  # noqa: E402
from benchmarks.references import SHARED, SPEAKERS, SPEAKERS_MEAN_ACCURACY  # noqa: E402


def measure(speakers, extra=()):
    """{speaker: (test accuracy, seconds)}, one training run per speaker."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for speaker in speakers:
            args = ["--data", f"{SHARED}/fsdd", "--set", f"holdout_speaker={speaker}", "--set", "validation_split=0", *extra]
            metrics, seconds = run("speech", args, str(Path(tmp) / speaker))
            out[speaker] = (metrics["test"]["accuracy"], seconds)
            print(f"| {speaker} | {metrics['test_examples']} | {out[speaker][0]:.4f} | {seconds:.0f} s |", flush=True)
    return out


def main(selected):
    print("| held-out speaker | test clips | test accuracy | time |")
    print("|---|---|---|---|")
    results = measure(selected or SPEAKERS)
    mean = sum(a for a, _ in results.values()) / len(results)
    print(f"\nmean over {len(results)} speaker(s): {mean:.4f} (must be >= {SPEAKERS_MEAN_ACCURACY})")
    return 0 if mean >= SPEAKERS_MEAN_ACCURACY else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
