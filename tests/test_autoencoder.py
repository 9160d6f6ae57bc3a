"""The autoencoder recipe: its PCA baseline and its picture."""

import numpy as np
import tensorflow as tf

from dlcli.models import config as config_lib
from dlcli.training import artifacts, loop, registry

autoencoder = registry.load("autoencoder")


def test_reports_the_pca_baseline_and_writes_a_readable_grid(tmp_path):
    config = config_lib.resolve(autoencoder.Config, "autoencoder", toml_values=autoencoder.QUICK)
    splits = autoencoder.load_data(config)
    result = loop.fit(autoencoder, config, splits, tf.distribute.get_strategy(), tmp_path)
    final = artifacts.write(autoencoder, config, splits, tmp_path, result.metrics)
    assert "reconstructions.png" in final["pictures"]  # the report's pictures are listed
    report = final["report"]
    assert report["test_mse"] == np.float32(final["test"]["loss"]) or abs(report["test_mse"] - final["test"]["loss"]) < 1e-5
    assert 0 < report["pca32_test_mse"] < 0.1
    image = tf.io.decode_png((tmp_path / "reconstructions.png").read_bytes()).numpy()
    assert image.shape == (56, 280, 1) and image.max() > 0
