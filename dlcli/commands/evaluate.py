"""`dlcli evaluate RUN_DIR`: evaluate a saved run's model on its test split (or other data)."""

import time
from pathlib import Path
from typing import Annotated

import typer

from dlcli import config as config_lib
from dlcli import complete, data, registry, rundir, ui


def evaluate_command(
    run_dir: Annotated[Path, typer.Argument(help="A run folder written by `dlcli train`.")],
    dataset: Annotated[
        str | None, typer.Option(help="Evaluate on this dataset's test split instead.", autocompletion=complete.datasets)
    ] = None,
    data_path: Annotated[str | None, typer.Option("--data", help="Evaluate on the test split of local data instead.")] = None,
    data_dir: Annotated[str | None, typer.Option(help="tensorflow-datasets data dir with prepared data.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Evaluation batch size.")] = None,
    unsafe: Annotated[bool, typer.Option(help="Load models that contain code (Lambda layers). Only for files you trust.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the metrics as JSON on stdout.")] = False,
):
    """Evaluate a trained run's model on the test split; writes RUN_DIR/evaluation.json."""
    rundir.check_run_dir(run_dir)
    saved = rundir.read_json(run_dir / "config.json")
    module = registry.load(str(saved.get("recipe")))
    flags = {"dataset": dataset, "data": data_path, "data_dir": data_dir, "batch_size": batch_size}
    if dataset is not None and data_path is None:
        flags["data"] = "none"  # a named dataset replaces the local data the run was trained on
    config = config_lib.resolve(module.Config, saved["recipe"], toml_values=saved.get("config", {}), flags=flags)
    data.check_dataset(config, module.DATASETS, saved["recipe"])

    from dlcli import loop, predict
    from dlcli.lazy import tf

    model = predict.load_keras(run_dir / "model.keras", unsafe)
    splits = module.load_data(config)
    strategy = tf.distribute.get_strategy()
    loss_fn, metrics = loop.loss_and_metrics(module, config)
    _, eval_steps = loop.step_functions(strategy, model, loss_fn, metrics, config.batch_size)
    # model.keras takes raw inputs (any tf.data preprocessing is folded into it): no preprocess here.
    results = loop.evaluate(strategy, eval_steps, metrics, splits.test, config.batch_size or len(splits.test[0]))

    report = {
        "test": results,
        "test_examples": len(splits.test[0]),
        "data_source": splits.source,
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rundir.write_json(run_dir / "evaluation.json", report)
    if as_json:
        ui.print_json(report)
    else:
        ui.console.print(f"[bold]test[/bold] on {splits.source}: {ui.metrics_line(results)}  ({len(splits.test[0])} examples)")
        ui.console.print(f"wrote {run_dir / 'evaluation.json'}")
