"""An image folder streamed from disk: memory, start-up and throughput against the same images in RAM.

    python benchmarks/own_data_images.py                 # 20k and 100k images
    python benchmarks/own_data_images.py 2000 20000      # other sizes

Generates N 64x64 RGB JPEGs in 10 class folders under /tmp (never in the repository), then
(a) the peak RSS of `dlcli train cnn --data FOLDER` (one epoch of 50 steps, then the test
evaluation over a fifth of the images) and the time until training starts (the line announcing
the global batch, printed just before the first step), per size; (b) training throughput of the
smallest folder streamed (default), with `--set cache=memory`, and as the same pixels pre-decoded
into an IDX folder (arrays in memory).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.startup_memory import DLCLI, ENV, REPO, peak_memory_mib, until_training_starts  # noqa: E402

ROOT = Path(tempfile.gettempdir()) / "dlcli_own_images"


def generate(n, seed=0):
    """N 64x64 JPEGs, class = a coloured square's hue, in train/<class>/ (and their pixels)."""
    from PIL import Image

    folder = ROOT / f"jpeg{n}"
    if (folder / "done").is_file():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for c in range(10):
        (folder / f"c{c}").mkdir(parents=True)
    for i in range(n):
        c = i % 10
        image = rng.integers(0, 80, (64, 64, 3), dtype=np.uint8)
        y, x = rng.integers(0, 40, 2)
        image[y : y + 24, x : x + 24, c % 3] = 128 + 12 * c
        Image.fromarray(image).save(folder / f"c{c}" / f"{i}.jpg", quality=90)
    (folder / "done").write_text("")
    return folder


def train_args(folder, run, *extra, steps=50):
    return ["train", "cnn", "--data", str(folder), "--epochs", "1", "--set", f"steps_per_epoch={steps}",
            "--batch-size", "128", "--strategy", "default", "--overwrite", "-o", str(run), *extra]


def examples_per_sec(args):
    result = subprocess.run([*DLCLI, *args], cwd=REPO, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return float(re.search(r"\(([\d.]+) examples/s\)", result.stdout + result.stderr).group(1))


def main(sizes):
    run = Path(tempfile.mkdtemp()) / "run"
    print(f"machine: {os.cpu_count()} CPU cores; images: 64x64 RGB JPEG, 10 classes")
    print("| images | peak RSS (MiB) | until training starts (s) |")
    print("|---|---|---|")
    for n in sizes:
        started = time.perf_counter()
        folder = generate(n)
        print(f"(generated {n} in {time.perf_counter() - started:.0f} s)", file=sys.stderr)
        seconds = until_training_starts(train_args(folder, run))
        rss = peak_memory_mib(train_args(folder, run))
        print(f"| {n} | {rss:.0f} | {seconds:.1f} |", flush=True)
    folder = generate(sizes[0])
    print("\n| input | examples/s (training, 200 steps) |")
    print("|---|---|")
    for label, extra in (("JPEG folder, streamed", []), ("JPEG folder, --set cache=memory", ["--set", "cache=memory"])):
        print(f"| {label} | {examples_per_sec(train_args(folder, run, *extra, steps=200)):.0f} |", flush=True)


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [20000, 100000])
