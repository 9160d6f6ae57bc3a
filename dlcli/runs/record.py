"""The run record and the run folder, typed.

`RunRecord` is what a run knows of itself: the recipe, the resolved config, what the data was
(`DataSpec`), the strategy, versions and command. It is written as RUN_DIR/config.json with a
schema version and read back into the same type, so evaluate, predict, export and plot never
guess from strings. `Run(path)` is a finished run folder, as those commands use it.
"""

import dataclasses
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.runs import rundir

SCHEMA = 2  # 1: the untyped config.json of dlcli 0.1 (no "schema" key), read as well


@dataclass
class DataSpec:
    """What the model was trained on, and what its inputs and outputs mean."""

    kind: str  # images, text, table, series
    source: str  # where the data came from, in words
    input_shape: list
    class_names: list | None = None
    feature_names: list | None = None  # a table's columns, in the model's input order
    target: str | None = None  # what a regression predicts, by name
    # per feature, "number" or "category", for tables read as raw cells: what `predict` checks
    # a CSV against before the model parses it (absent in runs of dlcli before it)
    feature_kinds: list | None = None

    @classmethod
    def of(cls, splits):
        return cls(
            kind=splits.kind, source=splits.source, input_shape=list(splits.input_shape),
            class_names=splits.class_names, feature_names=splits.feature_names, target=splits.target,
            feature_kinds=splits.feature_kinds,
        )


@dataclass
class RunRecord:
    recipe: str
    config: dict
    data: DataSpec
    strategy: dict = field(default_factory=dict)
    versions: dict = field(default_factory=dict)
    command: list = field(default_factory=list)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    schema: int = SCHEMA
    # Vertex AI's CLOUD_ML_JOB_ID when the run is a custom job; optional, so records without it
    # (and readers that do not know it) stay valid under schema 2.
    job_id: str | None = None

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw, where):
        """Reads a record, checking every field's type: a config.json of the wrong shape is one line."""
        def bad(what):
            return DlcliError(f"{where} is not a dlcli run record: {what}. Train a run with `dlcli train`.")

        if not isinstance(raw, dict):
            raise bad(f"it holds a JSON {type(raw).__name__}, not an object")
        if raw.get("schema", 1) == 1:  # dlcli 0.1 kept the data source beside the data facts
            raw = {**raw, "data": {**(raw.get("data") or {}), "source": raw.get("data_source", ""), "kind": ""}}
            raw.pop("data_source", None)
            raw["schema"] = SCHEMA
        if raw.get("schema") != SCHEMA:
            raise bad(f"schema {raw.get('schema')!r} is not one this dlcli reads ({SCHEMA})")
        data = raw.get("data")
        if not isinstance(data, dict):
            raise bad("'data' is missing or not an object")
        spec_fields = {f.name for f in dataclasses.fields(DataSpec)}
        try:
            spec = DataSpec(**{k: v for k, v in data.items() if k in spec_fields})
        except TypeError as e:
            raise bad(f"'data' lacks a field ({e})") from None
        record_fields = {f.name for f in dataclasses.fields(cls)} - {"data"}
        try:
            record = cls(data=spec, **{k: v for k, v in raw.items() if k in record_fields})
        except TypeError as e:
            raise bad(f"a field is missing ({e})") from None
        checks = {
            "recipe": (record.recipe, str), "config": (record.config, dict), "strategy": (record.strategy, dict),
            "data.input_shape": (spec.input_shape, list), "data.source": (spec.source, str), "data.kind": (spec.kind, str),
            "data.class_names": (spec.class_names, (list, type(None))), "data.feature_names": (spec.feature_names, (list, type(None))),
            "data.target": (spec.target, (str, type(None))), "job_id": (record.job_id, (str, type(None))),
            "data.feature_kinds": (spec.feature_kinds, (list, type(None))),
        }
        for name, (value, kind) in checks.items():
            if not isinstance(value, kind):
                raise bad(f"'{name}' is {type(value).__name__}")
        return record

    def write(self, path):
        rundir.write_json(path, self.to_dict())

    @classmethod
    def read(cls, path):
        return cls.from_dict(rundir.read_json(path), path)


@dataclass
class Start:
    """How a `dlcli train` begins in its run folder: continue from a checkpoint, or start anew
    (clearing what an earlier attempt of the same run left), and the line that says which."""

    resume: bool
    clear: bool
    message: str


def auto_resume(run_dir, recipe, config, checkpoints):
    """`--resume auto`: continue when `run_dir` holds a checkpoint of the same recipe and config
    (`config` a dict, compared without the keys a continued run may change), else start fresh.

    Decided from the files alone, before anything is written, so every worker of a cluster
    reading the same shared folder decides alike. Raises DlcliError when the folder holds a run
    of another recipe or config, or files that are not a run.
    """
    run_dir, checkpoints = Path(run_dir), Path(checkpoints)
    if run_dir.exists() and not run_dir.is_dir():
        raise DlcliError(f"--output {run_dir} exists and is not a folder.")
    latest = rundir.latest_checkpoint(checkpoints)
    if not (run_dir / "config.json").is_file():
        if latest:
            raise DlcliError(
                f"{checkpoints} holds checkpoint {latest} but {run_dir} has no config.json to tell which run it belongs to; "
                "pass --overwrite to start anew, or point --output at its run."
            )
        if run_dir.is_dir() and any(run_dir.iterdir()):
            raise DlcliError(
                f"--output {run_dir} holds files that are not a dlcli run (no config.json); "
                "pass --overwrite to replace them, or choose another --output."
            )
        return Start(False, False, f"resume auto: no checkpoint in {checkpoints}; starting a new run in {run_dir}")
    saved = RunRecord.read(run_dir / "config.json")
    if saved.recipe != recipe:
        raise DlcliError(
            f"{run_dir} holds a run of recipe '{saved.recipe}', not '{recipe}'; pass --overwrite to replace it, or choose another --output."
        )
    changed = rundir.config_changes(saved.config, config)
    if changed:
        shown = ", ".join(f"{k}={saved.config.get(k)!r} -> {config.get(k)!r}" for k in changed[:4])
        raise DlcliError(
            f"{run_dir} holds a {recipe} run of another config ({shown}); "
            "pass --overwrite to replace it, or choose another --output."
        )
    if latest:
        return Start(True, False, f"resume auto: continuing the run in {run_dir} from checkpoint {latest}")
    return Start(False, True, f"resume auto: {run_dir} holds this run but no checkpoint yet; starting it anew")


class Run:
    """A finished run folder: config.json (the record) and model.keras, as `dlcli train` left them."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_dir():
            raise DlcliError(f"run folder not found: {self.path}")
        for name in ("config.json", "model.keras"):
            if not (self.path / name).is_file():
                raise DlcliError(
                    f"{self.path} is not a dlcli run folder: it has no {name}. Train one with `dlcli train RECIPE -o {self.path}`."
                )
        self.record = RunRecord.read(self.path / "config.json")

    @property
    def model_path(self):
        return self.path / "model.keras"

    def __repr__(self):
        return f"Run({str(self.path)!r}, recipe={self.record.recipe!r})"
