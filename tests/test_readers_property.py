"""Property: whatever bytes a table or text file holds, its reader gives a valid dataset or one
DlcliError (the one-line refusal at the CLI), never another exception type.

A valid dataset means: every number a model will see is finite in float32 (tables, for
training and for predict), and texts are one-line strings with labels in range. The bytes are
drawn from two families: files made of cells that sit on the readers' edges (numbers past
float32's range, NaN/Inf spellings, subnormals, Python-only number syntax, quotes, line
breaks, byte-order marks, non-UTF-8), and plain random bytes.
"""

import io
import json
import tarfile
from types import SimpleNamespace

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.core.errors import DlcliError
from dlcli.data.sources import aclimdb, csv_table, text_folder, text_table
from dlcli.models import config as config_lib
from dlcli.models import predict
from dlcli.training import registry

PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
regression, forecast = registry.load("regression"), registry.load("forecast")

EDGE_CELLS = [
    "0", "1", "-2.5", ".5", "7.", "+3", "1e5", "1E-3", "3.4028235e38", "3.4028236e38", "-3.4028235e38",
    "1e39", "-1e39", "1e308", "1e999", "inf", "-inf", "Infinity", "NaN", "nan", "-nan", "NA", "null", "?", "",
    "1e-50", "-1e-45", "1_000", "\u0663", "0x10", " 12 ", "abc", "red", "a long sentence of several words here",
    '"quoted, with comma"', '"line\nbreak"', "\u2028", "\x00", "\u00e9t\u00e9",
]


HEADERS = [["x", "y"], ["x", "kind", "y"], ["text", "label"], ["text", "label", "x"], ["y"], ["x", "y", "x"]]
GOOD = {
    "x": st.one_of(st.integers(-10**6, 10**6).map(str), st.floats(-1e6, 1e6, allow_nan=False).map(repr)),
    "kind": st.sampled_from(["red", "green", "blue", ""]),
    "text": st.sampled_from(["a wonderful film, moving", "dull and far too long", "great acting throughout", "boring plot"]),
    "label": st.sampled_from(["pos", "neg", "1", "0"]),
}
GOOD["y"] = GOOD["x"]


@st.composite
def table_bytes(draw, delimiter=","):
    """A table that is mostly well formed, with edge cells, ragged rows, odd headers, a BOM,
    blank lines or Latin-1 here and there: so that readers both accept and refuse."""
    header = draw(st.one_of(st.sampled_from(HEADERS), st.lists(st.sampled_from(["x", "y", "text", "a b", ""]), min_size=1, max_size=3)))
    rows = []
    for _ in range(draw(st.integers(0, 16))):
        row = [draw(st.sampled_from(EDGE_CELLS)) if draw(st.integers(0, 9)) == 0 else draw(GOOD.get(name, st.text(max_size=8)))
               for name in header]
        ragged = draw(st.integers(0, 19))
        row = row[:-1] if ragged == 0 else row + ["extra"] if ragged == 1 else row
        rows.append(delimiter.join(f'"{c}"' if delimiter in c and not c.startswith('"') else c for c in row))
    text = "\n".join([delimiter.join(header), *rows]) + draw(st.sampled_from(["", "\n", "\n\n"]))
    if draw(st.booleans()):
        text = "\ufeff" + text
    return text.encode(draw(st.sampled_from(["utf-8"] * 5 + ["latin-1"])), "replace")


any_table = st.one_of(table_bytes(), table_bytes(), table_bytes(), st.binary(max_size=300))


def refusal(error):
    """A refusal the CLI prints as one line (it escapes line breaks of quoted values)."""
    message = str(error).strip()
    assert message and "Traceback" not in message, message
    return message


def float32_finite(array):
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.all(np.isfinite(np.asarray(array, np.float64).astype(np.float32))))


def numbers(cells):
    """The cells the model parses as numbers (the MISSING words, NaN among them, it imputes)."""
    return [float(c) for c in np.asarray(cells).reshape(-1) if csv_table.is_number(c) and c.strip().lower() not in csv_table.MISSING]


def config(recipe, **values):
    return config_lib.resolve(recipe.Config, recipe.__name__.split(".")[-1], toml_values=values)


@PROPERTY
@given(any_table, st.sampled_from(["y", "y", "x", "label"]))
def test_any_csv_gives_regression_numbers_float32_holds_or_one_error(tmp_path_factory, raw, target):
    path = tmp_path_factory.mktemp("table") / "table.csv"
    path.write_bytes(raw)
    try:
        splits = regression.load_data(config(regression, data=str(path), target=target))
    except DlcliError as e:
        refusal(e)
        return
    for split in (splits.train, splits.val, splits.test):
        assert float32_finite(split[1])
        if splits.kind == "table":
            assert split[0].dtype == np.float32 and float32_finite(split[0])
        else:  # raw cells: every one that reads as a number is one float32 holds, and the model's statistics are finite
            assert float32_finite(numbers(split[0]))
    for column in splits.info.get("spec", []):
        assert "vocabulary" in column or float32_finite([column["mean"], column["std"]])


@st.composite
def auto_mpg_bytes(draw):
    """auto-mpg.data lines: eight numbers (edge cells here and there), a tab, a quoted name."""
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        fields = [draw(st.sampled_from(EDGE_CELLS[:30])) if draw(st.integers(0, 11)) == 0 else draw(GOOD["x"]) for _ in range(8)]
        fields[7] = draw(st.sampled_from(["1", "2", "3", "?", "1e39"])) if draw(st.integers(0, 5)) == 0 else "1"
        lines.append("   ".join(f or "0" for f in fields) + '\t"car"')
    return "\n".join(lines).encode()


