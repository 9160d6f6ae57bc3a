"""`dlcli data list|download|info`: which data each recipe reads, and what a local file holds."""

import tarfile
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcli import audio, complete, data, registry, ui
from dlcli.errors import DlcliError

app = typer.Typer(help="See, fetch and inspect datasets.", no_args_is_help=True)
GENERATED = {"digits": "bundled with scikit-learn", "synthetic": "generated on the fly"}
DOWNLOADS = {"auto_mpg": "regression"}  # plain-file downloads (not tensorflow-datasets)


def tfds_names():
    """The tensorflow-datasets names the recipes accept."""
    names = {name for recipe in registry.recipe_names() for name in registry.load(recipe).DATASETS}
    return sorted(names - set(GENERATED) - set(DOWNLOADS))


@app.command("list")
def list_command(
    data_dir: Annotated[str | None, typer.Option(help="tensorflow-datasets data dir to look in.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Which datasets each recipe accepts, and which are available here now."""
    import tensorflow_datasets as tfds

    status = {}
    for name in tfds_names():
        prepared = tfds.builder(name, data_dir=data_dir).is_prepared()
        status[name] = "prepared" if prepared else "not downloaded (dlcli data download NAME)"
    status.update(GENERATED)
    status["auto_mpg"] = "cached" if (Path.home() / ".keras" / "datasets" / "auto-mpg.data").is_file() else "not downloaded (or --data FILE)"
    rows = [
        {"recipe": recipe, "dataset": name, "about": about, "here": status.get(name, "")}
        for recipe in registry.recipe_names()
        for name, about in registry.load(recipe).DATASETS.items()
    ]
    if as_json:
        ui.print_json(rows)
        return
    table = Table("recipe", "dataset", "available here", "about", box=None, header_style="bold")
    for row in rows:
        table.add_row(row["recipe"], row["dataset"], row["here"], row["about"])
    ui.console.print(table)
    ui.console.print("Any recipe also reads local files: --data PATH (see `dlcli data info PATH`).")


@app.command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="A dataset name from `dlcli data list`.", autocompletion=complete.datasets)],
    data_dir: Annotated[str | None, typer.Option(help="Where to prepare it [default: $TFDS_DATA_DIR or ~/tensorflow_datasets].")] = None,
):
    """Download and prepare a dataset now, for later offline training."""
    if name == "auto_mpg":
        from recipes.regression import AUTO_MPG_URL

        path = data.download(AUTO_MPG_URL, "auto-mpg.data", "Copy auto-mpg.data here by other means and pass --data FILE.")
        ui.console.print(f"auto_mpg ready at {path}")
        return
    if name not in tfds_names():
        raise DlcliError(f"unknown dataset '{name}'. Downloadable: {', '.join([*tfds_names(), *DOWNLOADS])}.")
    builder = data.tfds_builder(name, data_dir)
    splits = {split: info.num_examples for split, info in builder.info.splits.items()}
    ui.console.print(f"{name} prepared in {builder.data_dir}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))


@app.command("info")
def info_command(
    path: Annotated[Path, typer.Argument(help="A local dataset: IDX folder, image or audio folder, aclImdb folder/tarball, CSV.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
):
    """What dlcli sees in a local file or folder: format, splits, examples, classes."""
    if not path.exists():
        raise DlcliError(f"not found: {path}")
    facts = describe(path)
    if as_json:
        ui.print_json(facts)
        return
    ui.console.print(f"[bold]{path}[/bold]: {facts['format']}")
    for split, about in facts.get("splits", {}).items():
        ui.console.print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in about.items()))
    for key, value in facts.items():
        if key not in ("format", "splits"):
            ui.console.print(f"  {key}: {value}")


def describe(path):
    """A dict describing a local dataset, as the recipes would read it."""
    if path.is_dir() and data.find_idx(path, data.IDX_FILES["train"][0]) is not None:
        splits = data.read_idx_folder(path)
        return {
            "format": "MNIST-format IDX files (cnn, softmax, rnn, autoencoder: --data)",
            "image_shape": list(splits["train"][0].shape[1:]),
            "classes": sorted(int(c) for c in set(splits["train"][1]) | set(splits["test"][1])),
            "splits": {
                name: {"examples": len(y), "per_class": dict(sorted(Counter(int(c) for c in y).items()))}
                for name, (_, y) in splits.items()
            },
        }
    reviews = count_reviews(path)
    if reviews:
        return {"format": "aclImdb movie reviews (lstm: --data)", "classes": ["neg", "pos"], "splits": reviews}
    if audio.is_audio_folder(path):
        return audio.describe(path)
    if path.is_dir():
        (x_train, y_train), (x_test, y_test), names = data.read_image_folder(path)
        return {
            "format": "image folder, one subfolder per class (cnn, softmax, rnn, autoencoder: --data)",
            "image_shape": list(x_train.shape[1:]),
            "classes": names,
            "splits": {
                split: {"examples": len(y), "per_class": {names[c]: n for c, n in sorted(Counter(y.tolist()).items())}}
                for split, y in (("train", y_train), ("test", y_test))
            },
        }
    if path.suffix.lower() == ".csv":
        header, rows = data.read_csv(path)
        numeric = [name for i, name in enumerate(header) if all(_numeric_or_missing(r[i] if i < len(r) else "") for r in rows)]
        missing = sum(any((r[i] if i < len(r) else "").strip().lower() in data.MISSING for i in range(len(header))) for r in rows)
        return {
            "format": "CSV table (regression: --set target=COLUMN; forecast: --set column=NAME)",
            "rows": len(rows), "columns": header, "numeric_columns": numeric, "rows_with_missing_values": missing,
        }
    from recipes.regression import read_auto_mpg

    x, _, names, source = read_auto_mpg(path)
    return {"format": "UCI Auto MPG file (regression: --data)", "rows": len(x), "features": names, "about": source}


def _numeric_or_missing(cell):
    cell = cell.strip()
    if cell.lower() in data.MISSING:
        return True
    try:
        float(cell)
        return True
    except ValueError:
        return False


def count_reviews(path):
    """{split: {"pos": n, "neg": n}} for an aclImdb folder, tarball or folder of tarballs; {} if none."""
    from dlcli.text import review_files

    if path.is_file() and not tarfile.is_tarfile(path):
        return {}
    counts = Counter((split, label) for split, label, _, _ in review_files(path))
    if not counts:
        return {}
    return {split: {"examples": counts[(split, "pos")] + counts[(split, "neg")], "pos": counts[(split, "pos")], "neg": counts[(split, "neg")]}
            for split in ("train", "test")}
