"""An image folder streamed from disk: memory, start-up and throughput against the same images in RAM.

    python benchmarks/own_data_images.py                 # 20k and 100k images
    python benchmarks/own_data_images.py 2000 20000      # other sizes
    python benchmarks/own_data_images.py throughput      # (b) only [--repeats 3]

Generates N 64x64 RGB JPEGs in 10 class folders under /tmp (never in the repository), then
(a) the peak RSS of `dlcli train cnn --data FOLDER` (one epoch of 50 steps, then the test
evaluation over a fifth of the images) and the time until training starts (the line announcing
the global batch, printed just before the first step), per size; (b) training throughput (200
steps of 128) on 2000 greyscale 64x64 JPEGs: streamed (default), with `--set cache=memory`, and
the same decoded pixels as MNIST-format IDX files, which dlcli holds in RAM as arrays (the
"pre-decoded in memory" side). Greyscale because IDX files hold one channel; the model, batch
and steps are the same on all three. The sides alternate, `--repeats` times, medians printed.
"""

import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.startup_memory import DLCLI, ENV, REPO, peak_memory_mib, until_training_starts  # noqa: E402

ROOT = Path(tempfile.gettempdir()) / "dlcli_own_images"


def generate(n, seed=0, grey=False):
    """N 64x64 JPEGs in <class>/ folders, class = a coloured (or grey) square's brightness."""
    from PIL import Image

    folder = ROOT / f"jpeg{n}{'_grey' if grey else ''}"
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
        image = Image.fromarray(image)
        (image.convert("L") if grey else image).save(folder / f"c{c}" / f"{i}.jpg", quality=90)
    (folder / "done").write_text("")
    return folder


def predecoded(folder):
    """The folder's images decoded once (by TensorFlow's JPEG decoder, as training decodes
    them) into MNIST-format IDX files: train holds every image, t10k every fourth."""
    import gzip

    import tensorflow as tf

    from dlcli.data.sources.idx import FILES

    target = folder.with_name(folder.name + "_idx")
    if (target / "done").is_file():
        return target
    target.mkdir(exist_ok=True)
    paths = sorted(folder.glob("c*/*.jpg"))
    x = np.stack([tf.io.decode_jpeg(tf.io.read_file(str(p)), channels=1).numpy()[..., 0] for p in paths])
    y = np.array([int(p.parent.name[1:]) for p in paths], np.uint8)
    for split, (xs, ys) in {"train": (x, y), "test": (x[::4], y[::4])}.items():
        for name, array in zip(FILES[split], (xs, ys)):
            magic = 2051 if array.ndim == 3 else 2049
            header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
            (target / (name + ".gz")).write_bytes(gzip.compress(header + array.tobytes(), compresslevel=1))
    (target / "done").write_text("")
    return target


def train_args(folder, run, *extra, steps=50):
    return ["train", "cnn", "--data", str(folder), "--epochs", "1", "--set", f"steps_per_epoch={steps}",
            "--batch-size", "128", "--strategy", "default", "--overwrite", "-o", str(run), *extra]


def examples_per_sec(args):
    result = subprocess.run([*DLCLI, *args], cwd=REPO, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return float(re.search(r"\(([\d.]+) examples/s\)", result.stdout + result.stderr).group(1))


def main(sizes, repeats):
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
    throughput(repeats, run)


def throughput(repeats, run):
    folder = generate(2000, grey=True)
    sides = {
        "pre-decoded arrays (IDX)": [predecoded(folder), []],
        "JPEG folder, streamed": [folder, []],
        "JPEG folder, --set cache=memory": [folder, ["--set", "cache=memory"]],
    }
    seen = {label: [] for label in sides}
    for _ in range(repeats):  # alternating: each round runs every side once
        for label, (data, extra) in sides.items():
            seen[label].append(examples_per_sec(train_args(data, run, *extra, steps=200)))
    base = statistics.median(seen["pre-decoded arrays (IDX)"])
    print(f"\n| input (2000 grey 64x64 JPEGs, 200 steps of 128) | examples/s, median of {repeats} | vs pre-decoded |")
    print("|---|---|---|")
    for label, values in seen.items():
        print(f"| {label} | {statistics.median(values):.0f} ({', '.join(f'{v:.0f}' for v in values)}) | {statistics.median(values) / base:.2f}x |")


if __name__ == "__main__":
    args = sys.argv[1:]
    repeats = int(args.pop(args.index("--repeats") + 1)) if "--repeats" in args else 3
    args = [a for a in args if a != "--repeats"]
    if args == ["throughput"]:
        throughput(repeats, Path(tempfile.mkdtemp()) / "run")
    else:
        main([int(a) for a in args] or [20000, 100000], repeats)
