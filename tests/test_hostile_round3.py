"""Hostile input, round 3, through the real `dlcli` binary (a subprocess, measured with wait4):
each command exits 0 or 2 (never 1), says a refusal in exactly one stderr line, stays within
memory and time bounds, and leaves a pre-existing run folder as it was. One class per section:

1. Archive members that are not regular files, or enormous (dlcli/data/archive.py).
2. Table numbers that float32 cannot hold (dlcli/data/sources/csv_table.py).
3. Degenerate but well-formed files: 0, 1 and 2 rows, damaged run CSVs, IDX files of 0 images.
4. TensorFlow's C++ log lines printed after start-up (dlcli/core/lazy.py).

Every hostile input is built here, small: a member that decompresses to 1 GB is 4.7 MB of
gzip streamed from zeros, a sparse 10 GB member 5 KB of PAX headers and one data block.
"""

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO
from tests.helpers import write_idx, write_idx_folder

MAX_PEAK_MB = 1536  # the bound on a refusal; TensorFlow's import alone takes ~650 MB
MAX_SECONDS = 60
MEASURED = {}  # what each case took, printed at the end (pytest -s) for the README


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    peak_mb: float  # the child's peak resident memory (ru_maxrss of wait4)
    seconds: float


# Runs the command under a small Python that forks it and reports its rusage: measured from
# pytest itself, ru_maxrss would start at pytest's own size (Linux carries the parent's peak
# across fork and exec), which holds TensorFlow already.
MEASURE = """
import os, subprocess, sys, threading
report, timeout, *command = sys.argv[1:]
child = subprocess.Popen(command)
timer = threading.Timer(float(timeout), child.kill)
timer.start()
_, status, usage = os.wait4(child.pid, 0)
timer.cancel()
with open(report, "w") as f:
    f.write(str(usage.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


def dlcli(*args, env=None, timeout=120, python=None):
    """Runs `python -m dlcli ARGS` (or `python -c PYTHON`) to its end, reading its pipes to EOF (so
    lines that dlcli's stderr filter process passes on as dlcli exits are kept too)."""
    command = [sys.executable, "-c", python] if python else [sys.executable, "-m", "dlcli", *map(str, args)]
    report = Path(os.environ.get("TMPDIR", "/tmp")) / f"dlcli-rusage-{os.getpid()}-{time.monotonic_ns()}"
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", MEASURE, str(report), str(timeout), *command], cwd=REPO,
                          capture_output=True, env={**os.environ, **(env or {})}, timeout=timeout + 60)
    seconds = time.perf_counter() - started
    peak_kb = int(report.read_text()) if report.exists() else 0
    report.unlink(missing_ok=True)
    return Result(done.returncode, done.stdout.decode("utf-8", "replace"), done.stderr.decode("utf-8", "replace"), peak_kb / 1024, seconds)


