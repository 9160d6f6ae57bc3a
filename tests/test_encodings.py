"""Text files in the encodings people have (dlcli/data/encodings.py): Windows-1252, Latin-1,
UTF-8 with a BOM and UTF-16 mixed in one folder and in CSVs are all read, and the start line says
so; a forced encoding that does not fit is one line; and hostile bytes are read or refused in one
line, through the real binary, within bounded time and memory."""

import json
import time

import pytest

from dlcli.data import encodings
from recipes import lstm
from tests.helpers import invoke

# News-like sentences with the characters that differ between encodings: pound signs, accents,
# curly quotes and dashes (cp1252 only), so a wrong guess shows in the decoded text.
TEXTS = {
    "business": [
        "Shares in the London firm rose to £{n} on Friday as the café chain reported “strong” results — analysts said.",
        "The pound fell against the euro; a crème brûlée now costs £{n} in Manchester, a rise economists called naïve to ignore.",
        "Retail sales grew by {n}% in the quarter, the Office for National Statistics said, with fêtes and façades repainted.",
    ],
    "sport": [
        "The striker scored twice as the home side won {n}-1, a result the manager called “deserved” — fans agreed.",
        "Tickets for the final cost £{n}; the referee’s décision was questioned by the coach after the match.",
        "The captain’s late goal sealed a {n}-point lead at the top of the league, to the delight of the crowd in Zürich.",
    ],
}
ENCODINGS = ["cp1252", "latin-1", "utf-8-sig", "utf-16", "utf-8"]
QUICK = ["--epochs", 1, "--batch-size", 8, "--set", "units=8", "--set", "embedding_dim=8", "--set", "sequence_length=24"]


def text(label, i):
    return TEXTS[label][i % 3].format(n=i + 2)


def encodable(value, encoding):
    """Latin-1 has no curly quotes or dashes: such a file holds what Latin-1 can hold."""
    if encoding != "latin-1":
        return value
    return value.replace("“", "'").replace("”", "'").replace("—", "-").replace("’", "'")


def news_folder(root, per_class=10):
    """Class folders whose files cycle through ENCODINGS."""
    expected = {}
    for label in TEXTS:
        (root / label).mkdir(parents=True)
        for i in range(per_class):
            encoding = ENCODINGS[i % len(ENCODINGS)]
            value = encodable(text(label, i), encoding)
            (root / label / f"{i:03d}.txt").write_bytes(value.encode(encoding))
            expected[value] = encoding
    return expected


def all_texts(splits):
    return {str(t) for t in [*splits.train[0], *splits.val[0], *splits.test[0]]}


def test_a_folder_of_mixed_encodings_is_read_whole_and_the_line_says_how(tmp_path):
    expected = news_folder(tmp_path / "news")
    splits = lstm.load_data(lstm.Config(data=str(tmp_path / "news"), sequence_length=24))
    assert all_texts(splits) == set(expected), "every file decoded to its own text"
    # cp1252 and latin-1 files are detected as one corpus (cp1252 reads both); BOMs name the rest
    assert "files read as cp1252" in splits.source and "files read as utf-16" in splits.source
    assert "files read as utf-8 with BOM" in splits.source
    info = json.loads(invoke("data", "info", tmp_path / "news", "--json").stdout)
    plain = sum(value.isascii() or encoding in ("utf-8",) for value, encoding in expected.items() if encoding not in ("utf-16", "utf-8-sig"))
    assert info["encodings"] == {"utf-8": plain, "cp1252": 20 - 8 - plain, "utf-16": 4, "utf-8 with BOM": 4}
    result = invoke("train", "lstm", "--data", tmp_path / "news", *QUICK, "-o", tmp_path / "run")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1", "utf-8-sig", "utf-16"])
def test_a_csv_in_each_encoding_is_read(tmp_path, encoding):
    rows = [(encodable(text(label, i), encoding), label) for label in TEXTS for i in range(12)]
    body = "message,topic\n" + "".join(f'"{t}",{label}\n' for t, label in rows)
    path = tmp_path / "news.csv"
    path.write_bytes(body.encode(encoding))
    splits = lstm.load_data(lstm.Config(data=str(path), sequence_length=24))
    assert all_texts(splits) == {t for t, _ in rows}
    if encoding != "utf-8-sig":
        assert "read as " in splits.source
    info = json.loads(invoke("data", "info", path, "--json").stdout)
    assert info["encoding"] == {"cp1252": "cp1252", "latin-1": "cp1252", "utf-8-sig": "utf-8-sig", "utf-16": "utf-16"}[encoding]


def test_a_forced_encoding_that_does_not_fit_is_one_line(tmp_path):
    news_folder(tmp_path / "news")
    for setting, fragment in (
        ("encoding=utf-8", "cannot be read as utf-8; name the file's encoding with --set encoding=NAME, or replace such bytes with --set decode_errors=replace"),
        ("encoding=ascii", "cannot be read as ascii"),
        ("encoding=klingon", "encoding must be auto or a codec Python knows"),
    ):
        result = invoke("train", "lstm", "--data", tmp_path / "news", "--set", setting, *QUICK, "-o", tmp_path / "run")
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert fragment in result.stderr
        assert not (tmp_path / "run").exists()
    splits = lstm.load_data(lstm.Config(data=str(tmp_path / "news"), encoding="ascii", decode_errors="replace", sequence_length=24))
    assert "files with bytes that could not be decoded (replaced)" in splits.source


def test_skip_bad_of_old_runs_reads_as_decode_errors():
    """A config.json written before the rename (skip_bad=true for text) still resolves."""
    from dlcli.models import config as config_lib

    config = config_lib.resolve(lstm.Config, "lstm", toml_values={"skip_bad": True})
    assert config.decode_errors == "replace"


def test_detection_reads_a_bounded_sample():
    """The detector sees at most DETECT_BYTES of a corpus, so a huge file costs no more."""
    big = ("café " * 1_000_000).encode("cp1252")
    started = time.monotonic()
    assert encodings.detect(big) in ("cp1252", "latin_1", "iso8859_15", "cp1250", "iso8859_2", "windows-1252")
    assert time.monotonic() - started < 30
