"""Config resolution: defaults < TOML < --set < flags, with typed, checked values."""

import pytest

from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.training import registry

cnn = registry.load("cnn")


def resolve(**kwargs):
    return config_lib.resolve(cnn.Config, "cnn", **kwargs)


def test_defaults_come_from_the_recipe():
    config = resolve()
    assert config == cnn.Config()
    assert config.dataset == "mnist"


def test_overrides_apply_in_order_toml_then_set_then_flags():
    config = resolve(
        toml_values={"epochs": 3, "batch_size": 32, "arch": "tf1"},
        sets={"epochs": "4", "learning_rate": "0.01"},
        flags={"epochs": 5, "batch_size": None},
    )
    assert (config.epochs, config.batch_size, config.arch, config.learning_rate) == (5, 32, "tf1", 0.01)


@pytest.mark.parametrize(
    "sets, message",
    [
        ({"epoch": "3"}, "unknown config key 'epoch' for recipe cnn. Did you mean 'epochs'?"),
        ({"epochs": "three"}, "epochs must be int. Received: epochs='three'"),
        ({"epochs": "1.5"}, "epochs must be int"),
        ({"arch": "resnet"}, "arch must be one of source, tf1, lenet5"),
        ({"learning_rate": "fast"}, "learning_rate must be float"),
        ({"epochs": "0"}, "epochs must be positive. Received: epochs=0"),
        ({"batch_size": "-3"}, "batch_size must be positive (or 0 for the whole training split). Received: batch_size=-3"),
        ({"learning_rate": "0"}, "learning_rate must be positive"),
        ({"validation_split": "1.5"}, "validation_split must be in [0, 1)"),
    ],
)
def test_bad_values_name_the_key_and_what_is_allowed(sets, message):
    with pytest.raises(DlcliError) as e:
        resolve(sets=sets)
    assert message in str(e.value)


def test_unknown_key_lists_the_valid_keys():
    with pytest.raises(DlcliError, match="Valid keys: dataset, data, data_dir, epochs"):
        resolve(sets={"zzz": "1"})


def test_toml_types_are_checked_not_coerced(tmp_path):
    with pytest.raises(DlcliError, match="epochs must be int"):
        resolve(toml_values={"epochs": 2.5})
    with pytest.raises(DlcliError, match="batch_size must be int"):
        resolve(toml_values={"batch_size": True})
    assert resolve(toml_values={"learning_rate": 1}).learning_rate == 1.0


def test_none_values_for_optional_paths():
    assert resolve(sets={"data": "none"}).data is None
    assert resolve(sets={"data": "/tmp/x"}).data == "/tmp/x"


def test_read_toml_reports_the_line_of_a_syntax_error(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("epochs = 3\nbatch_size = = 4\n")
    with pytest.raises(DlcliError, match=r"invalid TOML in .*bad.toml.*line 2"):
        config_lib.read_toml(path)


def test_read_toml_refuses_tables_and_missing_files(tmp_path):
    path = tmp_path / "nested.toml"
    path.write_text("[model]\narch = 'tf1'\n")
    with pytest.raises(DlcliError, match="tables are not supported"):
        config_lib.read_toml(path)
    with pytest.raises(DlcliError, match="config file not found"):
        config_lib.read_toml(tmp_path / "missing.toml")


def test_parse_sets_refuses_pairs_without_equals():
    assert config_lib.parse_sets(["a=1", "b = two=2"]) == {"a": "1", "b": "two=2"}
    with pytest.raises(DlcliError, match="--set expects key=value"):
        config_lib.parse_sets(["epochs"])


def test_dataset_defaults_apply_before_toml_set_and_flags(tmp_path):
    from tests.helpers import write_idx_folder

    defaults = cnn.DATASET_DEFAULTS
    assert config_lib.resolve(cnn.Config, "cnn", flags={"dataset": "fashion_mnist"}, dataset_defaults=defaults).epochs == 15
    assert config_lib.resolve(cnn.Config, "cnn", flags={"dataset": "mnist"}, dataset_defaults=defaults).epochs == 5
    for layer in ("toml_values", "sets", "flags"):
        config = config_lib.resolve(cnn.Config, "cnn", dataset_defaults=defaults, **{layer: {"dataset": "fashion_mnist", "epochs": 3}})
        assert config.epochs == 3, layer
    # A folder named fashion_mnist whose labels are not Fashion-MNIST's keeps the MNIST defaults.
    folder = write_idx_folder(tmp_path / "fashion_mnist")
    assert config_lib.resolve(cnn.Config, "cnn", flags={"data": str(folder)}, dataset_defaults=defaults).epochs == 5


def test_real_fashion_mnist_is_recognised_by_its_labels(shared_data, tmp_path):
    from dlcli.data.sources import idx as data

    assert data.recognise(shared_data / "fashion_mnist") == "fashion_mnist"
    assert data.recognise(shared_data / "mnist") == "mnist"
    renamed = tmp_path / "clothes"  # another name, the same labels (a link: nothing is copied)
    renamed.mkdir()
    (renamed / "train-labels-idx1-ubyte.gz").symlink_to(shared_data / "fashion_mnist" / "train-labels-idx1-ubyte.gz")
    assert data.recognise(renamed) == "fashion_mnist"
    config = config_lib.resolve(cnn.Config, "cnn", flags={"data": str(renamed)}, dataset_defaults=cnn.DATASET_DEFAULTS)
    assert config.epochs == 15


def test_show_prints_the_dataset_defaults():
    from typer.testing import CliRunner

    from dlcli.cli.app import app

    result = CliRunner().invoke(app, ["show", "cnn"])
    assert result.exit_code == 0 and "per-dataset defaults" in result.stdout and "epochs=15" in result.stdout
