"""Test helpers: the CLI run in-process, and small data writers (IDX files, image folders,
WAV files) made on the fly."""

import gzip
import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.data.sources.idx import FILES as IDX_FILES


def invoke(*args, env=None):
    """`dlcli ARGS` through Typer's CliRunner; arguments may be paths or numbers."""
    return CliRunner(env=env).invoke(app, [str(a) for a in args])


def ok_json(*args):
    """The --json output of a command that must succeed."""
    result = invoke(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_one_line_error(result, *fragments):
    """Bad input: exit code 2 and one line on stderr that says what was wrong; no traceback."""
    assert result.exit_code == 2, (result.exit_code, result.output)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def write_idx(path, array, magic=None, compress=True):
    array = np.asarray(array, np.uint8)
    magic = magic if magic is not None else {3: 2051, 1: 2049}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    raw = header + array.tobytes()
    Path(path).write_bytes(gzip.compress(raw) if compress else raw)


def write_idx_folder(folder, n_train=60, n_test=20, seed=0):
    """Four MNIST-format files of random 28x28 images whose class shows in their brightness."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 10, n)
        x = (rng.random((n, 28, 28)) * 25 * (y[:, None, None] + 1)).astype(np.uint8)
        images, labels = IDX_FILES[split]
        write_idx(folder / (images + ".gz"), x)
        write_idx(folder / (labels + ".gz"), y)
    return folder


def write_png(path, array):
    import tensorflow as tf

    array = np.asarray(array, np.uint8)
    if array.ndim == 2:
        array = array[..., None]
    Path(path).write_bytes(tf.io.encode_png(array).numpy())


def write_image_folder(folder, classes=("cat", "dog"), per_class=5, size=(12, 12), channels=3):
    folder = Path(folder)
    rng = np.random.default_rng(0)
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            write_png(folder / name / f"{i}.png", rng.integers(0, 255, (*size, channels)) // (c + 1))
    return folder


def write_messy_images(folder, classes=("cat", "dog", "owl"), per_class=8, seed=0):
    """Pictures as users have them: mixed sizes and aspect ratios, RGB/RGBA/palette/grey/16-bit
    PNG, JPEG, BMP, GIF, WebP and TIFF; each class has its own brightness, so a model can learn."""
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    kinds = ["rgb.jpg", "rgba.png", "p.png", "l.png", "i16.png", "rgb.bmp", "p.gif", "rgb.webp", "rgb.tif", "la.png"]
    for c, name in enumerate(classes):
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            h, w = [(16, 16), (20, 14), (12, 24), (16, 16)][i % 4]
            base = rng.integers(0, 60, (h, w, 3)) + 90 * c
            rgb = Image.fromarray(base.clip(0, 255).astype(np.uint8))
            kind = kinds[(i + c) % len(kinds)]
            mode, suffix = kind.split(".")
            if mode == "rgb":
                image = rgb
            elif mode == "rgba":
                image = rgb.convert("RGBA")
            elif mode == "p":
                image = rgb.convert("P")
            elif mode == "l":
                image = rgb.convert("L")
            elif mode == "la":
                image = rgb.convert("LA")
            else:  # 16-bit grey
                image = Image.fromarray((np.asarray(rgb.convert("L"), np.uint16) * 257).astype(np.uint16))
            image.save(folder / name / f"{i}_{mode}.{suffix}")
    return folder
def write_wav(path, samples, rate=8000, channels=1, width=2):
    """A PCM WAV file of float samples in [-1, 1] (shape (n,) or (n, channels))."""
    import wave

    samples = np.asarray(samples, np.float64)
    samples = (samples.reshape(len(samples), -1) if samples.size else samples.reshape(0, 1)) * np.ones((1, channels))
    if width == 1:
        raw = np.round(samples * 127 + 128).astype(np.uint8).tobytes()
    else:
        ints = np.round(samples * (2 ** (8 * width - 1) - 1)).astype("<i4" if width == 3 else f"<i{width}")
        # 24-bit: the three low bytes of each little-endian int32
        raw = ints.view(np.uint8).reshape(-1, 4)[:, :3].tobytes() if width == 3 else ints.tobytes()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(channels)
        f.setsampwidth(width)
        f.setframerate(rate)
        f.writeframes(raw)
    return Path(path)


def tone(frequency, seconds, rate=8000, seed=0):
    """A noisy sine tone."""
    t = np.arange(int(seconds * rate)) / rate
    return 0.5 * np.sin(2 * np.pi * frequency * t) + np.random.default_rng(seed).normal(0, 0.02, len(t))
