"""Texts in class-named subfolders, one text per .txt file (the
`keras.utils.text_dataset_from_directory` layout), with optional `train/` and `test/` (and
`val/`) subfolders; without `test/`, a fixed stratified 20% of the files is the test set.
Files may be in any encoding `dlcli.data.encodings` reads (`encoding=auto`: UTF-8, UTF-16 with a
BOM, else the encoding detected over the corpus), or the one `encoding` names; the dataset's
line counts the files read as something else than UTF-8."""

from collections import Counter
from pathlib import Path

import dlcli.data.encodings as encodings
import dlcli.data.sources.image_folder as image_folder
import dlcli.data.sources.text_table as text_table
from dlcli.core.errors import DlcliError
from dlcli.data.splits import NOT_UTF8, utf8_name

NAME = "a folder of .txt files in class subfolders (train/ test/ optional)"
KIND = "text"
SUFFIXES = {".txt", ".text", ".md"}


def detect(path):
    path = Path(path)
    if not path.is_dir():
        return False
    try:
        folders = image_folder.layout(path)
    except DlcliError:
        return False
    first = folders.get("train", folders.get("all"))
    for sub in image_folder.subfolders(first)[:3]:
        files = [p for _, p in zip(range(20), sub.iterdir()) if p.is_file()]
        if files and sum(p.suffix.lower() in SUFFIXES for p in files) > len(files) / 2:
            return True
    return False


def files(path):
    """{split: [(file, class name)]} and what is not read, by reason."""
    folders = image_folder.layout(path)
    out, skipped = {}, Counter()
    for split, folder in folders.items():
        pairs = []
        for sub in image_folder.subfolders(folder):
            for file in sorted(sub.rglob("*")):
                if file.is_file() and not file.name.startswith("."):
                    if not utf8_name(file.name):
                        skipped[NOT_UTF8] += 1
                    elif file.suffix.lower() in SUFFIXES:
                        pairs.append((file, sub.name))
                    else:
                        skipped["not a .txt file"] += 1
        out[split] = pairs
    return out, skipped


def read(path, encoding="auto", errors="strict"):
    """{split: [(text, label)]}, Counter of what was skipped or noted (files not read as UTF-8:
    what they were read as; see dlcli.data.encodings)."""
    splits, skipped = files(Path(path))
    texts = {}
    for split, pairs in splits.items():
        decoded, read_as, replaced = encodings.decode_corpus([(file.read_bytes(), file, label) for file, label in pairs], encoding, errors)
        for name, n in read_as.items():
            skipped[f"files read as {name}"] += n
        if replaced:
            skipped["files with bytes that could not be decoded (replaced)"] += replaced
        texts[split] = [(text, label) for text, label in decoded if text.strip()]
        if len(texts[split]) < len(decoded):
            skipped["empty files (skipped)"] += len(decoded) - len(texts[split])
    return texts, skipped


def describe(path):
    texts, skipped = read(Path(path), errors="replace")
    read_as = {key.removeprefix("files read as "): skipped.pop(key) for key in list(skipped) if key.startswith("files read as ")}
    facts = {"layout": " + ".join(f"{s}/" for s in texts) if "all" not in texts else "class subfolders"}
    facts["test_set"] = "test/" if "test" in texts else "a stratified 20% of the files (fixed seed)"
    facts["classes"] = text_table.label_names([y for pairs in texts.values() for _, y in pairs])
    facts["splits"] = {s: {"examples": len(p), "per_class": dict(sorted(Counter(y for _, y in p).items()))} for s, p in texts.items()}
    total = sum(len(p) for p in texts.values()) + skipped.get("empty files (skipped)", 0)
    facts["encodings"] = {"utf-8": total - sum(read_as.values()), **read_as} if read_as else {"utf-8": total}
    if skipped:
        facts["skipped"] = dict(skipped)
    return facts


def load(path, config):
    texts, skipped = read(Path(path), *text_table.decoding(config))
    train = texts.get("train", texts.get("all"))
    return text_table.to_dataset(path, train, dict(skipped), test_pairs=texts.get("test"), what="text files")
