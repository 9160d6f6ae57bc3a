"""Image folders as users have them: every layout, mixed sizes, modes and formats, streamed
from disk; trained, evaluated and predicted through the CLI."""

import json

import numpy as np
import pytest

from dlcli import data
from dlcli.data.sources import image_folder
from dlcli.models import safe_model
from recipes.cnn import Config
from tests.helpers import invoke, ok_json, write_messy_images

CLASSES = ("cat", "dog", "owl")


def make_layout(root, folders, per_class=8):
    """`folders` of class subfolders under root ("" = the class folders directly in root)."""
    for seed, name in enumerate(folders):
        write_messy_images(root / name if name else root, CLASSES, per_class, seed=seed)
    return root


LAYOUTS = {
    "classes only": [""],
    "train": ["train"],
    "train test": ["train", "test"],
    "train val": ["train", "val"],
    "train validation test": ["train", "validation", "test"],
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_every_layout_trains_and_validates_on_every_class(tmp_path, layout):
    root = make_layout(tmp_path / "pics", LAYOUTS[layout])
    splits = data.load_images(Config(data=str(root), validation_split=0.2))
    assert splits.class_names == list(CLASSES) and splits.num_classes == 3
    for split in (splits.train, splits.val, splits.test):
        assert isinstance(split, data.Files)
        assert set(split.targets.tolist()) == {0, 1, 2}  # every class trained on, validated, tested
    every = np.concatenate([splits.train.paths, splits.val.paths, splits.test.paths])
    assert len(set(every)) == len(every)  # no image in two splits
    if layout == "train validation test":  # the data's own validation folder is used as it is
        assert all("/validation/" in p for p in splits.val.paths)
    if layout == "train val":  # val/ serves as the test set, validation is held out of train/
        assert all("/val/" in p for p in splits.test.paths) and all("/train/" in p for p in splits.val.paths)


def test_data_info_names_the_layout_the_test_set_and_what_is_skipped(tmp_path):
    root = make_layout(tmp_path / "pics", ["train", "val"])
    (root / "train" / "cat" / "readme.txt").write_text("notes")
    facts = ok_json("data", "info", root)
    assert facts["layout"].startswith("train/ + val/") and facts["test_set"] == "val/"
    assert facts["splits"]["train"]["per_class"] == {"cat": 8, "dog": 8, "owl": 8}
    assert {"RGB", "RGBA", "P", "L", "I;16"} <= set(facts["modes_seen"])
    assert facts["image_shape"] == [16, 16, 3] and "readme.txt" in json.dumps(facts["skipped"])
    assert facts["read_by"] and "cnn" in facts["read_by"]


def test_one_conversion_for_every_mode_and_format(tmp_path):
    from PIL import Image

    base = np.random.default_rng(0).integers(0, 255, (10, 14, 3)).astype(np.uint8)
    rgb = Image.fromarray(base)
    grey = np.asarray(rgb.convert("L"))
    files = {"a.png": rgb, "b.webp": rgb, "c.tif": rgb, "d.bmp": rgb, "e.png": rgb.convert("RGBA")}
    for name, image in files.items():
        image.save(tmp_path / name, **({"lossless": True} if name.endswith("webp") else {}))
    Image.fromarray(grey.astype(np.uint16) * 257).save(tmp_path / "g16.png")
    decode = image_folder.decoder((10, 14, 3))
    for name in files:
        np.testing.assert_array_equal(decode(str(tmp_path / name)).numpy(), base, err_msg=name)
    np.testing.assert_array_equal(decode(str(tmp_path / "g16.png")).numpy()[..., 0], grey)
    grey_decode = image_folder.decoder((5, 7, 1))
    assert grey_decode(str(tmp_path / "c.tif")).shape == (5, 7, 1)
    for mode in ("crop", "pad"):
        out = image_folder.decoder((8, 8, 3), mode)(str(tmp_path / "a.png")).numpy()
        assert out.shape == (8, 8, 3)
    padded = image_folder.decoder((14, 14, 3), "pad")(str(tmp_path / "a.png")).numpy()
    assert padded[:2].max() == 0 and padded[2:12].max() > 0  # bars above and below a wide picture


def test_train_evaluate_predict_on_a_messy_folder(tmp_path):
    root = make_layout(tmp_path / "pics", ["train", "test"], per_class=10)
    run = tmp_path / "run"
    result = invoke("train", "cnn", "--data", root, "--epochs", 3, "--batch-size", 8, "--strategy", "default",
                    "--set", "image_size=12x12", "--set", "resize=crop", "--set", "learning_rate=0.01", "-o", run)
    assert result.exit_code == 0, result.output
    assert "12x12x3 (crop)" in result.output  # the input size is said at the start
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["input_shape"] == [12, 12, 3] and config["config"]["resize"] == "crop"
    assert config["data"]["class_names"] == list(CLASSES)
    metrics = json.loads((run / "metrics.json").read_text())
    evaluated = ok_json("evaluate", run)
    assert evaluated["test"]["accuracy"] == pytest.approx(metrics["test"]["accuracy"])
    # predict converts files the way training did: the same classes as the model on decoded batches
    tests = sorted((root / "test").rglob("*.*"))
    rows = ok_json("predict", run, *tests)
    assert {row["class"] for row in rows} <= set(CLASSES)
    model = safe_model.load_keras(run / "model.keras")
    decode = image_folder.decoder((12, 12, 3), "crop")
    batch = np.stack([decode(str(p)).numpy() for p in tests])
    assert [row["class"] for row in rows] == [CLASSES[i] for i in model.predict(batch, verbose=0).argmax(-1)]
    truth = [p.parent.name for p in tests]
    assert np.mean([row["class"] == t for row, t in zip(rows, truth)]) == pytest.approx(metrics["test"]["accuracy"], abs=1e-6)
    assert (run / "confusion_matrix.csv").is_file() and (run / "samples.png").is_file()


def test_unreadable_images_one_line_or_skipped_and_counted(tmp_path):
    root = make_layout(tmp_path / "pics", [""], per_class=6)
    (root / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 20)  # a JPEG cut short
    result = invoke("train", "cnn", "--data", root, "--epochs", 1, "--strategy", "default", "-o", tmp_path / "r1")
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "broken.jpg is not a readable image" in result.stderr and "skip_bad=true" in result.stderr
    result = invoke("train", "cnn", "--data", root, "--epochs", 1, "--strategy", "default", "--set", "skip_bad=true",
                    "--batch-size", 4, "-o", tmp_path / "r2")
    assert result.exit_code == 0, result.output
    assert "1 skipped: unreadable image" in result.output


def test_autoencoder_reads_image_files_too(tmp_path):
    root = make_layout(tmp_path / "pics", ["train", "test"], per_class=6)
    result = ok_json("train", "autoencoder", "--data", root, "--epochs", 1, "--batch-size", 6, "--strategy", "default",
                     "--set", "latent=4", "-o", tmp_path / "run")
    assert result["report"]["test_mse"] > 0 and "reconstructions.png" in result["pictures"]


def test_augmentation_is_a_cnn_setting_active_only_in_training():
    from recipes import cnn

    splits = data.Splits(train=None, val=None, test=None, input_shape=(16, 16, 3), source="", num_classes=3)
    plain = cnn.build_model(cnn.Config(), splits)
    model = cnn.build_model(cnn.Config(augment=True), splits)
    names = [layer.__class__.__name__ for layer in model.layers]
    assert {"RandomFlip", "RandomRotation", "RandomZoom"} <= set(names)
    assert not {"RandomFlip", "RandomRotation", "RandomZoom"} & {l.__class__.__name__ for l in plain.layers}
    x = np.random.default_rng(0).integers(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(model(x, training=False), model(x, training=False))
    augmented = x / 255
    for layer in model.layers[2:5]:
        augmented = layer(augmented, training=True)
    assert not np.allclose(augmented, x / 255)  # in training the flip, rotation and zoom change pictures


def test_cache_memory_holds_the_same_pixels_as_streaming(tmp_path):
    root = make_layout(tmp_path / "pics", ["train", "test"], per_class=5)
    streamed = data.load_images(Config(data=str(root), validation_split=0.2))
    cached = data.load_images(Config(data=str(root), validation_split=0.2, cache="memory"))
    assert isinstance(cached.train, tuple) and "cache=memory" in cached.source
    for a, b in ((streamed.train, cached.train), (streamed.val, cached.val), (streamed.test, cached.test)):
        x, y = data.arrays(a)
        np.testing.assert_array_equal(x, b[0])
        np.testing.assert_array_equal(y, b[1])


def test_a_file_list_of_images_and_labels_trains_like_a_folder(tmp_path):
    root = make_layout(tmp_path / "pics", [""], per_class=8)
    files = sorted(p for p in root.rglob("*") if p.is_file())
    listing = tmp_path / "labels.csv"
    listing.write_text("path,label\n" + "".join(f"{p.relative_to(tmp_path)},{p.parent.name}\n" for p in files))
    tsv = tmp_path / "abs.tsv"
    tsv.write_text("".join(f"{p}\t{p.parent.name}\n" for p in files))
    for data_path in (listing, tsv):
        splits = data.load_images(Config(data=str(data_path), validation_split=0.2))
        assert splits.class_names == list(CLASSES) and isinstance(splits.train, data.Files)
        for split in (splits.train, splits.val, splits.test):
            assert set(split.targets.tolist()) == {0, 1, 2}
    info = ok_json("data", "info", listing)
    assert info["layout"].startswith("a file list") and info["splits"]["all"]["examples"] == len(files)
    run = tmp_path / "run"
    result = invoke("train", "cnn", "--data", listing, "--epochs", 1, "--batch-size", 4, "--strategy", "default", "-o", run)
    assert result.exit_code == 0, result.output
    with listing.open("a") as f:
        f.write("pics/cat/missing.png,cat\n")
    result = invoke("train", "cnn", "--data", listing, "--epochs", 1, "-o", tmp_path / "r2")
    assert result.exit_code == 2 and "line 26: " in result.stderr and "missing.png is not a readable image (not found)" in result.stderr, result.output
