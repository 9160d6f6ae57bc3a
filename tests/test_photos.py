"""The photo network against MNIST's on a folder of photo-like pictures built from Fashion-MNIST
(benchmarks/photo_folder.py: 250 training and 150 test pictures of two classes, ~200 sizes, colour
and grey, JPEG/PNG/WebP). A long real-data run: `pytest -m slow`."""

import json

import pytest

from benchmarks.photo_folder import build
from tests.helpers import invoke

pytestmark = pytest.mark.slow


def test_the_photo_network_learns_where_mnists_cannot(shared_data, tmp_path):
    photos = build(tmp_path / "photos")
    result = invoke("train", "cnn", "--data", photos, "-o", tmp_path / "photo", "--json")  # the defaults: the photo network
    assert result.exit_code == 0, result.output[-3000:]
    photo = json.loads(result.stdout)["test"]["accuracy"]
    # What cnn did with a photo folder before it had a photo network: MNIST's, with its settings.
    result = invoke("train", "cnn", "--data", photos, "--set", "arch=source", "--set", "augment=false", "--set", "learning_rate=3e-3",
                    "--set", "dropout=0.25", "--batch-size", 128, "--epochs", 15, "-o", tmp_path / "mnist", "--json")
    assert result.exit_code == 0, result.output[-3000:]
    mnist = json.loads(result.stdout)["test"]["accuracy"]
    print(f"test accuracy: photo network {photo:.4f}, MNIST's network {mnist:.4f}")  # the figures, with pytest -s
    assert photo >= 0.65 and photo >= mnist + 0.1, (photo, mnist)
