"""Folders of audio clips: Free Spoken Digit Dataset-named WAV files (`{digit}_{speaker}_{index}.wav`,
official split: indices 0-4 are the test set; a `recordings/` subfolder is accepted), or class
subfolders of clips (the `keras.utils.audio_dataset_from_directory` layout, `train/` `test/`
optional). Decoding, resampling and mixing down live in `dlcli.data.audio`, shared with `predict`."""

from pathlib import Path

import numpy as np

import dlcli.data.audio as audio
from dlcli.core.errors import DlcliError
from dlcli.data.splits import stratified_split

NAME = "a folder of WAV clips (FSDD-named, or one subfolder per class)"
KIND = "audio"


def detect(path):
    return audio.is_audio_folder(Path(path))


def recognise(path):
    """"spoken_digit" for an FSDD folder (the same clips as tensorflow-datasets' spoken_digit),
    "recordings" for class folders of clips (a user's own voices), else None."""
    try:
        if not detect(path):
            return None
        return "spoken_digit" if audio.layout(Path(path)) == "fsdd" else "recordings"
    except (DlcliError, OSError):
        return None


def describe(path):
    return audio.describe(Path(path))


def load(path, config):
    """(clips, labels, class_names, is_test, speakers or None, source): the raw clips at
    `config.sample_rate`; the speech recipe cuts them to one length and holds out validation."""
    return read_folder(Path(path), config)


def read_folder(path, config):
    """(clips, labels, class_names, is_test, speakers or None, source) of an FSDD or class folder."""
    if audio.layout(path) == "fsdd":
        files, digits, speakers, indices = audio.list_fsdd(path)
        test = split_fsdd(speakers, indices, config.holdout_speaker)
        clips = [audio.read_clip(f, config.sample_rate) for f in files]
        return clips, digits, [str(d) for d in range(int(digits.max()) + 1)], test, speakers, f"FSDD clips in {path}"
    if config.holdout_speaker:
        raise DlcliError(f"holdout_speaker needs FSDD-named clips ({{digit}}_{{speaker}}_{{index}}.wav); {path} holds class folders.")
    if (path / "train").is_dir() and (path / "test").is_dir():
        train_files, train_labels, names = audio.list_class_folders(path / "train")
        test_files, test_labels, _ = audio.list_class_folders(path / "test", names)
        files, labels = train_files + test_files, np.concatenate([train_labels, test_labels])
        test = np.arange(len(files)) >= len(train_files)
    else:
        files, labels, names = audio.list_class_folders(path)
        test = np.zeros(len(files), bool)
        _, (held, _) = stratified_split((np.arange(len(labels)), labels), 0.2, seed=0)
        test[held] = True  # a fixed, stratified 80/20 split, as image folders, text folders and file lists get
    clips = [audio.read_clip(f, config.sample_rate) for f in files]
    return clips, labels, names, test, None, f"audio folder {path}"


def split_fsdd(speakers, indices, holdout_speaker):
    """Which clips are the test set: FSDD's indices 0-4, or every clip of `holdout_speaker`."""
    if not holdout_speaker:
        test = np.isin(indices, audio.FSDD_TEST_INDICES)
        if not test.any() or test.all():
            raise DlcliError("FSDD's official split needs clips with indices 0-4 (test) and 5 or more (train).")
        return test
    known = sorted(set(speakers.tolist()))
    if holdout_speaker.lower() not in known or len(known) < 2:
        raise DlcliError(f"holdout_speaker must be one of {', '.join(known)} (and another speaker to train on). Received: holdout_speaker={holdout_speaker!r}")
    return speakers == holdout_speaker.lower()


