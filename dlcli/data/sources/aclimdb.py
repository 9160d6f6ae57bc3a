"""Movie reviews in the aclImdb layout (`train/{pos,neg}/*.txt`, `test/{pos,neg}/*.txt`), as a
folder, a tarball, or a folder of tarballs. Tarballs are read in place, never extracted."""

import re
import tarfile
from collections import Counter
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import Dataset

NAME = "aclImdb movie reviews (a folder or .tar.gz with train/{pos,neg} and test/{pos,neg} .txt files)"
KIND = "text"
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/[^/]+\.txt$")
CLASS_NAMES = ["negative", "positive"]
MAX_CHARS = 1 << 20  # per review: the model reads a few hundred words; a 20 MB "review" is cut here


def detect(path):
    path = Path(path)
    if path.is_file():  # by name: a damaged tarball is then refused by `load`, with the reason
        return path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    return bool(_archives(path)) or (root / "train" / "pos").is_dir() or (root / "test" / "pos").is_dir()


def describe(path):
    counts = Counter((split, label) for split, label, _, _ in review_files(Path(path)))
    return {
        "classes": ["neg", "pos"],
        "splits": {
            split: {"examples": counts[(split, "pos")] + counts[(split, "neg")], "pos": counts[(split, "pos")], "neg": counts[(split, "neg")]}
            for split in ("train", "test")
        },
    }


def load(path, config):
    """Texts (one line each) with float labels (1 = positive), as the binary text recipes read."""
    path = Path(path)
    reviews = {("train", "pos"): [], ("train", "neg"): [], ("test", "pos"): [], ("test", "neg"): []}
    not_utf8 = 0
    for split, label, name, read in review_files(path):
        raw = read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, not_utf8 = raw.decode("utf-8", "replace"), not_utf8 + 1
        reviews[(split, label)].append((name, one_line(text[:MAX_CHARS])))
    empty = [f"{split}/{label}" for (split, label), found in reviews.items() if not found]
    if empty:
        raise DlcliError(
            f"{path} is not an aclImdb dataset: no reviews in {', '.join(empty)} "
            "(expected train/pos, train/neg, test/pos, test/neg folders of .txt files)."
        )
    out = []
    for split in ("train", "test"):
        pairs = sorted(reviews[(split, "pos")]) + sorted(reviews[(split, "neg")])
        texts = np.array([text for _, text in pairs], object)
        labels = np.array([1.0] * len(reviews[(split, "pos")]) + [0.0] * len(reviews[(split, "neg")]), np.float32)
        out.append((texts, labels[:, None]))
    note = f", {not_utf8} files not UTF-8 (decoded with replacement)" if not_utf8 else ""
    return Dataset(train=out[0], test=out[1], class_names=CLASS_NAMES, description=f"aclImdb reviews in {path}{note}")


def one_line(text):
    """The text with every line break Python knows (\\x85, \\u2028, ...) made a space.

    Keras saves a TextVectorization vocabulary one token per line and reads it back with
    splitlines(): a token holding such a character would make the saved model impossible to load.
    """
    return " ".join(text.splitlines())


def _archives(path):
    return sorted([*path.glob("*.tar.gz"), *path.glob("*.tgz"), *path.glob("*.tar")]) if path.is_dir() else []


def review_files(path):
    """(split, label, name, read) for every review; `read()` returns its bytes. Archive links
    and devices are skipped, and nothing is ever written out of an archive."""
    archives = [path] if path.is_file() else _archives(path)
    for archive in archives:
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    match = REVIEW_PATH.search(member.name)
                    if member.isfile() and match:
                        yield (*match.groups(), member.name, lambda tar=tar, member=member: tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError) as e:
            reason = str(e).strip().splitlines()[0].rstrip(":") if str(e).strip() else type(e).__name__
            raise DlcliError(f"cannot read {archive} as a tar archive: {reason}") from None
    if not archives:
        root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                folder = root / split / label
                # Regular files only: a FIFO or device named *.txt would block or never end.
                for file in sorted(p for p in folder.glob("*.txt") if p.is_file()) if folder.is_dir() else []:
                    yield split, label, f"{split}/{label}/{file.name}", file.read_bytes
