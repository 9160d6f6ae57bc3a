"""`dlcli evaluate RUN_DIR`: evaluate a saved run's model on its test split (or other data)."""

import time

from dlcli import data
from dlcli.cli import options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.runs import remote, rundir
from dlcli.runs.record import Run
from dlcli.training import registry


def evaluate_command(
    run_dir: options.RunDir,
    dataset: options.Dataset = None,
    data_path: options.Data = None,
    data_dir: options.DataDir = None,
    batch_size: options.BatchSize = None,
    unsafe: options.Unsafe = False,
    as_json: options.Json = False,
):
    """Evaluate a trained run's model on its test split, or on the test split of --dataset or
    --data instead; writes RUN_DIR/evaluation.json."""
    run_dir = remote.local_run(run_dir)  # a gs:// run: its local copy; evaluation.json goes back up
    run = Run(run_dir)
    saved = run.record
    module = registry.load(saved.recipe)
    flags = {"dataset": dataset, "data": data_path, "data_dir": data_dir, "batch_size": batch_size}
    if dataset is not None and data_path is None:
        flags["data"] = "none"  # a named dataset replaces the local data the run was trained on
    config = config_lib.resolve(module.Config, saved.recipe, toml_values=saved.config, flags=flags)
    data.check_dataset(config, module.DATASETS, saved.recipe)

    from dlcli.core.lazy import tf
    from dlcli.models import safe_model
    from dlcli.training import steps

    model = safe_model.load_keras(run.model_path, unsafe)
    splits = module.load_data(config)
    if list(splits.input_shape) != list(saved.data.input_shape):
        raise DlcliError(
            f"{splits.source} holds inputs of shape {list(splits.input_shape)}, but the model of {run_dir} reads "
            f"{saved.data.input_shape}; evaluate it on data like what it was trained on."
        )
    strategy = tf.distribute.get_strategy()
    loss_fn, metrics = steps.loss_and_metrics(module, config)
    _, eval_steps = steps.step_functions(strategy, model, loss_fn, metrics, config.batch_size)
    # model.keras takes raw inputs (any tf.data preprocessing is folded into it): no preprocess here.
    with data.naming_undecodable_files(splits.test):
        results = steps.evaluate(strategy, eval_steps, metrics, splits.test, config.batch_size or data.count(splits.test))

    report = {
        "test": results,
        "test_examples": data.count(splits.test),
        "data_source": splits.source,
        "evaluated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    rundir.write_json(run_dir / "evaluation.json", report)
    remote.push(run_dir)
    if as_json:
        ui.print_json(report)
    else:
        ui.console.print(f"[bold]test[/bold] on {splits.source}: {ui.metrics_line(results)}  ({data.count(splits.test)} examples)")
        ui.console.print(f"wrote {run_dir / 'evaluation.json'}")
