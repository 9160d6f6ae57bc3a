"""Local data formats, one module per family, found through one table.

Every source module has the same small face (after tensorflow-datasets' builders):

    NAME                      what `dlcli data info` calls the format
    KIND                      what it holds: "images", "text", "table" (recipes list the kinds
                              they read in DATA_KINDS, so `--data` and `data info` agree)
    detect(path) -> bool      a cheap look: is `path` this format?
    describe(path) -> dict    for `dlcli data info`: layout, splits, classes and counts
    load(path, config)        the examples: a `dlcli.data.Dataset` (images, text) or a
                              `dlcli.data.Table` (tables), held as arrays or as files

Adding a format is one module here and one line in SOURCES. Order matters: the first source
whose `detect` says yes reads the path, unless a recipe asks for a kind: then the first
source of that kind that detects it (a CSV of sentences is text for lstm, a table for regression).
"""

from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.data.sources import aclimdb, audio_folder, auto_mpg, csv_table, file_list, idx, image_folder, text_folder, text_table

SOURCES = [idx, aclimdb, audio_folder, text_folder, image_folder, file_list, text_table, csv_table, auto_mpg]


def find(path, kinds=None):
    """The source that reads `path`, among those of `kinds` (all when None)."""
    path = Path(path)
    if not path.exists():
        raise DlcliError(f"--data path does not exist: {path}")
    detected = [source for source in SOURCES if source.detect(path)]
    wanted = [s for s in SOURCES if kinds is None or s.KIND in kinds]
    found = next((s for s in detected if s in wanted), detected[0] if detected else None)
    if found is None:
        raise DlcliError(f"{path} is not a format dlcli reads. {_formats(wanted)}")
    if kinds is not None and found.KIND not in kinds:
        raise DlcliError(f"{path} is {found.NAME}, not data this recipe reads. {_formats(wanted)}")
    return found


def _formats(sources):
    return "Expected: " + "; ".join(source.NAME for source in sources) + "."
