"""Movie reviews in the aclImdb layout (`train/{pos,neg}/*.txt`, `test/{pos,neg}/*.txt`), as a
folder, a tarball, or a folder of tarballs.

Tarballs are read in place, never extracted, through `dlcli.data.archive` (its docstring has
the archive's budgets). Folders and tarballs keep the same rules:

- Only regular files are read. FIFOs and devices named like reviews, archive members that are
  links (symbolic or hard), and tarballs in a folder that are not regular files are skipped
  without being opened, and counted in the description: a FIFO would block the read for ever,
  a device would never end, and a link in an archive points outside it or at another member.
  In a folder, a symbolic link to a regular file is read: the folder is the user's own.
- A review file may hold MAX_REVIEW_BYTES (4 MiB; real reviews take a few KB), all reviews
  together MAX_TEXT_BYTES; a larger one stops the read in one line naming it, before its bytes
  are read (a member's declared size counts, so a sparse 10 GB member is refused as 10 GB).
  Texts longer than MAX_CHARS characters are cut there.
"""

import re
from collections import Counter
from pathlib import Path

import numpy as np

import dlcli.data.archive as tar_archive
from dlcli.core.errors import DlcliError
from dlcli.data.splits import Dataset, printable

NAME = "aclImdb movie reviews (a folder or .tar.gz with train/{pos,neg} and test/{pos,neg} .txt files)"
KIND = "text"
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/[^/]+\.txt$")
CLASS_NAMES = ["negative", "positive"]
MAX_CHARS = 1 << 20  # per review: the model reads a few hundred words; a longer text is cut here
MAX_REVIEW_BYTES = 4 * MAX_CHARS  # per review file: MAX_CHARS characters of UTF-8 at most
MAX_TEXT_BYTES = 1 << 30  # all reviews together: aclImdb's 50,000 take ~65 MB
NOT_REGULAR = "review entries that are links, FIFOs or devices"


def detect(path):
    path = Path(path)
    if path.is_file():  # by name: a damaged tarball is then refused by `load`, with the reason
        return path.name.lower().endswith((".tar.gz", ".tgz", ".tar"))
    root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    return bool(_archives(path)) or (root / "train" / "pos").is_dir() or (root / "test" / "pos").is_dir()


def describe(path):
    skipped = Counter()
    counts = Counter((split, label) for split, label, _, _ in review_files(Path(path), skipped))
    return {
        "classes": ["neg", "pos"],
        "splits": {
            split: {"examples": counts[(split, "pos")] + counts[(split, "neg")], "pos": counts[(split, "pos")], "neg": counts[(split, "neg")]}
            for split in ("train", "test")
        },
        **({"skipped": dict(skipped)} if skipped else {}),
    }


def load(path, config):
    """Texts (one line each) with float labels (1 = positive), as the binary text recipes read."""
    path = Path(path)
    reviews = {("train", "pos"): [], ("train", "neg"): [], ("test", "pos"): [], ("test", "neg"): []}
    not_utf8, skipped = 0, Counter()
    for split, label, name, read in review_files(path, skipped):
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
    note += "".join(f", {n} {why} (skipped)" for why, n in skipped.items())
    return Dataset(train=out[0], test=out[1], class_names=CLASS_NAMES, description=f"aclImdb reviews in {path}{note}")


def one_line(text):
    """The text with every line break Python knows (\\x85, \\u2028, ...) made a space.

    Keras saves a TextVectorization vocabulary one token per line and reads it back with
    splitlines(): a token holding such a character would make the saved model impossible to load.
    """
    return " ".join(text.splitlines())


def _archives(path, skipped=None):
    """The tarballs of a folder that are regular files (a FIFO named x.tar.gz would block the open)."""
    if not path.is_dir():
        return []
    found = sorted({*path.glob("*.tar.gz"), *path.glob("*.tgz"), *path.glob("*.tar")})
    if skipped is not None and any(not p.is_file() for p in found):
        skipped["tarballs that are not regular files"] += sum(not p.is_file() for p in found)
    return [p for p in found if p.is_file()]


def review_files(path, skipped=None):
    """(split, label, name, read) for every review; `read()` returns its bytes. Only regular
    files are opened; links, FIFOs and devices are counted in `skipped` (a Counter). Each review
    and their total are checked against the budgets before a byte is read; nothing is ever
    written out of an archive."""
    skipped = Counter() if skipped is None else skipped
    budget = {"total": 0}

    def checked(size, where):
        if size > MAX_REVIEW_BYTES:
            raise DlcliError(
                f"{where} is {size:,} bytes, over the budget of {MAX_REVIEW_BYTES:,} (4 MiB) for one review: "
                "not review text. Remove it."
            )
        budget["total"] += size
        if budget["total"] > MAX_TEXT_BYTES:
            raise DlcliError(f"the reviews in {printable(path)} pass {MAX_TEXT_BYTES:,} bytes (1 GiB) together, at {where}: more than dlcli reads.")

    archives = [path] if path.is_file() else _archives(path, skipped)
    for archive in archives:
        for member in tar_archive.members(archive):
            match = REVIEW_PATH.search(member.name)
            if not match:
                continue  # other members are not read: only their decompressed bytes count (the archive's budget)
            if not member.regular:
                skipped[NOT_REGULAR] += 1
                continue
            checked(member.size, f"{printable(archive)}: {printable(member.name)}")
            yield (*match.groups(), member.name, lambda member=member: member.read(MAX_REVIEW_BYTES))
    if not archives:
        root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                folder = root / split / label
                for file in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
                    if not file.is_file():  # a link to a regular file is read (the user's own folder); to /dev/zero, not
                        skipped[NOT_REGULAR] += 1
                        continue
                    checked(file.stat().st_size, printable(file))
                    yield split, label, f"{split}/{label}/{file.name}", lambda file=file: _read_file(file)


def _read_file(file):
    """At most MAX_REVIEW_BYTES of a review file (checked again: it may have grown since)."""
    try:
        with open(file, "rb") as f:
            raw = f.read(MAX_REVIEW_BYTES + 1)
    except OSError as e:
        raise DlcliError(f"cannot read {printable(file)}: {e.strerror}") from None
    if len(raw) > MAX_REVIEW_BYTES:
        raise DlcliError(f"{printable(file)} is over the budget of {MAX_REVIEW_BYTES:,} bytes (4 MiB) for one review: not review text. Remove it.")
    return raw
