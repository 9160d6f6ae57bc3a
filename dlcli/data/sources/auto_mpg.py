"""The UCI Auto MPG file (`auto-mpg.data`): whitespace-separated numbers, a tab, the quoted car
name; `?` marks a missing horsepower. Read as a table whose default target is `mpg`."""

from pathlib import Path

import dlcli.data.sources.csv_table as csv_table
from dlcli.core.errors import DlcliError
from dlcli.data.splits import Table

NAME = "the UCI Auto MPG file (auto-mpg.data)"
KIND = "table"
URL = "http://archive.ics.uci.edu/ml/machine-learning-databases/auto-mpg/auto-mpg.data"
FILENAME = "auto-mpg.data"
COLUMNS = ["mpg", "cylinders", "displacement", "horsepower", "weight", "acceleration", "model_year", "origin"]


def detect(path):
    path = Path(path)
    return path.is_file() and (path.name == FILENAME or path.suffix.lower() == ".data")


def describe(path):
    table = load(path, None)
    return {"rows": len(table.rows), "features": table.header[1:], "target": table.target, "about": table.description}


def load(path, config):
    """The file as a table: origin (1 USA, 2 Europe, 3 Japan) becomes two one-hot columns
    with USA as the baseline; the car name is left out."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise DlcliError(f"cannot read {path} as the UCI auto-mpg.data file: {e}") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        fields = line.split("\t")[0].split()
        if not fields:
            continue
        if len(fields) != len(COLUMNS):
            raise DlcliError(
                f"{path} line {number} has {len(fields)} numbers, not the {len(COLUMNS)} of auto-mpg.data "
                "(use a .csv with --set target=COLUMN for other tables)."
            )
        if not all(f == "?" or csv_table.is_number(f) for f in fields) or fields[7] == "?":  # only horsepower may be missing
            raise DlcliError(f"{path} line {number} holds a value that is not a number: {line.strip()[:60]!r}")
        csv_table.check_cells(path, COLUMNS, [fields], [number])  # what float32 holds, as for any table
        origin = float(fields[7])
        rows.append([*fields[:7], str(float(origin == 2)), str(float(origin == 3))])
    header = [*COLUMNS[:7], "europe", "japan"]
    return Table(path=path, header=header, rows=rows, description=f"Auto MPG {path}", target="mpg", complete_rows=True)