def outcome(result, case, expected=None, *fragments):
    """Exit 0 or 2 (never 1, never killed); a refusal is one 'error: ' line naming what was wrong;
    memory and time within bounds. Returns the stderr line of a refusal."""
    MEASURED[case] = f"exit {result.returncode}, peak {result.peak_mb:.0f} MB, {result.seconds:.1f} s"
    assert result.returncode in (0, 2), (case, result.returncode, result.stderr[-3000:])
    if expected is not None:
        assert result.returncode == expected, (case, result.returncode, result.stderr[-3000:])
    assert result.peak_mb < MAX_PEAK_MB and result.seconds < MAX_SECONDS, (case, MEASURED[case])
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (case, result.stderr)
        for fragment in fragments:
            assert fragment in lines[0], (case, lines[0])
        return lines[0]
    return ""


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished run (regression on synthetic data, one short epoch): refusals point their
    `-o --overwrite` at it, and it must come out as it went in."""
    run = tmp_path_factory.mktemp("existing") / "run"
    result = dlcli("train", "regression", "--epochs", 1, "--set", "steps_per_epoch=2", "--set", "samples=200", "-o", run)
    assert result.returncode == 0, result.stderr[-3000:]
    return run, checksums(run)


def unchanged(existing):
    run, before = existing
    assert checksums(run) == before, "a refusal changed the pre-existing run"


# ## 1. Archives: member types and byte budgets (dlcli/data/archive.py, sources/aclimdb.py)

REVIEWS = [(f"aclImdb/{split}/{label}/{i}_1.txt", f"a {'great wonderful' if label == 'pos' else 'awful boring'} film {i}".encode())
           for split in ("train", "test") for label in ("pos", "neg") for i in range(3)]
VICTIM = "aclImdb/train/pos/9_1.txt"  # named like a review: the reader would read it


def write_archive(path, extra=()):
    """A .tar.gz of 12 good reviews and `extra` (header bytes, data bytes or a count of zero
    bytes), gzip-compressed as it is written: a 1 GB member never exists in memory or on disk."""
    gz = zlib.compressobj(1, zlib.DEFLATED, 31)
    with open(path, "wb") as out:
        def put(data):
            out.write(gz.compress(data))

        for name, content in REVIEWS:
            info = tarfile.TarInfo(name)
            info.size = len(content)
            put(info.tobuf(tarfile.GNU_FORMAT) + content + b"\0" * (-len(content) % 512))
        for header, data in extra:
            put(header)
            if isinstance(data, int):  # that many zero bytes, a MiB at a time
                zeros = bytes(1 << 20)
                for start in range(0, data, len(zeros)):
                    put(zeros[: min(len(zeros), data - start)])
                put(b"\0" * (-data % 512))
            else:
                put(data + b"\0" * (-len(data) % 512))
        put(b"\0" * 1024)
        out.write(gz.flush())
    return path


def special(kind, **fields):
    info = tarfile.TarInfo(VICTIM)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info.tobuf(tarfile.GNU_FORMAT), b""


def sized(name, size, declared=None):
    info = tarfile.TarInfo(name)
    info.size = declared if declared is not None else size
    return info.tobuf(tarfile.GNU_FORMAT), size


def sparse(realsize):
    """A PAX 1.0 sparse member: one 4 KiB block of data at the end of `realsize` bytes of holes."""
    sparse_map = f"1\n{realsize - 4096}\n4096\n".encode()
    data = sparse_map + b"\0" * (-len(sparse_map) % 512) + b"x" * 4096
    info = tarfile.TarInfo(VICTIM)
    info.size = len(data)
    info.pax_headers = {"GNU.sparse.major": "1", "GNU.sparse.minor": "0", "GNU.sparse.name": VICTIM, "GNU.sparse.realsize": str(realsize)}
    return info.tobuf(tarfile.PAX_FORMAT), data


def long_name(length):
    info = tarfile.TarInfo("aclImdb/train/pos/" + "x" * length + ".txt")
    info.size = 1
    return info.tobuf(tarfile.GNU_FORMAT), b"x"


SKIPPED = "review entries that are links, FIFOs or devices"
ARCHIVES = {  # case: (extra members, expected exit, fragment of the answer)
    "fifo": (lambda: [special(tarfile.FIFOTYPE)], 0, SKIPPED),
    "char_device": (lambda: [special(tarfile.CHRTYPE, devmajor=1, devminor=5)], 0, SKIPPED),
    "block_device": (lambda: [special(tarfile.BLKTYPE, devmajor=7, devminor=0)], 0, SKIPPED),
    "symlink": (lambda: [special(tarfile.SYMTYPE, linkname="/dev/zero")], 0, SKIPPED),
    "hardlink": (lambda: [special(tarfile.LNKTYPE, linkname="aclImdb/train/pos/0_1.txt")], 0, SKIPPED),
    "sparse_10gb": (lambda: [sparse(10 << 30)], 2, f"{VICTIM} is 10,737,418,240 bytes, over the budget of 4,194,304"),
    "review_1gb": (lambda: [sized(VICTIM, 1 << 30)], 2, f"{VICTIM} is 1,073,741,824 bytes, over the budget of 4,194,304"),
    # not a review: never read, only decompressed past (1 GB within the archive's 4 GiB), in constant memory
    "other_member_1gb": (lambda: [sized("aclImdb/train/labeledBow.feat", 1 << 30)], 0, "examples 6"),
    "declares_5gb": (lambda: [sized("aclImdb/train/unsupBow.feat", 4096, declared=5 << 30)], 2, "past 4,294,967,296"),
    "long_name_2mb": (lambda: [long_name(2 << 20)], 2, "a header (long name, PAX record, sparse map) may take"),
}


@pytest.fixture(scope="module")
def archives(tmp_path_factory):
    folder = tmp_path_factory.mktemp("archives")
    return {case: write_archive(folder / f"{case}.tar.gz", extra()) for case, (extra, _, _) in ARCHIVES.items()}


@pytest.mark.parametrize("case", list(ARCHIVES))
def test_archive_members_are_typed_and_budgeted(case, archives, existing):
    _, expected, fragment = ARCHIVES[case]
    archive = archives[case]
    before = sorted(os.listdir(archive.parent))
    result = dlcli("data", "info", archive)
    line = outcome(result, f"archive {case}", expected, fragment)
    if expected == 0:
        assert fragment in result.stdout, result.stdout
        assert "train: examples 6" in result.stdout or case == "other_member_1gb", result.stdout
    else:
        assert str(archive) in line
    assert sorted(os.listdir(archive.parent)) == before, "something was extracted"
    unchanged(existing)


def test_a_fifo_named_like_a_tarball_is_skipped_without_being_opened(tmp_path, archives, existing):
    folder = tmp_path / "imdb"
    folder.mkdir()
    shutil.copy(archives["fifo"], folder / "aclImdb_train.tar.gz")
    os.mkfifo(folder / "aclImdb_unsup.tar.gz")  # opening it would block for ever
    result = dlcli("data", "info", folder, timeout=MAX_SECONDS)
    outcome(result, "archive fifo as a tarball", 0)
    assert "tarballs that are not regular files': 1" in result.stdout and "train: examples 6" in result.stdout, result.stdout
    unchanged(existing)


def test_train_refuses_a_1gb_review_in_bounded_memory_and_leaves_the_run(archives, existing):
    run, _ = existing
    result = dlcli("train", "lstm", "--data", archives["review_1gb"], "--epochs", 1, "-o", run, "--overwrite")
    outcome(result, "train lstm on review_1gb", 2, "over the budget of 4,194,304")
    unchanged(existing)


# ## 4. C++ log lines after start-up (dlcli/core/lazy.py), with the lstm run of a hostile folder

PROBE = """
import sys
from dlcli.core import lazy
{setup}
lazy.import_tensorflow()
tf = lazy.tf
# A real C++ LOG(ERROR) line, written by TensorFlow's PrintV2 kernel after start-up, like
# oneDNN's 'supports DT_BOOL only on platforms with AVX-512' line is when an LSTM first runs.
tf.print("dlcli-probe: a C++ log line after start-up", output_stream=tf.compat.v1.logging.error)
print("dlcli: a Python line", file=sys.stderr)
"""


def test_cpp_log_lines_after_start_up_are_filtered_for_the_whole_process():
    """What the CLI does (`main()` calls `filter_for_process`) against the import-only filter
    and DLCLI_DEBUG=1: the probe is a real C++ log line (the last two show it, in absl's
    format), and only the whole-process filter keeps it off stderr, Python's lines passing."""
    # TensorFlow's own level, whatever an earlier test left in this process' environment: all C++ lines
    loud = {"TF_CPP_MIN_LOG_LEVEL": "0", "DLCLI_DEBUG": ""}
    filtered = dlcli(python=PROBE.format(setup="lazy.filter_for_process()"), env=loud)
    assert filtered.returncode == 0 and filtered.stderr.splitlines() == ["dlcli: a Python line"], filtered.stderr
    import_only = dlcli(python=PROBE.format(setup=""), env=loud)
    assert any(line.startswith("E") and "logging_ops.cc" in line and "dlcli-probe" in line for line in import_only.stderr.splitlines()), import_only.stderr
    debug = dlcli(python=PROBE.format(setup="lazy.filter_for_process()"), env={**loud, "DLCLI_DEBUG": "1"})
    assert "dlcli-probe" in debug.stderr and "dlcli: a Python line" in debug.stderr


