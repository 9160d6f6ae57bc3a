"""Folders of images as users have them: one subfolder per class (the
`keras.utils.image_dataset_from_directory` layout), with optional `train/`, `val/` (or
`validation/`) and `test/` subfolders in any combination. Images of any size and mode (grey,
RGB, RGBA, palette, 16-bit; JPEG, PNG, BMP, GIF first frame; WebP and TIFF through Pillow) are
listed, not loaded: `load` gives `Files` decoded in tf.data by `decoder`, the one function that
also reads images for `dlcli predict`, so training and serving convert pictures the same way.

Which split is the test set: `test/` if there is one, else `val/`, else a fixed, stratified 20%
of the training images. Validation is `val/` when there is both a `val/` and a `test/`, else a
stratified holdout of the training images (`validation_split`).

It is one module of over 400 lines because the source table takes one module per format, and
the layouts, the header checks and the decoder are this one format's reader.
"""

import io
import os
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import NOT_UTF8, Dataset, Files, printable, stratified_split, utf8_name

NAME = "a folder of images in class subfolders (train/ val/ test/ optional, any combination)"
KIND = "images"
TF_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}  # decoded by TensorFlow
PIL_SUFFIXES = {".webp", ".tif", ".tiff"}  # decoded by Pillow (tf.numpy_function)
EXTENSIONS = TF_SUFFIXES | PIL_SUFFIXES
SPLIT_FOLDERS = {"train": ("train", "training"), "val": ("val", "validation", "valid"), "test": ("test", "testing")}
SIGNATURES = [(b"\x89PNG", "PNG"), (b"\xff\xd8\xff", "JPEG"), (b"BM", "BMP"), (b"GIF8", "GIF"),
              (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF")]
MAX_SIDE = 128  # the default image size is the most common size, scaled down to this side
SAMPLE = 400  # files opened (header only) to choose the size and channels, and for `data info`
RESIZE_MODES = ("stretch", "crop", "pad")
# Pillow's own decompression-bomb limit (~89.5 megapixels, 16384x5461): a few-KB PNG may declare
# 30000x30000 pixels and decode to gigabytes, so every file's header is checked before decoding.
MAX_PIXELS = 89_478_485
# The bytes a complete file of each format ends with (within its last TAIL bytes). A PNG or GIF
# without them is truncated; a JPEG without them (a trailer, or cut short) is decoded once at
# listing time to tell. Damage in the middle of a file with an intact header and end is not
# found before tf.data decodes it.
END_MARKERS = {"PNG": b"IEND", "JPEG": b"\xff\xd9", "GIF": b"\x3b", "BMP": None, "WEBP": None, "TIFF": None}
HEAD, TAIL = 4096, 64


def detect(path):
    path = Path(path)
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def subfolders(folder):
    found = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "_")))
    for p in found:
        if not utf8_name(p.name):  # a class name is printed, saved in config.json and predicted
            raise DlcliError(f"folder name {printable(p)} is not valid UTF-8; rename it (class names must be text).")
    return found


def layout(root):
    """{split: folder} for the split folders of `root` ({"all": root} when there are none)."""
    root = Path(root)
    found = {}
    for split, names in SPLIT_FOLDERS.items():
        for name in names:
            folder = root / name
            if folder.is_dir() and subfolders(folder):
                found[split] = folder
                break
    if not found:
        return {"all": root}
    if "train" not in found:
        raise DlcliError(f"image folder {root} has {', '.join(f.name + '/' for f in found.values())} but no train/ folder.")
    return found


def check_image(path, full=False):
    """None if `path` (a file, or an image file's bytes) is an image dlcli can decode within the
    pixel budget, else why not. Cheap
    enough for every file of a folder (about 50 us): the header's size and the file's last
    bytes. Only a JPEG without its end marker (a trailer, or cut short), a BMP, and a file
    whose size is not parsed here (WebP, TIFF) are decoded in full, by the decoder training uses.
    With `full` (what `skip_bad` asks for), every file is decoded: damage inside a file whose
    header and end are intact is found too (about 1 ms a file, not 50 us)."""
    try:
        with io.BytesIO(path) if isinstance(path, bytes) else open(path, "rb") as f:
            head = f.read(HEAD)
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - TAIL))
            tail = f.read()
            kind = head_format(head)
            if kind is None:
                return "not PNG, JPEG, BMP, GIF, WebP or TIFF data"
            dims = header_size(kind, head, f)
    except OSError as e:
        return f"cannot be read ({type(e).__name__})"
    if dims is None:  # no size found here (WebP, TIFF, an odd JPEG): Pillow reads it, then decodes
        why = pillow_check(path, kind)
        return why if why is not None or kind in ("WEBP", "TIFF") else tensorflow_check(path, kind)
    if dims[0] * dims[1] > MAX_PIXELS:
        return f"{dims[0]}x{dims[1]} pixels, over the budget of {MAX_PIXELS:,} pixels per image"
    if kind in ("PNG", "GIF") and END_MARKERS[kind] not in tail:  # both formats must end with it
        return f"truncated {kind} (no end marker)"
    if not full and (kind in ("PNG", "GIF") or (kind == "JPEG" and END_MARKERS[kind] in tail)):
        return None
    return tensorflow_check(path, kind)  # a JPEG with a trailer or cut short; BMP: decoded as in training


