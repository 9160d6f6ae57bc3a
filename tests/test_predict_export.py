"""`dlcli predict` and `dlcli export`: raw inputs in, and the same answers from every export."""

import shutil

import keras
import numpy as np
import pytest
import tensorflow as tf

from dlcli.data import load_digits
from tests.helpers import assert_one_line_error, invoke, ok_json, write_png


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("predict") / "run"
    ok_json("train", "cnn", "--dataset", "digits", "--epochs", 4, "--strategy", "default", "-o", run_dir)
    return run_dir


@pytest.fixture(scope="module")
def pngs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pngs")
    _, (x, y) = load_digits()
    paths = [folder / f"digit{i}_label{y[i]}.png" for i in range(3)]
    for path, image in zip(paths, x):
        write_png(path, image)
    return paths


def test_predict_then_export_to_every_format_gives_the_same_classes(digits_run, pngs):
    rows = ok_json("predict", digits_run, *pngs, "--top-k", 2)
    classes = [row["class"] for row in rows]
    assert all(len(row["top_k"]) == 2 and 0 < row["probability"] <= 1 for row in rows)
    correct = sum(row["class"] == str(path.stem.split("label")[1]) for row, path in zip(rows, pngs))
    assert correct >= 2
    for fmt, name in (("keras", "model.keras"), ("savedmodel", "savedmodel"), ("tflite", "model.tflite")):
        result = invoke("export", digits_run, "--format", fmt)
        assert result.exit_code == 0, result.output
        exported = ok_json("predict", digits_run / "export" / name, *pngs, "--top-k", 2)
        assert [row["class"] for row in exported] == classes, fmt
        for a, b in zip(rows, exported):
            assert a["probability"] == pytest.approx(b["probability"], abs=1e-3), fmt


def test_an_export_works_without_its_run_folder(digits_run, pngs, tmp_path):
    target = tmp_path / "shipped" / "digits.keras"
    assert invoke("export", digits_run, "--format", "keras", "-o", target).exit_code == 0
    assert (tmp_path / "shipped" / "digits.keras.json").is_file()
    assert len(ok_json("predict", target, pngs[0])) == 1


def test_colour_and_odd_sized_images_are_converted(digits_run, tmp_path):
    _, (x, _) = load_digits()
    path = tmp_path / "colour.png"
    write_png(path, np.repeat(np.kron(x[0, :, :, 0], np.ones((2, 2), np.uint8))[..., None], 3, axis=2))  # 56x56 RGB
    assert ok_json("predict", digits_run, path)[0]["class"] in [str(i) for i in range(10)]


def test_predict_and_export_refuse_bad_input(digits_run, tmp_path):
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert_one_line_error(invoke("predict", digits_run, text), "notes.png is not a readable image")
    assert_one_line_error(invoke("predict", digits_run, tmp_path / "missing.png"), "input image not found")
    assert_one_line_error(invoke("predict", tmp_path / "nowhere", text), "not found")
    assert_one_line_error(invoke("predict", digits_run, text, "--top-k", 0), "--top-k must be a positive integer")
    assert_one_line_error(invoke("export", tmp_path, "--format", "keras"), "is not a dlcli run folder")
    assert_one_line_error(invoke("export", digits_run, "--format", "pb"), "--format")
    invoke("export", digits_run, "--format", "keras")
    assert_one_line_error(invoke("export", digits_run, "--format", "keras"), "already exists; pass --overwrite")


def test_a_model_with_code_in_it_is_refused_unless_unsafe(digits_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    inputs = keras.Input((28, 28, 1))
    outputs = keras.layers.Dense(10)(keras.layers.Flatten()(keras.layers.Lambda(lambda x: x * 2.0)(inputs)))
    keras.Model(inputs, outputs).save(run_dir / "model.keras")
    image = tmp_path / "x.png"
    write_png(image, np.zeros((28, 28)))
    for args in (["predict", run_dir, image], ["export", run_dir, "--format", "keras", "-o", tmp_path / "e.keras"], ["evaluate", run_dir]):
        assert_one_line_error(invoke(*args), "safe mode")
    assert invoke("predict", run_dir, image, "--unsafe").exit_code == 0


def test_a_truncated_model_file_is_a_clear_error(digits_run, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(digits_run, run_dir)
    data = (run_dir / "model.keras").read_bytes()
    (run_dir / "model.keras").write_bytes(data[: len(data) // 2])
    image = tmp_path / "x.png"
    write_png(image, np.zeros((28, 28)))
    assert_one_line_error(invoke("predict", run_dir, image), "cannot load")


def test_sentiment_savedmodel_answers_a_raw_string(tmp_path):
    run_dir = tmp_path / "lstm"
    ok_json("train", "lstm", "--dataset", "synthetic", "--epochs", 3, "--set", "sequence_length=32", "--set", "units=16",
            "--set", "embedding_dim=16", "--learning-rate", 5e-3, "--strategy", "default", "-o", run_dir)
    assert invoke("export", run_dir, "--format", "savedmodel").exit_code == 0
    served = tf.saved_model.load(str(run_dir / "export" / "savedmodel"))
    scores = served.serve(tf.constant(["great wonderful superb film", "awful boring dull film"])).numpy()
    assert scores.shape == (2, 1) and 0 <= scores.min() and scores.max() <= 1
    assert scores[0, 0] > 0.5 > scores[1, 0]
    review = tmp_path / "review.txt"
    review.write_text("a superb and moving film with great acting")
    rows = ok_json("predict", run_dir / "export" / "savedmodel", "dull and tedious", review)
    assert [row["class"] for row in rows] == ["negative", "positive"]


def test_regression_forecast_and_autoencoder_predict_from_files(tmp_path):
    reg = tmp_path / "reg"
    ok_json("train", "regression", "--set", "steps_per_epoch=100", "--epochs", 2, "-o", reg)
    table = tmp_path / "rows.csv"
    table.write_text("x0,x1,x2\n0,0,0\n1,2,3\n")
    rows = ok_json("predict", reg, table)
    assert [row["input"] for row in rows] == [f"{table}:2", f"{table}:3"] and all("y" in row for row in rows)

    fc = tmp_path / "fc"
    ok_json("train", "forecast", "--epochs", 1, "--set", "length=600", "--set", "units=8", "-o", fc)
    series = tmp_path / "series.csv"
    series.write_text("value\n" + "\n".join(str(10 + 2 * np.sin(2 * np.pi * t / 24)) for t in range(60)))
    (row,) = ok_json("predict", fc, series)
    assert 5 < row["next_value"] < 15
    short = tmp_path / "short.csv"
    short.write_text("value\n1\n2\n")
    assert_one_line_error(invoke("predict", fc, short), "the model reads the last 48")

    ae = tmp_path / "ae"
    ok_json("train", "autoencoder", "--dataset", "digits", "--epochs", 1, "-o", ae)
    _, (x, _) = load_digits()
    write_png(tmp_path / "seven.png", x[0])
    (row,) = ok_json("predict", ae, tmp_path / "seven.png", "--output", tmp_path / "recon")
    assert (tmp_path / "recon" / "seven.reconstruction.png").is_file() and row["mse"] < 0.2
