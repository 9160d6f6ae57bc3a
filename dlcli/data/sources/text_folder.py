"""Texts in class-named subfolders, one text per .txt file (the
`keras.utils.text_dataset_from_directory` layout), with optional `train/` and `test/` (and
`val/`) subfolders; without `test/`, a fixed stratified 20% of the files is the test set.
A file that is not UTF-8 stops the read with its name and line (or, with
`--set skip_bad=true`, is decoded with replacement and counted)."""

from collections import Counter
from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.data.sources import image_folder, text_table
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


def read(path, skip_bad):
    splits, skipped = files(Path(path))
    texts = {}
    for split, pairs in splits.items():
        texts[split] = []
        for file, label in pairs:
            text, replaced = text_table.decode(file, skip_bad)
            if replaced:
                skipped["files with bytes that are not UTF-8 (replaced)"] += 1
            if text.strip():
                texts[split].append((text, label))
            else:
                skipped["empty files (skipped)"] += 1
    return texts, skipped


def describe(path):
    texts, skipped = read(Path(path), True)
    facts = {"layout": " + ".join(f"{s}/" for s in texts) if "all" not in texts else "class subfolders"}
    facts["test_set"] = "test/" if "test" in texts else "a stratified 20% of the files (fixed seed)"
    facts["classes"] = text_table.label_names([y for pairs in texts.values() for _, y in pairs])
    facts["splits"] = {s: {"examples": len(p), "per_class": dict(sorted(Counter(y for _, y in p).items()))} for s, p in texts.items()}
    if skipped:
        facts["skipped"] = dict(skipped)
    return facts


def load(path, config):
    texts, skipped = read(Path(path), bool(getattr(config, "skip_bad", False)))
    train = texts.get("train", texts.get("all"))
    return text_table.to_dataset(path, train, dict(skipped), test_pairs=texts.get("test"), what="text files")