def test_train_and_predict_on_a_folder_with_a_fifo_tarball_say_nothing_on_stderr(tmp_path, archives, existing):
    """The lstm trains on a folder holding a good tarball and a FIFO named like one (it hung
    `dlcli train` before), then predicts. TensorFlow logs 'oneDNN supports DT_BOOL only on
    platforms with AVX-512' when the LSTM first runs on CPUs without some AVX-512 extensions
    (the 2-core AMD VM is one): both commands must keep stderr empty. On a CPU where
    TensorFlow logs nothing here, this test proves less; the probe test above proves the filter."""
    folder = tmp_path / "imdb"
    folder.mkdir()
    shutil.copy(archives["hardlink"], folder / "aclImdb_train.tar.gz")
    os.mkfifo(folder / "aclImdb_unsup.tar.gz")
    run = tmp_path / "lstm"
    trained = dlcli("train", "lstm", "--data", folder, "--epochs", 1, "--batch-size", 4, "--set", "vocab_size=100",
                    "--set", "sequence_length=16", "--set", "units=8", "-o", run, timeout=MAX_SECONDS)
    outcome(trained, "train lstm on a folder with a FIFO tarball", 0)
    assert trained.stderr.strip() == "", trained.stderr
    predicted = dlcli("predict", run, "a great wonderful film", "--json")
    outcome(predicted, "predict lstm", 0)
    assert predicted.stderr.strip() == "", predicted.stderr
    unchanged(existing)


