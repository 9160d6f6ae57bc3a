"""Hostile text bytes for `encoding=auto` (dlcli/data/encodings.py), through the real binary:
a UTF-16 file cut mid-character, a BOM alone, binary noise named .csv, a 40 MB line without a
newline, UTF-32. Each is read or refused in one line, never a traceback or a hang, within bounded
time and memory, and a run folder beside it is left as it was."""

import os
import resource
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO
from tests.test_encodings import QUICK, text


def run_dlcli(*args, timeout=240):
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    result = subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], cwd=REPO, capture_output=True, text=True, timeout=timeout,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    peak_mib = max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
    return result, time.monotonic() - started, peak_mib


HOSTILE = {
    "utf-16 cut mid-character": lambda: "message,topic\n".encode("utf-16") + b"".join(f'"{text("sport", i)}",s{i % 2}\n'.encode("utf-16-le") for i in range(20)) + b"\x41",
    "a BOM and nothing else": lambda: b"\xef\xbb\xbf",
    "binary noise named .csv": lambda: bytes(range(256)) * 400,
    "a 16 MB line of cp1252 without a newline": lambda: ("message,topic\n" + "£ café " * 2_000_000 + ",a").encode("cp1252"),
    "utf-32 with its BOM": lambda: ("message,topic\n" + "".join(f'"{text("sport", i)}",s{i % 2}\n' for i in range(20))).encode("utf-32"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_bytes_are_read_or_refused_in_one_line(tmp_path, case):
    path = tmp_path / "data.csv"
    path.write_bytes(HOSTILE[case]())
    sentinel = tmp_path / "old-run"
    sentinel.mkdir()
    (sentinel / "keep.txt").write_text("unchanged")
    result, seconds, peak_mib = run_dlcli("train", "lstm", "--data", path, *QUICK, "-o", tmp_path / "run")
    assert result.returncode in (0, 2), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert seconds < 180 and peak_mib < 3000, (seconds, peak_mib)
    assert (sentinel / "keep.txt").read_text() == "unchanged"


