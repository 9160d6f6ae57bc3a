"""The errors dlcli reports as one line instead of a traceback."""

EXIT_OK = 0
EXIT_UNEXPECTED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, checkpoint saved: the shell's convention for SIGINT (128 + 2)
EXIT_PREEMPTED = 143  # SIGTERM (preemption), checkpoint saved: 128 + 15


class DlcliError(Exception):
    """Bad input from the user: a flag, a file, a dataset, a config value.

    The CLI prints the message as one line on stderr and exits with code 2.
    Messages say what was wrong and what to do instead.
    """

    exit_code = EXIT_BAD_INPUT


class WriteError(DlcliError):
    """A run artifact or checkpoint could not be written (disk full, no permission).

    The previous version of the file stays as it was; the exit code is 1, not 2: the input
    was fine, the machine was not.
    """

    exit_code = EXIT_UNEXPECTED


def json_type(value):
    """The JSON name of a parsed value's type ("object", "array", ...), for messages about what a client sent."""
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null", int: "number", float: "number"}
    return names.get(type(value), type(value).__name__)