# ## 2. Numbers float32 cannot hold (dlcli/data/sources/csv_table.py)

TABLE_ROWS = [f"{i},{(i * 7) % 11},{2 * i + 1}" for i in range(40)]
TEST_ROW = int(np.random.default_rng(0).permutation(40)[0])  # regression's fixed split puts this row in the test set


def table(path, value, column="y"):
    """40 rows of x,z,y with `value` in `column` of a row of the test split (file line TEST_ROW + 2)."""
    rows = list(TABLE_ROWS)
    x, z, y = rows[TEST_ROW].split(",")
    rows[TEST_ROW] = ",".join(value if name == column else cell for name, cell in zip("xzy", (x, z, y)))
    path.write_text("x,z,y\n" + "\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("value", ["1e39", "-1e39", "1e308", "inf", "-Infinity", "-nan", "3.4028236e38"])
def test_numbers_float32_cannot_hold_are_one_line_where_the_table_is_read(value, tmp_path, existing):
    path = table(tmp_path / "table.csv", value, column="z")
    line = outcome(dlcli("data", "info", path), f"float32 data info {value}", 2)
    assert f"line {TEST_ROW + 2}: column 'z' holds '{value}', which is not a finite number in float32" in line, line
    unchanged(existing)


@pytest.mark.parametrize("value", ["NaN", "1e-50", "3.4028235e38"])
def test_missing_and_subnormal_numbers_are_read(value, tmp_path):
    """NaN is a missing value (dropped or imputed, as documented); 1e-50 is float32's 0; float32's max is read."""
    result = dlcli("data", "info", table(tmp_path / "table.csv", value, column="z"))
    outcome(result, f"float32 data info {value}", 0)
    assert "rows: 40" in result.stdout and "'z': 'number'" in result.stdout, result.stdout


def test_train_refuses_1e308_in_a_test_row_and_leaves_the_run(tmp_path, existing):
    run, _ = existing
    result = dlcli("train", "regression", "--data", table(tmp_path / "big.csv", "1e308"), "--set", "target=y", "-o", run, "--overwrite")
    outcome(result, "train regression 1e308 in a test row", 2, f"line {TEST_ROW + 2}: column 'y' holds '1e308'")
    unchanged(existing)


def test_train_reads_nan_as_missing_and_1e_50_as_zero_with_finite_metrics(tmp_path, existing):
    import json

    path = table(tmp_path / "edge.csv", "NaN")
    path.write_text(path.read_text().replace("\n3,", "\n1e-50,", 1))
    run = tmp_path / "run"
    result = dlcli("train", "regression", "--data", path, "--set", "target=y", "--epochs", 1, "--set", "steps_per_epoch=5", "-o", run)
    outcome(result, "train regression NaN and 1e-50", 0)
    metrics = json.loads((run / "metrics.json").read_text())
    assert all(isinstance(v, float) and np.isfinite(v) for v in metrics["test"].values()), metrics["test"]
    assert "1 without a target left out" in json.loads((run / "config.json").read_text())["data"]["source"]  # the NaN row
    unchanged(existing)


def test_predict_refuses_1e39_in_a_csv(tmp_path, existing):
    run, _ = existing
    inputs = tmp_path / "inputs.csv"
    inputs.write_text("x0,x1,x2\n1,2,3\n4,1e39,6\n")
    outcome(dlcli("predict", run, inputs), "predict 1e39", 2, "inputs.csv line 3: column 'x1' holds '1e39'")
    unchanged(existing)


def test_a_test_loss_that_overflows_float32_is_one_line_not_nan(tmp_path, existing):
    """1e30 fits float32, its square does not: the test loss would be NaN. Never reported as a result."""
    run = tmp_path / "run"
    result = dlcli("train", "regression", "--data", table(tmp_path / "squares.csv", "1e30"), "--set", "target=y",
                   "--epochs", 1, "--set", "steps_per_epoch=5", "-o", run)
    outcome(result, "train regression test loss overflow", 2, "the test loss is", "float32 arithmetic overflowed")
    assert not (run / "metrics.json").exists() and not (run / "model.keras").exists()
    unchanged(existing)


# ## 3. Degenerate but well-formed files: 0, 1 and 2 rows; damaged run CSVs; IDX of 0 images


@pytest.mark.parametrize("rows", [1, 2])
def test_regression_on_one_or_two_rows_is_one_line(rows, tmp_path, existing):
    run, _ = existing
    path = tmp_path / "small.csv"
    path.write_text("x,y\n" + "".join(f"{i},{2 * i}\n" for i in range(rows)))
    outcome(dlcli("train", "regression", "--data", path, "--set", "target=y", "-o", run, "--overwrite"),
            f"regression {rows} rows", 2, f"has {rows} row(s) with a target 'y'; at least 5 are needed")
    unchanged(existing)


def test_a_table_of_zero_rows_is_one_line(tmp_path, existing):
    path = tmp_path / "empty.csv"
    path.write_text("x,y\n")
    outcome(dlcli("data", "info", path), "table 0 rows", 2, "needs a header row and at least one data row")
    unchanged(existing)


CONFUSION = {
    "text": "true\\predicted,a,b\na,3,x\nb,1,4\n",
    "empty": "",
    "ragged": "true\\predicted,a,b\na,3,1\nb,1\n",
    "missing row": "true\\predicted,a,b\na,3,1\n",
    "not utf-8": "true\\predicted,a,\xe9\na,3,1\n\xe9,1,4\n",
}


@pytest.mark.parametrize("case", list(CONFUSION))
def test_plot_refuses_a_damaged_confusion_matrix_and_draws_nothing(case, tmp_path, existing):
    run = tmp_path / "run"
    shutil.copytree(existing[0], run)
    (run / "confusion_matrix.csv").write_bytes(CONFUSION[case].encode("latin-1"))
    before = checksums(run)
    outcome(dlcli("plot", run), f"plot confusion {case}", 2, "confusion_matrix.csv")
    assert checksums(run) == before  # no picture half redrawn
    unchanged(existing)


def test_plot_redraws_a_sound_run(tmp_path, existing):
    run = tmp_path / "run"
    shutil.copytree(existing[0], run)
    (run / "confusion_matrix.csv").write_text("true\\predicted,a,b\na,3,1\nb,1,4\n")
    result = dlcli("plot", run)
    outcome(result, "plot sound", 0)
    assert (run / "curves.png").is_file() and (run / "confusion_matrix.png").is_file()


def test_idx_files_of_zero_images_say_so(tmp_path, existing):
    run, _ = existing
    train_empty = write_idx_folder(tmp_path / "train_empty", n_train=12, n_test=4)
    write_idx(train_empty / "train-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(train_empty / "train-labels-idx1-ubyte.gz", np.zeros((0,)))
    outcome(dlcli("train", "cnn", "--data", train_empty, "-o", run, "--overwrite"), "idx train of 0 images", 2,
            "train-images-idx3-ubyte.gz holds 0 images: the train split needs at least one")
    test_empty = write_idx_folder(tmp_path / "test_empty", n_train=12, n_test=4)
    write_idx(test_empty / "t10k-images-idx3-ubyte.gz", np.zeros((0, 28, 28)))
    write_idx(test_empty / "t10k-labels-idx1-ubyte.gz", np.zeros((0,)))
    outcome(dlcli("data", "info", test_empty), "idx test of 0 images", 2, "t10k-images-idx3-ubyte.gz holds 0 images: the test split")
    unchanged(existing)


def test_zz_measurements():
    """Prints what each case took (run with -s); the README quotes the archive ones."""
    for case, measured in sorted(MEASURED.items()):
        print(f"{case}: {measured}")
