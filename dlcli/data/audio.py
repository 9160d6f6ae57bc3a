"""Audio clips from WAV files: read, mix down, resample, pad or crop; find them in folders.

Pure numpy, Python's `wave` module and scipy's polyphase resampler (already installed with
scikit-learn): no audio library to add. Two folder layouts are read:

- FSDD (Free Spoken Digit Dataset): `{digit}_{speaker}_{index}.wav` files in the folder or in
  its `recordings/` subfolder; every name must parse.
- one subfolder per class of .wav files (`keras.utils.audio_dataset_from_directory`), optionally
  inside `train/` and `test/` subfolders.

Stereo (or more channels) is mixed down to mono; other sample rates are resampled. A file that
is not a PCM WAV, or holds no samples, is refused with one line naming it.
"""

import io
import re
import wave
from collections import Counter
from fractions import Fraction
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import printable, utf8_name

AUDIO_EXTENSIONS = {".wav"}
FSDD_NAME = re.compile(r"^(\d+)_([^_]+)_(\d+)\.wav$", re.IGNORECASE)
MIN_RATE, MAX_RATE = 1000, 768000  # real recorders: 8 kHz telephony to 768 kHz studio
FSDD_TEST_INDICES = range(5)  # the official split: recordings 0-4 of each digit and speaker are the test set


def read_wav(path, name=None):
    """(samples, rate) of a PCM WAV file (a path, or the file's bytes, called `name` in errors):
    float32 in [-1, 1], mono (channels averaged)."""
    if isinstance(path, bytes):
        name, path = name or "the clip", io.BytesIO(path)
    else:
        name, path = name or path, str(path)
    try:
        with wave.open(path, "rb") as f:
            channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
            raw = f.readframes(frames)
    except (wave.Error, EOFError, RuntimeError, ValueError) as e:  # the wave module raises RuntimeError on a damaged chunk
        raise DlcliError(f"{name} is not a PCM WAV file ({e or type(e).__name__}).") from None
    except OSError as e:
        raise DlcliError(f"cannot read {name}: {e.strerror or e}") from None
    if width not in (1, 2, 3, 4):
        raise DlcliError(f"{name} has {8 * width}-bit samples; 8, 16, 24 or 32-bit PCM WAV is supported.")
    if not MIN_RATE <= rate <= MAX_RATE:  # a damaged header: resampling from it would need gigabytes
        raise DlcliError(f"{name} declares a sample rate of {rate} Hz; {MIN_RATE}-{MAX_RATE} Hz PCM WAV is supported.")
    frames = len(raw) // (width * channels)
    if frames == 0:
        raise DlcliError(f"{name} is an empty clip (0 samples).")
    raw = raw[: frames * width * channels]
    if width == 1:  # 8-bit WAV is unsigned
        samples = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width == 3:  # 24-bit: widen each little-endian triple to int32
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        samples = ((triples[:, 0] << 8 | triples[:, 1] << 16 | triples[:, 2] << 24) >> 8).astype(np.float32) / 2**23
    else:
        samples = np.frombuffer(raw, f"<i{width}").astype(np.float32) / 2 ** (8 * width - 1)
    return samples.reshape(frames, channels).mean(axis=1), rate


def resample(samples, rate, target):
    """`samples` at `rate` Hz resampled to `target` Hz (polyphase filter: no aliasing)."""
    if rate == target:
        return samples
    from scipy.signal import resample_poly

    # The polyphase filter is ~20 x max(up, down) taps: an odd rate such as 44101 Hz against
    # 16000 Hz would need 882k. The nearest ratio with a denominator up to 1000 is within
    # 0.001% of it here (never worse than 0.1%), a pitch shift far below a voice's own.
    ratio = Fraction(int(target), int(rate)).limit_denominator(1000)
    return resample_poly(samples, ratio.numerator, ratio.denominator).astype(np.float32)


