"""Texts and their labels in one file: CSV, TSV or JSON Lines, with a header (CSV/TSV). The text
and label columns are found when that is unambiguous (by name, else the one column of long
texts and the one column of few values), or named with `--set text_column=... label_column=...`.
A CSV is read as text when one of its columns holds sentences; other CSVs are tables.

The test set is a fixed, stratified 20% of the rows (seed 0); rows with an empty text or label
are skipped and counted. The file may be in any encoding `dlcli.data.encodings` reads (UTF-8,
UTF-16 with a BOM, Windows-1252, ...: `encoding=auto`), or the one `encoding` names.
"""

import csv
import io
import json
from collections import Counter
from pathlib import Path

import numpy as np

import dlcli.data.encodings as encodings
from dlcli.core.errors import DlcliError
from dlcli.data.splits import Dataset, stratified_split

NAME = "a CSV/TSV/JSON Lines file of texts and labels (text_column, label_column)"
KIND = "text"
DELIMITERS = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
JSON_LINES = {".jsonl", ".ndjson"}
TEXT_NAMES = ("text", "review", "message", "sentence", "content", "body", "comment", "tweet", "document", "sms")
LABEL_NAMES = ("label", "labels", "class", "category", "sentiment", "target", "y", "intent", "topic")
MAX_CLASSES = 100
csv.field_size_limit(2**31 - 1)


def detect(path):
    path = Path(path)
    if not path.is_file():
        return False
    suffix = path.suffix.lower()
    if suffix in JSON_LINES or suffix in (".tsv", ".tab"):
        return True
    if suffix != ".csv":
        return False
    try:
        header, rows = parse(path, text=encodings.decode(path.read_bytes()[:65536], path, "auto", "replace")[0], partial=True)
    except DlcliError:
        return False
    return bool(text_columns(header, rows)) or any(h.lower() in TEXT_NAMES for h in header)


def decode(path, encoding="auto", errors="strict"):
    """(text, encoding used, lines with replaced bytes) of the file: see dlcli.data.encodings."""
    return encodings.decode(Path(path).read_bytes(), path, encoding, errors)


def decoding(config):
    """The config's (encoding, decode_errors): how its text files are decoded."""
    encoding = getattr(config, "encoding", "auto") or "auto"
    encodings.check_name(encoding)
    return encoding, getattr(config, "decode_errors", "strict")


def parse(path, text, partial=False):
    """(header, rows as dicts of strings) of a CSV, TSV or JSON Lines text."""
    suffix = Path(path).suffix.lower()
    if suffix in JSON_LINES:
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                if partial and number == len(text.splitlines()):
                    break
                raise DlcliError(f"{path}, line {number}: not a JSON object ({e.msg}).") from None
            if not isinstance(row, dict):
                raise DlcliError(f"{path}, line {number}: a JSON {type(row).__name__}, not an object of columns.")
            rows.append({k: "" if v is None else str(v) for k, v in row.items()})
        header = list(dict.fromkeys(k for row in rows for k in row))
        return header, rows
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=DELIMITERS.get(suffix, ","))
    header = next(reader, None)
    if not header:
        raise DlcliError(f"{path} is empty: expected a header row of column names.")
    header = [h.strip() for h in header]
    rows = []
    for values in reader:
        if values:
            rows.append(dict(zip(header, [v.strip() for v in values])))
    if partial and rows:
        rows.pop()  # may be cut short
    return header, rows


def is_number(value):
    try:
        float(value)
        return True
    except ValueError:
        return False


def text_columns(header, rows):
    """Columns that hold sentences: mostly long values with spaces, not numbers."""
    out = []
    for column in header:
        values = [row.get(column, "") for row in rows if row.get(column, "")]
        if values and not all(is_number(v) for v in values):
            long = sum(len(v) >= 20 and " " in v for v in values)
            if long >= 0.5 * len(values):
                out.append(column)
    return out


def label_columns(header, rows, text):
    return [
        c for c in header
        if c != text and 2 <= len({row.get(c, "") for row in rows if row.get(c, "")}) <= MAX_CLASSES
        and len({row.get(c, "") for row in rows}) < max(3, 0.5 * len(rows))
    ]


