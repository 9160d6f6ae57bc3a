"""Builds a folder of photo-like pictures from Fashion-MNIST, for the photo network's checks.

    python benchmarks/photo_folder.py OUT [--train 250] [--val 150] [--seed 0]

Two classes (bags and dresses), each item a 28x28 grey picture turned into a colour "photo":
upscaled into a canvas of its own size (60-220 px a side, any aspect), at a random place and
scale, tinted, on a textured background of a random colour, saved as JPEG (various qualities),
PNG or WebP, a few of them grey. So the folder is what users have: a few hundred pictures of
~200 different sizes and several modes, in `train/` and `val/` class folders. Needs
../shared/data/fashion_mnist beside the checkout.
"""

import argparse
import gzip
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "fashion_mnist"
CLASSES = {"bag": 8, "dress": 3}


def fashion(split):
    prefix = "train" if split == "train" else "t10k"
    with gzip.open(SHARED / f"{prefix}-images-idx3-ubyte.gz") as f:
        images = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(SHARED / f"{prefix}-labels-idx1-ubyte.gz") as f:
        labels = np.frombuffer(f.read(), np.uint8, offset=8)
    return images, labels


def photo(item, rng):
    """A colour picture of a random size with `item` (28x28, 0-255) somewhere in it."""
    from PIL import Image, ImageFilter

    height, width = (int(v) for v in rng.integers(60, 221, 2))
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    base, slope = rng.integers(40, 216, 3), rng.normal(0, 60, (2, 3))
    background = base + yy[..., None] * slope[0] + xx[..., None] * slope[1] + rng.normal(0, 12, (height, width, 3))
    side = int(min(height, width) * rng.uniform(0.5, 0.95))
    mask = np.asarray(Image.fromarray(item).resize((side, side), Image.BILINEAR), np.float32)[..., None] / 255
    top, left = int(rng.integers(0, height - side + 1)), int(rng.integers(0, width - side + 1))
    colour = rng.integers(0, 256, 3)
    canvas = background.copy()
    window = canvas[top:top + side, left:left + side]
    canvas[top:top + side, left:left + side] = window * (1 - mask) + (colour * (0.4 + 0.6 * mask)) * mask
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    return image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))


def build(out, n_train=250, n_val=150, seed=0):
    rng = np.random.default_rng(seed)
    out = Path(out)
    for split, count, source in (("train", n_train, "train"), ("val", n_val, "test")):
        images, labels = fashion(source)
        for name, label in CLASSES.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            chosen = rng.choice(np.flatnonzero(labels == label), count // len(CLASSES), replace=False)
            for i, index in enumerate(chosen):
                image = photo(images[index], rng)
                kind = rng.choice(["jpg", "jpg", "jpg", "png", "webp"])
                if rng.random() < 0.08:
                    image = image.convert("L")
                options = {"quality": int(rng.integers(60, 96))} if kind in ("jpg", "webp") else {}
                image.save(folder / f"{name}_{i:04d}.{kind}", **options)
    return out


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--train", type=int, default=250)
    parser.add_argument("--val", type=int, default=150)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(build(args.out, args.train, args.val, args.seed))