def fit_length(samples, length):
    """Centres the clip in `length` samples: zero-padded both sides, or its middle kept."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return samples[start : start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def read_clip(path, rate, length=None, name=None):
    """The mono clip at `rate` Hz, fitted to `length` samples when given: what the model reads,
    for training, evaluation, predict and serve alike (`path` may be a WAV file's bytes)."""
    samples, file_rate = read_wav(path, name)
    samples = resample(samples, file_rate, rate)
    return samples if length is None else fit_length(samples, length)


# ## Folders of clips


def audio_files(folder):
    found = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS)
    for p in found:
        if not utf8_name(p.name):  # clip names are parsed (FSDD) and printed
            raise DlcliError(f"file name {printable(p)} is not valid UTF-8; rename it, or move it out of {printable(folder)}.")
    return found


def parse_fsdd_name(path):
    """(digit, speaker, index) of an FSDD file name `{digit}_{speaker}_{index}.wav`."""
    match = FSDD_NAME.match(Path(path).name)
    if not match:
        raise DlcliError(f"{path}: the name does not match FSDD's {{digit}}_{{speaker}}_{{index}}.wav (e.g. 3_theo_12.wav).")
    digit, speaker, index = match.groups()
    return int(digit), speaker.lower(), int(index)


def fsdd_folder(path):
    """The folder holding FSDD-style .wav files directly (`path` or `path/recordings`), or None."""
    for folder in (Path(path), Path(path) / "recordings"):
        if folder.is_dir() and audio_files(folder):
            return folder
    return None


def list_fsdd(path):
    """(files, digits, speakers, indices) of an FSDD folder; every file name must parse."""
    files = audio_files(fsdd_folder(path))
    parsed = [parse_fsdd_name(f) for f in files]
    digits, speakers, indices = (np.array(column) for column in zip(*parsed))
    return files, digits.astype(np.int64), speakers, indices


def list_class_folders(root, class_names=None):
    """(files, labels, class_names) of root/<class>/*.wav; needs at least two classes."""
    root = Path(root)
    subfolders = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = class_names or subfolders
    if len(names) < 2:
        raise DlcliError(f"audio folder {root} needs at least two class subfolders of .wav files; found {len(names)}.")
    files, labels = [], []
    for label, name in enumerate(names):
        found = audio_files(root / name) if (root / name).is_dir() else []
        if not found:
            raise DlcliError(f"class folder {root / name} holds no .wav files.")
        files += found
        labels += [label] * len(found)
    return files, np.array(labels, np.int64), names


def is_audio_folder(path):
    """Whether `path` holds .wav clips: FSDD-style, or in class subfolders (under train/ too)."""
    path = Path(path)
    if not path.is_dir():
        return False
    return fsdd_folder(path) is not None or any(
        audio_files(sub) for root in (path, path / "train") if root.is_dir() for sub in root.iterdir() if sub.is_dir()
    )


def layout(path):
    """'fsdd' or 'classes': how the folder `path` holds its clips."""
    path = Path(path)
    if not path.is_dir():
        raise DlcliError(f"--data {path} must be a folder of .wav files (FSDD names) or of class subfolders of .wav files.")
    return "fsdd" if fsdd_folder(path) is not None else "classes"


def describe(path):
    """What `dlcli data info` shows for an audio folder (names and labels only: no decoding)."""
    if layout(path) == "fsdd":
        files, digits, speakers, indices = list_fsdd(path)
        test = np.isin(indices, FSDD_TEST_INDICES)
        return {
            "format": "FSDD spoken digits, {digit}_{speaker}_{index}.wav (speech: --data)",
            "classes": sorted(int(d) for d in set(digits)),
            "speakers": dict(sorted(Counter(speakers.tolist()).items())),
            "splits": {"train": {"examples": int((~test).sum())}, "test (indices 0-4)": {"examples": int(test.sum())}},
            "first_file": _facts(files[0]),
        }
    path = Path(path)
    parts = [("train", path / "train"), ("test", path / "test")] if (path / "train").is_dir() and (path / "test").is_dir() else [("all", path)]
    splits, names = {}, None
    for split, folder in parts:
        files, labels, names = list_class_folders(folder, names)
        splits[split] = {"examples": len(files), "per_class": {names[c]: n for c, n in sorted(Counter(labels.tolist()).items())}}
    return {"format": "audio folder, one subfolder per class (speech: --data)", "classes": names, "splits": splits, "first_file": _facts(files[0])}


def _facts(path):
    samples, rate = read_wav(path)
    return f"{path.name}: {rate} Hz, {len(samples) / rate:.2f} s"
