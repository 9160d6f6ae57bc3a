"""A list of image files with their labels, one per line: `PATH,LABEL` (CSV), `PATH<TAB>LABEL`
(TSV) or `PATH LABEL`; an optional header row (e.g. `path,label`). Relative paths are relative
to the list's folder. The images are streamed and converted exactly as an image folder's
(`image_folder.decoder`), every file checked at listing time the same way; the test set is a
fixed, stratified 20% of the lines (seed 0), validation a stratified holdout of the rest."""

import csv
import io
from collections import Counter
from pathlib import Path

import numpy as np

import dlcli.data.sources.image_folder as image_folder
from dlcli.core.errors import DlcliError
from dlcli.data.splits import Dataset, Files, stratified_split

NAME = "a list of image files and labels (PATH,LABEL per line; .txt, .csv, .tsv)"
KIND = "images"
SUFFIXES = {".txt", ".csv", ".tsv", ".lst"}
MAX_BYTES = 256 << 20  # a list of ~5M lines; more is not a file list a user wrote


def rows(path, limit=None):
    """(line number, path text, label) of each line; a first line naming no image is a header."""
    path = Path(path)
    if path.stat().st_size > MAX_BYTES:
        raise DlcliError(f"{path} is {path.stat().st_size:,} bytes, over the budget of {MAX_BYTES:,} for a file list.")
    text = path.read_bytes()[: 65536 if limit else None].decode("utf-8", "replace")
    delimiter = "\t" if path.suffix.lower() == ".tsv" or "\t" in text.split("\n", 1)[0] else ","
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = next(csv.reader(io.StringIO(line), delimiter=delimiter)) if delimiter in line else line.rsplit(None, 1)
        fields = [f.strip() for f in fields]
        if len(fields) != 2 or not all(fields):
            if limit:
                return []
            raise DlcliError(f"{path}, line {number}: expected PATH{delimiter if delimiter != chr(9) else '<TAB>'}LABEL, found {line[:80]!r}.")
        out.append((number, fields[0], fields[1]))
        if limit and len(out) >= limit:
            break
    if out and Path(out[0][1]).suffix.lower() not in image_folder.EXTENSIONS:
        out = out[1:]  # a header row
    return out


def resolve(root, text):
    return Path(text) if Path(text).is_absolute() else root / text


def detect(path):
    path = Path(path)
    if not path.is_file() or path.suffix.lower() not in SUFFIXES:
        return False
    try:
        sample = rows(path, limit=10)
    except (DlcliError, OSError):
        return False
    return bool(sample) and all(
        Path(p).suffix.lower() in image_folder.EXTENSIONS and resolve(path.parent, p).is_file() for _, p, _ in sample
    )


def scan(path, skip_bad, full=False):
    """(paths, labels, class names, {reason: [files]}); `full`: see `image_folder.check_image`."""
    from dlcli.data.sources.text_table import label_names

    path = Path(path)
    paths, labels, skipped = [], [], {}
    for number, text, label in rows(path):
        file = resolve(path.parent, text)
        why = "not found" if not file.is_file() else image_folder.check_image(file, full)
        if why is not None:
            if not skip_bad:
                raise image_folder.bad_image_error(f"{path}, line {number}: {file}", why)
            skipped.setdefault("unreadable image (skip_bad)", []).append(str(file))
            continue
        paths.append(str(file))
        labels.append(label)
    names = label_names(labels)
    if len(names) < 2:
        raise DlcliError(f"{path} lists {len(names)} class(es) ({', '.join(names)}); a classifier needs at least two.")
    index = {name: i for i, name in enumerate(names)}
    return np.array(paths), np.array([index[y] for y in labels], np.int64), names, skipped


def describe(path):
    paths, labels, names, skipped = scan(path, skip_bad=True)
    sizes, modes, _ = image_folder.sample_headers(paths, skip_bad=True)
    facts = {
        "layout": "a file list (PATH,LABEL per line)",
        "test_set": "a stratified 20% of the lines (fixed seed)",
        "classes": names,
        "splits": {"all": {"examples": len(labels), "per_class": {names[c]: n for c, n in sorted(Counter(labels.tolist()).items())}}},
        "sizes_seen": {f"{w}x{h}": n for (w, h), n in sizes.most_common(8)},
        "modes_seen": dict(modes.most_common()),
        "image_shape": list(image_folder.choose_shape(sizes, modes)),
    }
    for reason, files in skipped.items():
        facts.setdefault("skipped", {})[reason] = f"{len(files)} file(s), e.g. {files[0]}"
    return facts


def load(path, config):
    skip_bad = bool(getattr(config, "skip_bad", False))
    paths, labels, names, skipped = scan(path, skip_bad, full=skip_bad)
    sizes, modes, _ = image_folder.sample_headers(paths, skip_bad)
    (height, width, channels), resize, decode = image_folder.shape_and_decoder(sizes, modes, config)
    files = Files(paths, labels, decode)
    train, test = stratified_split(files, 0.2, seed=0)
    notes = [f"{height}x{width}x{channels} ({resize})"] + [f"{len(f)} skipped: {reason}" for reason, f in skipped.items()]
    return Dataset(
        train=train, test=test, class_names=names, description=f"file list {path}, " + "; ".join(notes),
        settings={"image_size": f"{height}x{width}", "channels": channels},
    )
