"""CSV files whose first row names the columns: tables for regression, series for forecasting."""

import csv
import io
import math
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import Table

NAME = "a CSV file with a header row (.csv)"
KIND = "table"
MISSING = {"", "na", "nan", "null", "none", "?"}  # cells read as missing values
MAX_BYTES = 2 << 30  # a table is read whole: 2 GiB of text is already ~10 GiB of Python strings


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
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(c.strip() for c in row)]
    except csv.Error as e:
        raise DlcliError(f"{path} is not valid CSV: {e}") from None
    if len(rows) < 2:
        raise DlcliError(f"{path} needs a header row and at least one data row.")
    return Table(path=Path(path), header=[name.strip() for name in rows[0]], rows=rows[1:], description=str(path))


def cell(row, i):
    return row[i] if i < len(row) else ""


def numeric(table, names):
    """The named columns as a float64 array (rows, columns), and the number of rows dropped.

    Rows with a missing cell (empty, NA, NaN, null, ?) are dropped and counted; any other
    cell that is not a number is an error naming its line and column.
    """
    for name in names:
        if name not in table.header:
            raise DlcliError(f"{table.path} has no column '{name}'. Its columns: {', '.join(table.header)}.")
    index = [table.header.index(name) for name in names]
    values, dropped = [], 0
    for line, row in enumerate(table.rows, start=2):
        cells = [cell(row, i).strip() for i in index]
        if any(c.lower() in MISSING for c in cells):
            dropped += 1
            continue
        try:
            row_values = [float(c) for c in cells]
        except ValueError:
            bad = next(n for n, c in zip(names, cells) if not is_number_or_missing(c))
            raise DlcliError(
                f"{table.path} line {line}: column '{bad}' holds {cells[names.index(bad)]!r}, not a number. "
                "Choose numeric columns (--set columns=a,b,c) or clean the file."
            ) from None
        if not all(math.isfinite(v) for v in row_values):
            bad = next(n for n, v in zip(names, row_values) if not math.isfinite(v))
            raise DlcliError(
                f"{table.path} line {line}: column '{bad}' holds {cells[names.index(bad)]!r}, which is not a finite number; "
                "fix or blank that cell."
            )
        values.append(row_values)
    if not values:
        raise DlcliError(f"{table.path}: no complete numeric rows in columns {', '.join(names)}.")
    return np.array(values, np.float64), dropped


def is_number_or_missing(text):
    text = text.strip()
    if text.lower() in MISSING:
        return True
    try:
        float(text)
        return True
    except ValueError:
        return False
