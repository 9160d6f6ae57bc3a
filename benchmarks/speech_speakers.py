"""Leave one FSDD speaker out, as a user's own recordings: train speech with its defaults on five
speakers, test on all 500 clips of the sixth.

    python benchmarks/speech_speakers.py                 # all six speakers (one run each)
    python benchmarks/speech_speakers.py theo lucas      # some of them
    python benchmarks/speech_speakers.py -- --set warp=0 # other settings (after --)

For each held-out speaker the script lays FSDD's clips out as a user's recordings folder
(`train/DIGIT/*.wav` from the five other speakers, `test/DIGIT/*.wav` from the held-out one,
symbolic links with neutral names, so nothing tells dlcli they are FSDD) and runs
`dlcli train speech --data FOLDER --json` in a subprocess with no other setting: the defaults a
user's class folders get. Prints one row per speaker and the mean, which must reach
benchmarks.references.SPEAKERS_MEAN_ACCURACY, and the worst, SPEAKERS_WORST_ACCURACY.
Needs ../shared/data beside the checkout.
"""

import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.reference_results import run  # noqa: E402
from benchmarks.references import SHARED, SPEAKERS, SPEAKERS_MEAN_ACCURACY, SPEAKERS_WORST_ACCURACY  # noqa: E402

FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav")


def recordings_folder(root, held_out):
    """A class-folder copy (symbolic links) of FSDD with `held_out`'s clips as the test set."""
    for n, clip in enumerate(sorted(Path(SHARED, "fsdd", "recordings").glob("*.wav"))):
        digit, speaker, _ = FSDD_NAME.fullmatch(clip.name).groups()
        folder = root / ("test" if speaker == held_out else "train") / digit
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"clip{n:05d}.wav").symlink_to(clip.resolve())
    return root


def measure(speakers, extra=()):
    """{speaker: (test accuracy, seconds)}, one training run per speaker."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for speaker in speakers:
            data = recordings_folder(Path(tmp) / f"{speaker}-data", speaker)
            metrics, seconds = run("speech", ["--data", str(data), *extra], str(Path(tmp) / speaker))
            out[speaker] = (metrics["test"]["accuracy"], seconds)
            print(f"| {speaker} | {metrics['test_examples']} | {out[speaker][0]:.4f} | {seconds:.0f} s |", flush=True)
    return out


def main(argv):
    selected, extra = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    print("| held-out speaker | test clips | test accuracy | time |")
    print("|---|---|---|---|")
    results = measure(selected or SPEAKERS, extra)
    accuracies = [a for a, _ in results.values()]
    mean, worst = sum(accuracies) / len(accuracies), min(accuracies)
    print(f"\nmean over {len(results)} speaker(s): {mean:.4f} (must be >= {SPEAKERS_MEAN_ACCURACY}); "
          f"worst {worst:.4f} (must be >= {SPEAKERS_WORST_ACCURACY})")
    return 0 if mean >= SPEAKERS_MEAN_ACCURACY and worst >= SPEAKERS_WORST_ACCURACY else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
