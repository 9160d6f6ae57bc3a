"""The `dlcli` command: wires the commands together and turns errors into one line.

Each command lives in its own module under dlcli/commands. Importing this module must
stay cheap: TensorFlow is imported inside the commands that need it.
"""

import os
import sys
from typing import Annotated

import typer
from typer.core import TyperGroup
from typer.exceptions import TyperException

from dlcli import __version__
from dlcli.cli.commands import data_cmd, evaluate, export, launch, list_recipes, plot, predict, runs, serve, show, train, tune
from dlcli.core.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_UNEXPECTED, DlcliError

# TensorFlow's C++ start-up chatter (CUDA probes, oneDNN notes) buries the output of a CLI;
# DLCLI_DEBUG=1 or an explicit TF_CPP_MIN_LOG_LEVEL keeps it.
if not os.environ.get("DLCLI_DEBUG"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _first_line(text):
    lines = [line for line in str(text).strip().splitlines() if line.strip()]
    return lines[0] if lines else ""


class DlcliGroup(TyperGroup):
    """A Typer group whose errors are one line on stderr, with a distinct exit code each."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
            code = code if isinstance(code, int) else EXIT_OK
        except DlcliError as e:
            # Our messages are one line by design; a line break inside one comes from a value
            # it quotes (a file name with a newline), so it is shown escaped, not cut there.
            code = _fail(str(e).strip().replace("\r", "\\r").replace("\n", "\\n"), e.exit_code)
        except TyperException as e:  # usage errors: unknown option, bad value, missing argument
            message = _first_line(e.format_message())
            command = f" (see: {e.ctx.command_path} --help)" if getattr(e, "ctx", None) else ""
            # No message: a bare `dlcli` or `dlcli data`, which has just printed its help.
            code = _fail(message + command, e.exit_code) if message else e.exit_code
        except typer.Exit as e:
            code = e.exit_code
        except (typer.Abort, KeyboardInterrupt):
            code = _fail("interrupted", EXIT_INTERRUPTED)
        except Exception as e:
            if os.environ.get("DLCLI_DEBUG"):
                raise
            code = _fail(f"unexpected {type(e).__name__}: {_first_line(e)} (set DLCLI_DEBUG=1 for the traceback)", EXIT_UNEXPECTED)
        if standalone_mode:
            sys.exit(code)
        return code


def _fail(message, code):
    typer.echo(f"error: {message}", err=True)
    return code


app = typer.Typer(
    cls=DlcliGroup,
    help="Classic deep-learning recipes in modern Keras 3, trained under any tf.distribute strategy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        typer.echo(f"dlcli {__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
):
    """Classic deep-learning recipes in modern Keras 3, trained under any tf.distribute strategy."""


app.command("list")(list_recipes.list_command)
app.command("show")(show.show_command)
# Extra `--KEY=VALUE` arguments are config keys: how Vertex AI's hyperparameter tuning passes each trial's values.
app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(train.train_command)
app.command("evaluate")(evaluate.evaluate_command)
app.command("predict")(predict.predict_command)
app.command("export")(export.export_command)
app.command("plot")(plot.plot_command)
app.command("launch", cls=launch.LaunchCommand)(launch.launch_command)
app.command("tune")(tune.tune_command)
app.command("runs")(runs.runs_command)
app.command("serve")(serve.serve_command)
app.add_typer(data_cmd.app, name="data")


def main():
    from dlcli.core.lazy import filter_for_process
    from dlcli.runs.container import adopt_volume_owner

    filter_for_process()  # TensorFlow's C++ log lines kept off stderr for the whole command, not only its import
    adopt_volume_owner()  # in the container image only: write the mounted /runs as its owner
    app(prog_name="dlcli")  # also as `python -m dlcli`, so usage lines and completion say dlcli
