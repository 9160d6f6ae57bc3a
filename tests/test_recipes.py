"""Every recipe, found by name: parametrized over registry.recipe_names(), so a new recipe file
is tested the moment it exists."""

import dataclasses
import math

import pytest
import tensorflow as tf

from dlcli.models import config as config_lib
from dlcli.models.config import TrainConfig
from dlcli.training import loop, registry

NAMES = registry.recipe_names()


@pytest.mark.parametrize("name", NAMES)
def test_recipe_declares_what_the_cli_needs(name):
    recipe = registry.load(name)
    doc = recipe.__doc__ or ""
    assert registry.summary(name) and "Reference" in doc and "Reproduce" in doc and "dlcli train" in doc
    assert issubclass(recipe.Config, TrainConfig) and dataclasses.is_dataclass(recipe.Config)
    assert recipe.Config().dataset in recipe.DATASETS
    assert all(len(pair) == 2 for pair in recipe.MODERNISES)
    config_lib.resolve(recipe.Config, name, toml_values=recipe.QUICK)  # QUICK is a valid override


@pytest.mark.parametrize("strategy", ["default", "mirrored"])
@pytest.mark.parametrize("name", NAMES)
def test_recipe_trains_quickly_under_each_strategy(name, strategy, tmp_path):
    recipe = registry.load(name)
    config = config_lib.resolve(recipe.Config, name, toml_values=recipe.QUICK)
    splits = recipe.load_data(config)
    if strategy == "mirrored":
        dist = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())
    else:
        dist = tf.distribute.get_strategy()
    final = loop.fit(recipe, config, splits, dist, tmp_path).metrics
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert len(history) == 1 + config.epochs
    assert all(math.isfinite(v) for v in final["test"].values())
    losses = [float(line.split(",")[1]) for line in history[1:]]
    assert losses[-1] < losses[0], f"{name} did not learn under {strategy}: losses {losses}"
    assert (tmp_path / "model.keras").is_file()