def choose(path, header, rows, config):
    """(text column, label column): named in the config, else found when unambiguous."""
    named = {"text_column": getattr(config, "text_column", ""), "label_column": getattr(config, "label_column", "")}
    for key, column in named.items():
        if column and column not in header:
            raise DlcliError(f"{path} has no column '{column}' ({key}). Columns: {', '.join(header)}.")
    text = named["text_column"] or pick(header, TEXT_NAMES, text_columns(header, rows))
    if not text:
        raise DlcliError(f"{path}: cannot tell which column holds the text; name it with --set text_column=NAME. Columns: {', '.join(header)}.")
    label = named["label_column"] or pick(header, LABEL_NAMES, label_columns(header, rows, text), exclude=text)
    if not label:
        raise DlcliError(f"{path}: cannot tell which column holds the label; name it with --set label_column=NAME. Columns: {', '.join(header)}.")
    return text, label


def pick(header, names, candidates, exclude=None):
    by_name = [c for c in header if c.lower() in names and c != exclude]
    if len(by_name) == 1:
        return by_name[0]
    return candidates[0] if len(candidates) == 1 else None


def read(path, config):
    content, used, replaced = decode(path, *decoding(config))
    header, rows = parse(path, content)
    text, label = choose(path, header, rows, config)
    kept = [(row.get(text, ""), row.get(label, "")) for row in rows]
    blank = sum(not t or not y for t, y in kept)
    kept = [(t, y) for t, y in kept if t and y]
    if not kept:
        raise DlcliError(f"{path}: no row has both a text (column '{text}') and a label (column '{label}'); nothing to learn from.")
    notes = {"rows with an empty text or label (skipped)": blank, f"lines with bytes that are not {used} (replaced)": replaced}
    if used not in ("utf-8", "utf_8"):
        notes[f"read as {used}"] = "file"
    return text, label, kept, notes


def label_names(labels):
    """Sorted class names: numerically when every label is a number."""
    unique = set(labels)
    return sorted(unique, key=lambda v: (float(v), v)) if all(is_number(v) for v in unique) else sorted(unique)


def to_dataset(path, pairs, notes, test_pairs=None, what="texts"):
    """A Dataset of one-line texts and int64 labels; a fixed stratified 20% is the test set
    when the data has no test part of its own."""
    from dlcli.data.sources.aclimdb import one_line

    names = label_names([y for _, y in pairs])
    if len(names) < 2:
        raise DlcliError(f"{path} holds {len(names)} class(es) ({', '.join(names)}); a classifier needs at least two.")
    if len(names) > MAX_CLASSES:
        raise DlcliError(f"{path} has {len(names)} distinct labels; at most {MAX_CLASSES} classes. Is label_column right?")
    index = {name: i for i, name in enumerate(names)}

    def arrays(part):
        unknown = sorted({y for _, y in part} - set(index))
        if unknown:
            raise DlcliError(f"{path}: test labels not in the training data: {', '.join(unknown[:5])}.")
        return np.array([one_line(t) for t, _ in part], object), np.array([index[y] for _, y in part], np.int64)

    train = arrays(pairs)
    test = arrays(test_pairs) if test_pairs is not None else None
    if test is None:
        train, test = stratified_split(train, 0.2, seed=0)
    said = "; ".join(why if n == "file" else f"{n} {why}" for why, n in notes.items() if n)
    return Dataset(train=train, test=test, class_names=names, description=f"{what} in {path}" + (f"; {said}" if said else ""))


def describe(path):
    text, label, pairs, notes = read(Path(path), _Loose())
    header, _ = parse(path, decode(path, errors="replace")[0])
    counts = Counter(y for _, y in pairs)
    return {
        "columns": header,
        "text_column": text,
        "label_column": label,
        "classes": label_names(list(counts)),
        "splits": {"all (test: a stratified 20%)": {"examples": len(pairs), "per_class": {n: counts[n] for n in label_names(list(counts))}}},
        "mean_words": round(float(np.mean([len(t.split()) for t, _ in pairs])) if pairs else 0, 1),
        "encoding": next((k.removeprefix("read as ") for k in notes if k.startswith("read as ")), "utf-8"),
        **({"skipped": {k: v for k, v in notes.items() if v and not k.startswith("read as ")}} if any(notes.values()) else {}),
    }


class _Loose:
    encoding, decode_errors = "auto", "replace"
    text_column = label_column = ""


def load(path, config):
    text, label, pairs, notes = read(Path(path), config)
    return to_dataset(path, pairs, notes, what=f"texts ('{text}' -> '{label}')")