@PROPERTY
@given(st.one_of(auto_mpg_bytes(), auto_mpg_bytes(), st.binary(max_size=300)))
def test_any_auto_mpg_file_gives_numbers_float32_holds_or_one_error(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("mpg") / "auto-mpg.data"
    path.write_bytes(raw)
    try:
        splits = regression.load_data(config(regression, data=str(path)))
    except DlcliError as e:
        refusal(e)
        return
    for split in (splits.train, splits.val, splits.test):
        assert split[0].dtype == np.float32 and float32_finite(split[0]) and float32_finite(split[1])


@PROPERTY
@given(any_table, st.sampled_from(["x", "y"]))
def test_any_csv_gives_a_series_or_one_error(tmp_path_factory, raw, column):
    path = tmp_path_factory.mktemp("series") / "series.csv"
    path.write_bytes(raw)
    try:
        series, _ = forecast.read_series(config(forecast, data=str(path), column=column))
    except DlcliError as e:
        refusal(e)
        return
    assert series.ndim == 1 and len(series) and float32_finite(series)


@PROPERTY
@given(any_table, st.lists(st.sampled_from(["x", "y", "kind"]), min_size=1, max_size=2, unique=True), st.booleans())
def test_any_csv_gives_predict_inputs_or_one_error(tmp_path_factory, raw, features, numeric):
    path = tmp_path_factory.mktemp("predict") / "inputs.csv"
    path.write_bytes(raw)
    try:
        if numeric:  # the plain float model's reader
            rows = predict.csv_rows(path, features)
            assert rows.dtype == np.float32 and float32_finite(rows)
        else:  # the raw-cells model's, with the kinds training found
            cells = regression.table_cells(csv_table.load(path, None), features, ["number"] + ["category"] * (len(features) - 1))
            assert all(csv_table.is_number_or_missing(c) for c in cells[:, 0])
            assert float32_finite(numbers(cells))
    except DlcliError as e:
        refusal(e)


@PROPERTY
@given(st.sampled_from([".csv", ".tsv", ".jsonl"]), st.data())
def test_any_text_table_gives_texts_and_labels_or_one_error(tmp_path_factory, suffix, data):
    if suffix == ".jsonl":
        good = st.fixed_dictionaries({"text": GOOD["text"], "label": GOOD["label"]})
        odd = st.dictionaries(st.sampled_from(["text", "label", "x"]), st.one_of(st.sampled_from(EDGE_CELLS), st.integers(), st.none()))
        lines = data.draw(st.lists(st.one_of(good, good, good, odd).map(json.dumps) | st.text(max_size=20), max_size=14))
        raw = data.draw(st.one_of(st.just("\n".join(lines).encode()), st.binary(max_size=300)))
    else:
        table = table_bytes("\t" if suffix == ".tsv" else ",")
        raw = data.draw(st.one_of(table, table, table, st.binary(max_size=300)))
    path = tmp_path_factory.mktemp("texts") / f"texts{suffix}"
    path.write_bytes(raw)
    skip_bad = data.draw(st.booleans())
    try:
        found = text_table.load(path, SimpleNamespace(skip_bad=skip_bad, text_column="", label_column=""))
    except DlcliError as e:
        refusal(e)
        return
    check_texts(found)


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(["pos", "neg", "other"]), st.binary(max_size=80)), min_size=1, max_size=8), st.booleans())
def test_any_text_files_give_texts_and_labels_or_one_error(tmp_path_factory, files, skip_bad):
    folder = tmp_path_factory.mktemp("textfolder")
    for i, (label, raw) in enumerate(files):
        (folder / label).mkdir(exist_ok=True)
        (folder / label / f"{i}.txt").write_bytes(raw)
    try:
        found = text_folder.load(folder, SimpleNamespace(skip_bad=skip_bad))
    except DlcliError as e:
        refusal(e)
        return
    check_texts(found)


MEMBER_TYPES = [tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE,
                tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.DIRTYPE]


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from(MEMBER_TYPES), st.binary(max_size=60), st.booleans()), max_size=6))
def test_any_member_types_in_an_acl_imdb_tarball_give_reviews_or_one_error(tmp_path_factory, extra):
    """Every member type, with bytes of any kind, beside (or instead of) four good reviews."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        members = [(tarfile.REGTYPE, f"a {label} film".encode(), f"aclImdb/{split}/{label}/0_1.txt")
                   for split in ("train", "test") for label in ("pos", "neg")]
        members += [(kind, raw, f"aclImdb/{'train' if review else 'x'}/pos/{i + 9}_1.txt") for i, (kind, raw, review) in enumerate(extra)]
        for kind, raw, name in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = "aclImdb/train/pos/0_1.txt"
            if kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE):
                info.size = len(raw)
                tar.addfile(info, io.BytesIO(raw))
            else:
                tar.addfile(info)
    path = tmp_path_factory.mktemp("imdb") / "aclImdb.tar.gz"
    path.write_bytes(buffer.getvalue())
    try:
        found = aclimdb.load(path, None)
    except DlcliError as e:
        refusal(e)
        return
    regular = sum(kind in (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.CONTTYPE) and review for kind, _, review in extra)
    assert len(found.train[0]) == 2 + regular  # links, FIFOs and devices are never read
    assert all(isinstance(t, str) and len(t.splitlines()) <= 1 for t in found.train[0])


def check_texts(found):
    names = found.class_names
    assert len(names) >= 2
    for texts, labels in (found.train, found.test):
        assert len(texts) == len(labels)
        assert all(isinstance(t, str) and len(t.splitlines()) <= 1 for t in texts)
        assert labels.dtype == np.int64 and (labels.size == 0 or (labels.min() >= 0 and labels.max() < len(names)))
