"""CSV files whose first row names the columns: tables for regression, series for forecasting.

Numbers are decimal (`12`, `-3.5`, `.5`, `1e-3`; also `inf`/`infinity`, which are refused
below), read the same way for training and for `dlcli predict`. Models compute in float32, so
every number a table holds must be finite there: a cell beyond float32's range (`1e39`,
`-1e39`, `1e308`, `inf`, `-nan`) stops `load` in one line naming the file, line and column (in
any column, a text column included: a cell that reads as a number is a number), so training,
predict and `dlcli data info` refuse the same files. A number
too small for float32 (`1e-50`) is accepted: float32 holds it as 0 (or as a subnormal down to
1.4e-45), as any float32 pipeline would. Missing values are the MISSING words (blank, NA, NaN,
null, none, ?), in any case: dropped or imputed as each recipe says, never read as numbers.
"""

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import Table

NAME = "a CSV file with a header row (.csv)"
KIND = "table"
MISSING = {"", "na", "nan", "null", "none", "?"}  # cells read as missing values
MAX_BYTES = 2 << 30  # a table is read whole: 2 GiB of text is already ~10 GiB of Python strings
# A decimal number, as Python's float() and TensorFlow's tf.strings.to_number both read it
# (not float()'s "1_000" or Unicode digits, which TensorFlow would refuse in the model).
NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?(?:inf|infinity|nan)", re.IGNORECASE)
FLOAT32_OVERFLOW = 2.0**128 - 2.0**103  # the least magnitude float32 rounds to infinity (max 3.4028235e38)


def detect(path):
    return Path(path).is_file() and Path(path).suffix.lower() == ".csv"


def describe(path):
    table = load(path, None)
    numeric = [name for i, name in enumerate(table.header) if all(is_number_or_missing(cell(r, i)) for r in table.rows)]
    missing = sum(any(cell(r, i).strip().lower() in MISSING for i in range(len(table.header))) for r in table.rows)
    types, blanks = {}, {}
    for i, name in enumerate(table.header):
        values = {cell(r, i).strip() for r in table.rows} - {""}
        values = {v for v in values if v.lower() not in MISSING}
        types[name] = "number" if name in numeric else f"text ({len(values)} distinct values: one-hot in regression)"
        n = sum(cell(r, i).strip().lower() in MISSING for r in table.rows)
        if n:
            blanks[name] = n
    facts = {"rows": len(table.rows), "columns": table.header, "numeric_columns": numeric, "column_types": types,
             "rows_with_missing_values": missing}
    if blanks:
        facts["blank_cells"] = blanks
        facts["blanks"] = "regression imputes blank features with training means (in the model); rows with a blank target are left out"
    return facts


def load(path, config):
    """The file as a Table of raw cells; `numeric` turns chosen columns into numbers."""
    path = Path(path)
    if not path.is_file():  # a FIFO or a device would block or never end
        raise DlcliError(f"{path} is not a regular file.")
    if path.stat().st_size > MAX_BYTES:
        raise DlcliError(f"{path} is {path.stat().st_size} bytes, more than dlcli reads as a CSV table ({MAX_BYTES}).")
    try:
        text = Path(path).read_text(encoding="utf-8-sig")  # Excel's "CSV UTF-8" starts with a byte-order mark
    except UnicodeDecodeError:
        raise DlcliError(f"{path} is not UTF-8 text; save it as UTF-8 CSV.") from None
    except OSError as e:
        raise DlcliError(f"cannot read {path}: {e.strerror}") from None
    rows, lines = [], []
    reader = csv.reader(io.StringIO(text))
    try:
        start = 1
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row)
                lines.append(start)
            start = reader.line_num + 1
    except csv.Error as e:
        raise DlcliError(f"{path} is not valid CSV: {e}") from None
    if len(rows) < 2:
        raise DlcliError(f"{path} needs a header row and at least one data row.")
    header = [name.strip() for name in rows[0]]
    check_cells(path, header, rows[1:], lines[1:])  # here, so training, predict and `data info` all see it
    return Table(path=Path(path), header=header, rows=rows[1:], description=str(path), lines=lines[1:])


def cell(row, i):
    return row[i] if i < len(row) else ""


def numeric(table, names):
    """The named columns as a float64 array (rows, columns) of values float32 holds, and the
    number of rows dropped.

    Rows with a missing cell (empty, NA, NaN, null, ?) are dropped and counted; any other
    cell that is not a number, or not one float32 holds, is an error naming its line and column.
    """
    for name in names:
        if name not in table.header:
            raise DlcliError(f"{table.path} has no column '{name}'. Its columns: {', '.join(table.header)}.")
    index = [table.header.index(name) for name in names]
    values, dropped = [], 0
    for line, row in zip(line_numbers(table), table.rows):
        cells = [cell(row, i).strip() for i in index]
        if any(c.lower() in MISSING for c in cells):
            dropped += 1
            continue
        for name, text in zip(names, cells):
            if not is_number(text):
                raise DlcliError(
                    f"{table.path} line {line}: column '{name}' holds {text!r}, not a number. "
                    "Choose numeric columns (--set columns=a,b,c) or clean the file."
                )
            check_float32(table.path, line, name, text)  # checked at load; tables built elsewhere too
        values.append([float(c) for c in cells])
    if not values:
        raise DlcliError(f"{table.path}: no complete numeric rows in columns {', '.join(names)}.")
    return np.array(values, np.float64), dropped


def line_numbers(table):
    """The line of the file where each row of `table` starts (blank lines and quoted line breaks counted)."""
    return table.lines if table.lines is not None else range(2, len(table.rows) + 2)


def is_number(text):
    """Whether a cell reads as a number (whether float32 holds it or not)."""
    return NUMBER.fullmatch(text.strip()) is not None


def fits_float32(value):
    return math.isfinite(value) and abs(value) < FLOAT32_OVERFLOW


def check_float32(path, line, column, text):
    """Refuses, naming the cell, a number that float32 (what models compute in) cannot hold
    (a MISSING word such as NaN is a missing value, not a number)."""
    text = text.strip()  # str.strip(), as is_number: float() alone keeps "\x1f" and fails on it
    if text.lower() not in MISSING and is_number(text) and not fits_float32(float(text)):
        raise DlcliError(
            f"{path} line {line}: column '{column}' holds {text!r}, which is not a finite number in float32 "
            "(what models compute in: at most +-3.4e38); fix or blank that cell."
        )


def check_cells(path, names, rows, lines):
    """Every cell of `rows` (lists of strings, one per column of `names`, extra cells named by
    position; the rows start at file lines `lines`) that reads as a number is one float32
    holds; else one line naming the file, line and column."""
    for line, cells in zip(lines, rows):
        for i, text in enumerate(cells):
            check_float32(path, line, names[i] if i < len(names) else f"#{i + 1}", text)


def is_number_or_missing(text):
    text = text.strip()
    return text.lower() in MISSING or is_number(text)
