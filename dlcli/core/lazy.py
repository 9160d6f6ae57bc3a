"""TensorFlow and Keras, imported on first use, without TensorFlow's C++ start-up lines.

Importing TensorFlow costs ~8 s on a small machine. Recipes and commands refer to `tf` and
`keras` at module level as keras-io examples do, but the import only happens when a
command actually builds a model or a dataset, so `dlcli --help`, `list` and `show` stay fast.

TensorFlow's native log lines would bury dlcli's one-line errors. Some come at start-up (the
cudart stub, `failed call to cuInit` on every machine without a GPU, CPU feature notes), printed
by C++ before absl logging is set up, so TF_CPP_MIN_LOG_LEVEL cannot silence them; others come
later, when an op first runs (`oneDNN supports DT_BOOL only on platforms with AVX-512`, an
ERROR-level line, when an LSTM's mask is computed). Python cannot see either: C++ writes to
file descriptor 2 directly. So:

- In the `dlcli` command (`main()` calls `filter_for_process`), from the import of TensorFlow
  to the end of the process, file descriptor 2 is a pipe read by a small filter process that
  drops NOISE lines and passes everything else on to the real stderr; Python's `sys.stderr`
  (dlcli's own messages, rich, warnings) writes to the real stderr directly, so terminals stay
  terminals and the error line never waits in a pipe. The filter is a process, not a thread,
  so what C++ prints as the process dies (a `Check failed` line) still gets out.
- Elsewhere (tests, code that imports dlcli), the first import runs with file descriptor 2
  captured and replays what is not NOISE, as before.

DLCLI_DEBUG=1 shows everything.
"""

import contextlib
import importlib
import io
import os
import re
import subprocess
import sys
import tempfile

# C++ log lines of a native source file (.cc, .h, .cpp...), not absl's Python ones (.py): absl's
# format ("I0000 00:00:1795438299.304234 4246 cudart_stub.cc:31] ...", "E0509 12:00:01.5 77
# util.cc:131] ..."), TensorFlow's own ("2026-05-09 12:00:01.123456: E tensorflow/core/util/
# mkl_util.h:123] ..."), absl's warning about its pre-init lines, and the notes that follow some.
NOISE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+\.(cc|h|cpp|hpp|c|cu|inc):\d+\]"
    r"|\d{4}-\d\d-\d\d \d\d:\d\d:[\d.]+: [IWEF] \S+\.(cc|h|cpp|hpp|c|cu|inc):\d+\]"
    r"|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions|oneDNN custom operations are on|oneDNN supports \w+ only on platforms"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate)"
)
_quiet_done = False
_whole_process = False  # set by the CLI: filter file descriptor 2 from TensorFlow's import on
_filter = None  # the filter process, once started

# The filter process: lines in on stdin, those that are not NOISE out on stdout (the real
# stderr). It ignores Ctrl-C and SIGTERM (dlcli handles them, and may still have lines to say)
# and ends when the last writer of the pipe is gone.
FILTER = r"""
import os, re, signal, sys
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
noise, pending, after_noise = re.compile(sys.argv[1]), b"", False
def out(line):
    global after_noise
    text = line.decode("utf-8", "replace")
    if noise.match(text) or (after_noise and not text.strip()):  # and the blank lines a log message ends with
        after_noise = True
        return
    after_noise = False
    try:
        os.write(1, line)
    except OSError:
        pass
while True:
    try:
        chunk = os.read(0, 65536)
    except InterruptedError:
        continue
    if not chunk:
        break
    *lines, pending = (pending + chunk).split(b"\n")
    for line in lines:
        out(line + b"\n")
if pending:
    out(pending)
"""


def filter_for_process():
    """From TensorFlow's import on, keep native log lines out of this process' stderr until it
    ends (not only during the import). For the `dlcli` command; unless DLCLI_DEBUG is set."""
    global _whole_process
    _whole_process = not os.environ.get("DLCLI_DEBUG")


def _start_filter():
    """File descriptor 2 becomes a pipe into the filter process, whose output is the real
    stderr; `sys.stderr` is pointed at the real stderr. Does nothing once started, or when
    there is no stderr to protect."""
    global _filter
    if _filter is not None:
        return True
    try:
        real = os.dup(2)
    except OSError:
        return False
    read_end, write_end = os.pipe()
    try:
        _filter = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", FILTER, NOISE.pattern],
            stdin=read_end, stdout=real, stderr=subprocess.DEVNULL, close_fds=True,
        )
    except OSError:
        os.close(write_end)
        os.close(real)
        return False
    finally:
        os.close(read_end)
    sys.stderr.flush()
    encoding = getattr(sys.stderr, "encoding", None) or "utf-8"
    # Unbuffered, as stderr is: a line dlcli writes is out before the next C++ one can be.
    sys.stderr = io.TextIOWrapper(open(real, "wb", buffering=0, closefd=False), encoding=encoding, errors="backslashreplace", write_through=True)
    os.dup2(write_end, 2)
    os.close(write_end)
    return True


def import_tensorflow():
    """Imports TensorFlow and lets it find its devices, keeping its native start-up lines out
    of the terminal (unless DLCLI_DEBUG is set). Later calls do nothing."""
    global _quiet_done
    if _quiet_done:
        return
    _quiet_done = True
    if os.environ.get("DLCLI_DEBUG"):
        importlib.import_module("tensorflow")
        return
    if _whole_process:
        _start_filter()
    with native_stderr_filtered():
        # Listing the physical devices is where CUDA is probed (`cuInit`); it does not fix
        # the logical devices, so --cpu-devices can still split the CPU afterwards.
        importlib.import_module("tensorflow").config.list_physical_devices()
    # absl's Python warnings (tfds: "Variant folder ... has no dataset_info.json") are not the
    # user's business either; errors still show.
    import logging

    import absl.logging

    absl.logging.set_verbosity(absl.logging.ERROR)
    logging.getLogger("tensorflow").setLevel(logging.ERROR)  # e.g. "Checkpoint ignored": dlcli says it in its own words


@contextlib.contextmanager
def native_stderr_filtered():
    """Runs the block with file descriptor 2 captured, then replays what is not a NOISE line:
    for native code (TensorFlow's start-up, the LiteRT interpreter) that writes past Python.
    In the `dlcli` command, the filter process does this for the whole process instead."""
    if os.environ.get("DLCLI_DEBUG") or (_whole_process and _start_filter()):
        yield
        return
    try:
        saved = os.dup(2)
    except OSError:  # no stderr to protect
        yield
        return
    with tempfile.TemporaryFile() as captured:
        sys.stderr.flush()
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = "".join(without_noise(captured.read().decode("utf-8", "replace").splitlines(keepends=True)))
            if kept:
                sys.stderr.write(kept)


def without_noise(lines):
    """The lines that are not NOISE, nor blank lines right after a NOISE line (a log message's end)."""
    after_noise = False
    for line in lines:
        if NOISE.match(line) or (after_noise and not line.strip()):
            after_noise = True
            continue
        after_noise = False
        yield line


class LazyModule:
    """Stands in for a module and imports it when an attribute is first read."""

    def __init__(self, name):
        self._name = name

    def __getattr__(self, attr):
        import_tensorflow()
        return getattr(importlib.import_module(self._name), attr)

    def __repr__(self):
        return f"<lazy module {self._name!r}>"


tf = LazyModule("tensorflow")
keras = LazyModule("keras")
