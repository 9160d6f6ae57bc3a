"""TensorFlow and Keras, imported on first use, without TensorFlow's C++ start-up lines.

Importing TensorFlow costs ~8 s on a small machine. Recipes and commands refer to `tf` and
`keras` at module level as keras-io examples do, but the import only happens when a
command actually builds a model or a dataset, so `dlcli --help`, `list` and `show` stay fast.

TensorFlow's native start-up lines (the cudart stub, `failed call to cuInit` on every machine
without a GPU, CPU feature notes) are printed by C++ before absl logging is set up, so
TF_CPP_MIN_LOG_LEVEL cannot silence them; they would bury dlcli's one-line errors. The first
import therefore runs with the process' stderr (file descriptor 2) captured, and replays what
is not such a line. DLCLI_DEBUG=1 shows everything.
"""

import contextlib
import importlib
import os
import re
import sys
import tempfile

# absl's pre-init lines ("I0000 00:00:1795438299.304234 4246 cudart_stub.cc:31] ..."), its
# warning about them, and the CPU feature note that follows one of them.
NOISE = re.compile(
    r"^([IWEF]\d{4} \d\d:\d\d:[\d.]+\s+\d+ \S+\.cc:\d+\]|WARNING: All log messages before absl::InitializeLog"
    r"|To enable the following instructions|oneDNN custom operations are on"
    r"|INFO: Created TensorFlow Lite XNNPACK delegate)"
)
_quiet_done = False


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
    for native code (TensorFlow's start-up, the LiteRT interpreter) that writes past Python."""
    if os.environ.get("DLCLI_DEBUG"):
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
            lines = captured.read().decode("utf-8", "replace").splitlines(keepends=True)
            kept = "".join(line for line in lines if not NOISE.match(line))
            if kept:
                sys.stderr.write(kept)


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
