"""Texts as users have them: CSV, TSV and JSON Lines with 2 or 5 classes, class folders of .txt
files; trained, evaluated and predicted through the CLI, and bad files refused in one line."""

import csv
import json

import numpy as np
import pytest

from dlcli.data import sources
from recipes import lstm
from tests.helpers import invoke, ok_json

TOPICS = {
    "sport": "goal match team score league coach player referee",
    "food": "recipe soup bread spicy dinner kitchen sauce bake",
    "music": "guitar album concert song band melody drummer tune",
    "tech": "laptop software chip network code server battery app",
    "travel": "flight hotel beach passport museum train island tour",
}
FILLER = "the a today really this was and very so we".split()
QUICK = ["--epochs", 4, "--strategy", "default", "--batch-size", 16, "--set", "units=16", "--set", "embedding_dim=16",
         "--set", "sequence_length=16", "--set", "learning_rate=0.01"]


def messages(n_classes, per_class, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for label in list(TOPICS)[:n_classes]:
        for _ in range(per_class):
            words = [*rng.choice(TOPICS[label].split(), 3), *rng.choice(FILLER, 5)]
            rng.shuffle(words)
            rows.append({"id": str(len(rows)), "message": " ".join(words), "topic": label})
    rng.shuffle(rows)
    return rows


def write_table(path, rows):
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    else:
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, list(rows[0]), delimiter="\t" if path.suffix == ".tsv" else ",")
            writer.writeheader()
            writer.writerows(rows)
    return path


@pytest.mark.parametrize("suffix,n_classes", [(".csv", 2), (".tsv", 5), (".jsonl", 5)])
def test_text_tables_train_predict_evaluate_with_class_names(tmp_path, suffix, n_classes):
    path = write_table(tmp_path / f"messages{suffix}", messages(n_classes, 40))
    run = tmp_path / "run"
    result = ok_json("train", "lstm", "--data", path, *QUICK, "-o", run)
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["class_names"] == sorted(list(TOPICS)[:n_classes])
    assert result["test_examples"] == 8 * n_classes  # a stratified 20%
    assert result["test"]["accuracy"] > 1.5 / n_classes  # learnt, not guessed
    rows = ok_json("predict", run, "goal match team league today", "guitar album concert song")
    assert all(row["class"] in TOPICS for row in rows) and "sentiment" not in rows[0]
    assert rows[0]["class"] == "sport"
    if n_classes == 5:
        assert rows[1]["class"] == "music" and len(rows[0]["top_k"]) == 3
    evaluated = ok_json("evaluate", run)
    assert evaluated["test"]["accuracy"] == pytest.approx(result["test"]["accuracy"])


def test_holdout_keeps_every_class_in_training_and_validation(tmp_path):
    path = write_table(tmp_path / "m.tsv", messages(5, 12))
    splits = lstm.load_data(lstm.Config(data=str(path), validation_split=0.1, sequence_length=8))
    for split in (splits.train, splits.val, splits.test):
        assert set(split[1].tolist()) == set(range(5))
    folder = tmp_path / "folder"
    for split, n in (("train", 10), ("test", 3)):
        for i, row in enumerate(messages(2, n, seed=len(split))):
            (folder / split / row["topic"]).mkdir(parents=True, exist_ok=True)
            (folder / split / row["topic"] / f"{i}.txt").write_text(row["message"])
    splits = lstm.load_data(lstm.Config(data=str(folder), validation_split=0.1, sequence_length=8))
    for split in (splits.train, splits.val, splits.test):
        assert set(np.asarray(split[1]).reshape(-1).tolist()) == {0.0, 1.0}
    assert splits.num_classes == 2 and splits.train[1].shape[1:] == (1,)  # binary: one sigmoid output


def test_class_folders_of_text_files(tmp_path):
    folder = tmp_path / "notes"
    for i, row in enumerate(messages(3, 20)):
        (folder / row["topic"]).mkdir(parents=True, exist_ok=True)
        (folder / row["topic"] / f"{i}.txt").write_text(row["message"])
    (folder / "food" / "image.jpg").write_bytes(b"\xff\xd8\xff")
    facts = ok_json("data", "info", folder)
    assert facts["format"] == sources.text_folder.NAME and facts["classes"] == ["food", "music", "sport"]
    assert facts["skipped"] == {"not a .txt file": 1}
    result = ok_json("train", "lstm", "--data", folder, *QUICK, "-o", tmp_path / "run")
    assert result["test_examples"] == 12


def test_a_text_csv_is_text_for_lstm_and_data_info_a_plain_csv_a_table(tmp_path):
    path = write_table(tmp_path / "m.csv", messages(2, 10))
    assert sources.find(path).KIND == "text" and sources.find(path, {"text"}).KIND == "text"
    facts = ok_json("data", "info", path)
    assert facts["text_column"] == "message" and facts["label_column"] == "topic"
    table = tmp_path / "houses.csv"
    table.write_text("rooms,ocean_proximity,price\n3,NEAR BAY,100\n4,INLAND,120\n")
    assert sources.find(table).KIND == "table"


def test_ambiguous_columns_and_bad_bytes_are_one_line_errors(tmp_path):
    rows = [{"title": "a title about " + r["message"], "summary": r["message"] + " and more words", "a": r["topic"], "b": r["topic"]} for r in messages(2, 10)]
    path = write_table(tmp_path / "two.csv", rows)
    result = invoke("train", "lstm", "--data", path, *QUICK)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "--set text_column=NAME" in result.stderr and "Columns: title, summary, a, b" in result.stderr
    result = invoke("train", "lstm", "--data", path, "--set", "text_column=summary", *QUICK)
    assert result.exit_code == 2 and "--set label_column=NAME" in result.stderr
    result = invoke("train", "lstm", "--data", path, "--set", "text_column=summary", "--set", "label_column=nope", *QUICK)
    assert result.exit_code == 2 and "has no column 'nope' (label_column). Columns: title, summary, a, b" in result.stderr
    bad = tmp_path / "latin1.tsv"
    lines = ["message\ttopic"] + [f"{r['message']}\t{r['topic']}" for r in messages(2, 10)]
    lines[7] = "caf\xe9 au lait is nice really\tfood"
    bad.write_bytes("\n".join(lines).encode("latin-1"))
    result = invoke("train", "lstm", "--data", bad, "--set", "encoding=utf-8", *QUICK)  # forced: the byte is the error
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "latin1.tsv, line 8: byte 0xe9 cannot be read as utf-8; name the file's encoding with --set encoding=NAME" in result.stderr
    splits = lstm.load_data(lstm.Config(data=str(bad), encoding="utf-8", decode_errors="replace", sequence_length=8))
    assert "1 lines with bytes that are not utf-8 (replaced)" in splits.source
    splits = lstm.load_data(lstm.Config(data=str(bad), sequence_length=8))  # encoding=auto: detected, read whole
    assert "read as " in splits.source and not any("\ufffd" in t for t in [*splits.train[0], *splits.test[0]])