def tensorflow_check(path, kind):
    """Why TensorFlow's decoder (the one training uses for JPEG, PNG, GIF, BMP) fails on `path`
    (a file, or its bytes)."""
    from dlcli.core.lazy import tf

    try:
        contents = tf.constant(path) if isinstance(path, bytes) else tf.io.read_file(str(path))
        tf.io.decode_image(contents, channels=0, expand_animations=False)
    except (tf.errors.OpError, ValueError) as e:
        return f"damaged or truncated {kind} ({type(e).__name__})"
    return None


def pillow_check(path, kind):
    """Why Pillow cannot fully decode `path` (a file, or its bytes) within the pixel budget, or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: the budget below decides
            with Image.open(io.BytesIO(path) if isinstance(path, bytes) else path) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    return f"{width}x{height} pixels, over the budget of {MAX_PIXELS:,} pixels per image"
                image.load()  # raises on a truncated or damaged file
    except Image.DecompressionBombError:  # Pillow's own refusal, at twice its limit
        return f"over the budget of {MAX_PIXELS:,} pixels per image"
    except Exception as e:  # Pillow raises many kinds (OSError, SyntaxError, ValueError...)
        return f"damaged or truncated {kind} ({type(e).__name__})"
    return None


def header_size(kind, head, f):
    """(width, height) from the header of a PNG, GIF or JPEG (None when not found here)."""
    if kind == "PNG" and len(head) >= 24 and head[12:16] == b"IHDR":
        return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    if kind == "GIF" and len(head) >= 10:
        return int.from_bytes(head[6:8], "little"), int.from_bytes(head[8:10], "little")
    if kind == "BMP" and len(head) >= 26:
        return abs(int.from_bytes(head[18:22], "little", signed=True)), abs(int.from_bytes(head[22:26], "little", signed=True))
    if kind != "JPEG":
        return None
    at = 2  # JPEG: walk the marker segments to the frame header (SOFn), reading on when EXIF is long
    while True:
        if at + 9 > len(head):
            f.seek(len(head))
            more = f.read(max(HEAD, at + 9 - len(head)))
            if not more or len(head) > (1 << 20):
                return None
            head += more
        if head[at] != 0xFF:
            return None
        marker = head[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return int.from_bytes(head[at + 7 : at + 9], "big"), int.from_bytes(head[at + 5 : at + 7], "big")
        at += 2 + int.from_bytes(head[at + 2 : at + 4], "big")


def head_format(head):
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((name for magic, name in SIGNATURES if head.startswith(magic)), None)


def bad_image_error(path, why, advice="remove it, or skip such files with --set skip_bad=true"):
    return DlcliError(f"{path} is not a readable image ({why}); {advice}.")


def list_split(folder, class_names=None):
    """(paths, labels, class_names, skipped): the image files under folder/<class>/ (nested
    folders too), and {reason: [files]} for what is not read."""
    names = class_names or [p.name for p in subfolders(folder)]
    if len(names) < 2 and class_names is None:
        raise DlcliError(f"image folder {folder} needs at least two class subfolders; found {len(names)}.")
    unknown = sorted({p.name for p in subfolders(folder)} - set(names))
    if unknown:
        raise DlcliError(f"{folder} has class folders the training split lacks: {', '.join(unknown)}. Classes: {', '.join(names)}.")
    paths, labels, skipped = [], [], {}
    for label, name in enumerate(names):
        files = []
        for parent, dirs, filenames in os.walk(folder / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for filename in sorted(filenames):
                path = os.path.join(parent, filename)
                if filename.startswith("."):
                    continue
                if not utf8_name(path):
                    skipped.setdefault(NOT_UTF8, []).append(path)
                    continue
                if Path(filename).suffix.lower() in EXTENSIONS:
                    files.append(path)
                else:
                    skipped.setdefault("not an image file (by its suffix)", []).append(path)
        paths += files
        labels += [label] * len(files)
    return paths, labels, names, skipped


def scan(root, skip_bad=False, full=False):
    """{split: (paths, labels)}, class names, {reason: [files]} skipped; unreadable image files
    are refused (one line naming the file) unless `skip_bad`; `full`: see `check_image`."""
    folders = layout(root)
    first = "train" if "train" in folders else "all"
    splits, skipped = {}, {}
    names = None
    for split in [first, *(s for s in folders if s != first)]:
        paths, labels, names, passed = list_split(folders[split], names)
        for reason, files in passed.items():
            skipped.setdefault(reason, []).extend(files)
        good = []
        for path in paths:  # every file, not a sample: a bad one must not stop training mid-epoch
            why = check_image(path, full)
            good.append(why is None)
            if why is not None:
                if not skip_bad:
                    raise bad_image_error(path, why)
                skipped.setdefault("unreadable image (skip_bad)", []).append(path)
        splits[split] = (np.array([p for p, ok in zip(paths, good) if ok]), np.array([l for l, ok in zip(labels, good) if ok], np.int64))
    for split, (paths, labels) in splits.items():
        missing = sorted(set(range(len(names))) - set(labels.tolist()))
        if split in ("train", "all") and missing:
            raise DlcliError(f"class folder(s) {', '.join(names[m] for m in missing)} of {root} hold no readable images.")
    return splits, names, skipped


def sample_headers(paths, skip_bad=False):
    """Counter of (width, height) and of Pillow modes over an even sample of `paths` (header only)."""
    from PIL import Image

    step = max(1, len(paths) // SAMPLE)
    sizes, modes, bad = Counter(), Counter(), []
    for path in paths[::step][:SAMPLE]:
        try:
            with Image.open(path) as image:
                sizes[image.size] += 1
                modes[image.mode] += 1
        except Exception:
            if not skip_bad:
                raise DlcliError(f"{path} is not a readable image; remove it, or skip such files with --set skip_bad=true.") from None
            bad.append(str(path))
    return sizes, modes, bad


GREY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F", "La"}


def choose_shape(sizes, modes, image_size=""):
    """(height, width, channels): `image_size` ("64" or "HEIGHTxWIDTH") or the most common size
    (scaled down to MAX_SIDE); 3 channels if any picture is in colour, else 1."""
    channels = 1 if modes and all(m in GREY_MODES for m in modes) else 3
    if image_size:
        return (*parse_size(image_size), channels)
    width, height = sizes.most_common(1)[0][0] if sizes else (MAX_SIDE, MAX_SIDE)
    scale = min(1.0, MAX_SIDE / max(width, height))
    return max(1, round(height * scale)), max(1, round(width * scale)), channels


def parse_size(text):
    try:
        parts = [int(p) for p in str(text).lower().replace(",", "x").split("x")]
    except ValueError:
        parts = []
    if len(parts) not in (1, 2) or min(parts) < 1:
        raise DlcliError(f"image_size must be SIDE or HEIGHTxWIDTH in pixels, e.g. 64 or 48x64. Received: image_size={text}")
    return (parts[0], parts[-1])


PHOTO_SIDE = 48  # colour pictures whose default size has a shorter side of at least this are photos


def recognise(path):
    """"photos" for a folder of colour pictures of photo size (their default input shape, from
    the headers of a sample), else None; unreadable folders are left for `load` to report."""
    try:
        if not detect(path):
            return None
        folders = layout(Path(path))
        paths = list_split(folders["train" if "train" in folders else "all"])[0]  # listed, not checked: a cheap look
        sizes, modes, _ = sample_headers(paths[:: max(1, len(paths) // 100)], skip_bad=True)
        if not sizes:  # no pictures: text or audio class folders
            return None
        height, width, channels = choose_shape(sizes, modes)
    except (DlcliError, OSError, ValueError):
        return None
    return "photos" if channels == 3 and min(height, width) >= PHOTO_SIDE else None


def describe(path):
    splits, names, skipped = scan(Path(path), skip_bad=True)
    every = np.concatenate([p for p, _ in splits.values()])
    sizes, modes, bad = sample_headers(every, skip_bad=True)
    height, width, channels = choose_shape(sizes, modes)
    folders = layout(path)
    test = "test/" if "test" in folders else "val/" if "val" in folders else "a stratified 20% of the images (fixed seed)"
    val = "val/" if {"val", "test"} <= set(folders) else "a stratified holdout of train (validation_split)"
    facts = {
        "layout": " + ".join(f"{f.name}/" for f in folders.values()) + " with class subfolders" if "all" not in folders else "class subfolders",
        "test_set": test,
        "validation": val,
        "classes": names,
        "splits": {
            split: {"examples": len(y), "per_class": {names[c]: n for c, n in sorted(Counter(y.tolist()).items())}}
            for split, (_, y) in splits.items()
        },
        "sizes_seen": {f"{w}x{h}": n for (w, h), n in sizes.most_common(8)},
        "modes_seen": dict(modes.most_common()),
        "sampled": f"{sum(sizes.values())} of {len(every)} files (headers only)",
        "image_shape": [height, width, channels],
        "input": f"{height}x{width}x{channels} by default (--set image_size=HEIGHTxWIDTH, resize=stretch|crop|pad, channels=1|3)",
    }
    for reason, files in {**skipped, **({"unreadable in the sample": bad} if bad else {})}.items():
        facts.setdefault("skipped", {})[reason] = f"{len(files)} file(s), e.g. {printable(files[0])}"
    return facts


def shape_and_decoder(sizes, modes, config):
    """The (height, width, channels) every image becomes, from the headers seen and the config
    (`image_size`, `channels`, `resize`), and the one decode function for it."""
    resize = getattr(config, "resize", "stretch")
    channels = getattr(config, "channels", 0) or choose_shape(sizes, modes)[2]
    height, width, _ = choose_shape(sizes, modes, getattr(config, "image_size", ""))
    return (height, width, channels), resize, decoder((height, width, channels), resize)


def load(path, config):
    skip_bad = bool(getattr(config, "skip_bad", False))
    splits, names, skipped = scan(Path(path), skip_bad, full=skip_bad)
    first = splits.get("train", splits.get("all"))
    sizes, modes, bad = sample_headers(first[0], skip_bad)
    if bad:
        skipped.setdefault("unreadable image (skip_bad)", []).extend(bad)
        splits = {s: (p[~np.isin(p, bad)], y[~np.isin(p, bad)]) for s, (p, y) in splits.items()}
    (height, width, channels), resize, decode = shape_and_decoder(sizes, modes, config)
    files = {split: Files(p, y, decode) for split, (p, y) in splits.items()}
    if "all" in files:
        files["train"], files["test"] = stratified_split(files.pop("all"), 0.2, seed=0)
    train = files["train"]
    test = files.get("test", files.get("val"))
    val = files["val"] if "test" in files and "val" in files else None
    if test is None:  # only train/: hold out a fixed test set
        train, test = stratified_split(train, 0.2, seed=0)
    notes = [f"{height}x{width}x{channels} ({resize})"]
    notes += [f"{len(f)} skipped: {reason}" for reason, f in skipped.items()]
    return Dataset(
        train=train, test=test, val=val, class_names=names, description=f"image folder {path}, " + "; ".join(notes),
        settings={"image_size": f"{height}x{width}", "channels": channels},
    )


# ## One conversion for training, evaluation and predict


def decoder(shape, resize="stretch"):
    """A TensorFlow function from an image path to a uint8 (height, width, channels) tensor:
    any format and mode, alpha dropped, grey <-> colour converted, resized by `resize`."""
    from dlcli.core.lazy import tf

    decode = contents_decoder(shape, resize)
    return lambda path: decode(tf.io.read_file(path))


def contents_decoder(shape, resize="stretch"):
    """`decoder`'s conversion from an image file's contents (a string tensor): what `dlcli
    serve` calls on the bytes a client sends, and `decoder` on the bytes of a file."""
    from dlcli.core.lazy import tf

    height, width, channels = shape
    if resize not in RESIZE_MODES:
        raise DlcliError(f"resize must be one of {', '.join(RESIZE_MODES)}. Received: resize={resize}")

    def native(contents):
        return tf.io.decode_image(contents, channels=0, dtype=tf.uint8, expand_animations=False)

    def pillow(contents):
        image = tf.numpy_function(pillow_decode, [contents], tf.uint8, stateful=False)
        image.set_shape([None, None, None])
        return image

    def declared_pixels(contents, head):
        """width * height as the header declares it (0 when it cannot tell): the pixel budget,
        checked again in tf.data in case a file changed since it was listed."""
        def field(start, length, little):
            padded = tf.strings.substr(contents, 0, 32) + b"\0" * 32  # a short file reads as zeros
            part = tf.strings.substr(padded, start, length)
            raw = tf.io.decode_raw(part, tf.uint16 if length == 2 else tf.int32, little_endian=little)
            return tf.abs(tf.cast(raw[0], tf.int64))

        return tf.case([
            (tf.equal(head, b"\x89PNG"), lambda: field(16, 4, False) * field(20, 4, False)),
            (tf.equal(head, b"GIF8"), lambda: field(6, 2, True) * field(8, 2, True)),
            (tf.equal(tf.strings.substr(head, 0, 2), b"BM"), lambda: field(18, 4, True) * field(22, 4, True)),
            (tf.io.is_jpeg(contents), lambda: tf.reduce_prod(tf.cast(tf.image.extract_jpeg_shape(contents)[:2], tf.int64))),
        ], default=lambda: tf.constant(0, tf.int64))

    def decode(contents):
        head = tf.strings.substr(contents, 0, 4)
        tf.debugging.assert_less_equal(
            declared_pixels(contents, head), tf.constant(MAX_PIXELS, tf.int64),
            message=f"an image is over the budget of {MAX_PIXELS:,} pixels", summarize=0,
        )
        by_tf = tf.io.is_jpeg(contents) | tf.reduce_any(tf.equal(head, [b"\x89PNG", b"GIF8"])) | tf.equal(tf.strings.substr(head, 0, 2), b"BM")
        image = tf.cond(by_tf, lambda: native(contents), lambda: pillow(contents))
        image.set_shape([None, None, None])
        image = tf.cond(tf.shape(image)[-1] % 2 == 0, lambda: image[..., :-1], lambda: image)  # drop alpha
        if channels == 3:
            image = tf.cond(tf.shape(image)[-1] == 1, lambda: tf.tile(image, [1, 1, 3]), lambda: image)
        else:
            grey = lambda: tf.cast(tf.round(tf.reduce_sum(tf.cast(image, tf.float32) * [0.2989, 0.587, 0.114], -1, keepdims=True)), tf.uint8)
            image = tf.cond(tf.shape(image)[-1] == 3, grey, lambda: image[..., :1])
        image = tf.ensure_shape(image, [None, None, channels])
        if resize == "pad":
            out = tf.image.resize_with_pad(tf.cast(image, tf.float32), height, width)
        else:
            if resize == "crop":
                image = center_crop(image, height / width)
            out = tf.image.resize(image, (height, width))
        return tf.ensure_shape(tf.cast(tf.clip_by_value(tf.round(out), 0, 255), tf.uint8), [height, width, channels])

    return decode


def center_crop(image, aspect):
    """The largest centred part of `image` with height / width == aspect."""
    from dlcli.core.lazy import tf

    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    h = tf.minimum(shape[0], tf.round(shape[1] * aspect))
    w = tf.minimum(shape[1], tf.round(shape[0] / aspect))
    top, left = tf.cast((shape[0] - h) // 2, tf.int32), tf.cast((shape[1] - w) // 2, tf.int32)
    return image[top : top + tf.cast(h, tf.int32), left : left + tf.cast(w, tf.int32)]


def pillow_decode(contents):
    """WebP, TIFF and whatever else Pillow reads, as uint8 (h, w, 1|2|3|4): 16-bit and float
    grey scaled to 8 bits, palette and CMYK to RGB(A), the first frame of animations."""
    import io

    from PIL import Image

    raw = contents.item() if isinstance(contents, np.ndarray) else contents
    with Image.open(io.BytesIO(bytes(raw))) as image:
        if image.size[0] * image.size[1] > MAX_PIXELS:  # listing checks this; a file may change since
            raise ValueError(f"{image.size[0]}x{image.size[1]} pixels, over the budget of {MAX_PIXELS:,}")
        image.seek(0)
        if image.mode.startswith("I") or image.mode == "F":
            array = np.asarray(image, np.float64)
            top = 65535.0 if array.max(initial=0) > 255 or image.mode.startswith("I;16") else 255.0
            return np.round(np.clip(array, 0, top) * (255 / top)).astype(np.uint8)[..., None]
        if image.mode not in ("L", "LA", "RGB", "RGBA"):
            image = image.convert("RGBA" if "transparency" in image.info or image.mode.endswith("A") else "RGB")
        array = np.asarray(image, np.uint8)
        return array[..., None] if array.ndim == 2 else array
