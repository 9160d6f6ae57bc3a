"""Hostile backbone weights files (`--set weights=PATH`), through the real binary: missing, a
folder, another extension, text, a truncated HDF5, another network's, a sparse 10 GB file, an
empty .keras. Each is one error line, exit 2, in bounded time, and the run in the output folder
is left as it was."""

import time

from tests.test_backbones import QUICK, dlcli, weights_file

# ## Hostile weights files, through the real binary: one error line, exit 2, nothing damaged


def hostile_weights(tmp_path):
    """{case: (weights path, whether it is refused before TensorFlow loads)}."""
    real = weights_file(tmp_path, "mobilenet_v3_small")
    other = weights_file(tmp_path, "efficientnet_v2_b0")
    truncated = tmp_path / "truncated.weights.h5"
    truncated.write_bytes(real.read_bytes()[: real.stat().st_size // 2])
    text = tmp_path / "notes.weights.h5"
    text.write_text("these are not weights\n")
    sparse = tmp_path / "huge.weights.h5"
    with sparse.open("wb") as f:  # 10 GB declared, nothing on disk: refused by its size, never read
        f.truncate(10 * 2**30)
    folder = tmp_path / "folder.weights.h5"
    folder.mkdir()
    binary = tmp_path / "weights.bin"
    binary.write_bytes(real.read_bytes())
    empty = tmp_path / "empty.keras"
    empty.write_bytes(b"")
    return {
        "missing": (tmp_path / "nope.weights.h5", True), "a folder": (folder, True), "another extension": (binary, True),
        "text named .weights.h5": (text, False), "truncated HDF5": (truncated, False), "another backbone's": (other, False),
        "a sparse 10 GB file": (sparse, False), "an empty .keras": (empty, False),
    }


def test_hostile_weights_files_are_one_line_and_leave_the_run_as_it_was(tmp_path):
    cases = hostile_weights(tmp_path)
    run = tmp_path / "run"
    code, _, err = dlcli("train", "cnn", "--dataset", "digits", "--epochs", 1, "--set", "steps_per_epoch=1", "-o", run)
    assert code == 0, err[-2000:]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    for case, (path, early) in cases.items():
        started = time.monotonic()
        code, out, err = dlcli("train", "cnn", *QUICK, "--set", "backbone=mobilenet_v3_small", "--set", f"weights={path}",
                               "--set", "steps_per_epoch=1", "--epochs", 2, "-o", run, "--overwrite", timeout=300)
        lines = err.strip().splitlines()
        assert code == 2, f"{case}: exit {code}: {err[-1500:]}"
        assert "Traceback" not in err and [line.startswith("error: ") for line in lines].count(True) == 1, f"{case}: {err[-1500:]}"
        assert len(lines) == 1 and lines[0].startswith("error: "), f"{case}: {err[-1500:]}"
        assert time.monotonic() - started < 120, case
        assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before, f"{case} changed the run"
