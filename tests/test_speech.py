"""The speech recipe and dlcli/data/audio.py: WAV decoding, folder layouts, splits, predict, bad input."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.core.errors import DlcliError
from dlcli.data import audio
from dlcli.data.sources import audio_folder
from dlcli.data.sources import tfds as tfds_source
from dlcli.models import config as config_lib
from dlcli.models import safe_model
from dlcli.runs.record import DataSpec, RunRecord
from recipes import speech
from tests.helpers import tone, write_wav

runner = CliRunner()
PITCHES = {"low": 400, "mid": 1000, "high": 2500}


def resolve(**values):
    return config_lib.resolve(speech.Config, "speech", toml_values=values)


def write_fsdd(folder, digits=(0, 1), speakers=("alice", "bob", "carol"), indices=range(7)):
    """FSDD-named tones: digit d is a tone of 500 * (d + 1) Hz."""
    for d in digits:
        for s in speakers:
            for i in indices:
                write_wav(folder / f"{d}_{s}_{i}.wav", tone(500 * (d + 1), 0.2 + 0.01 * i, seed=i))
    return folder


def one_error_line(result):
    lines = result.stderr.strip().splitlines()
    assert result.exit_code == 2 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    return lines[0]


def test_read_wav_mixes_down_resamples_and_reads_every_pcm_width(tmp_path):
    left_only = np.stack([tone(440, 0.5), np.zeros(4000)], axis=1)
    samples, rate = audio.read_wav(write_wav(tmp_path / "stereo.wav", left_only, channels=2))
    assert rate == 8000 and samples.shape == (4000,) and samples.dtype == np.float32
    assert np.allclose(samples, left_only.mean(axis=1), atol=1e-3)  # stereo is averaged to mono
    for width in (1, 2, 3, 4):
        samples, _ = audio.read_wav(write_wav(tmp_path / f"w{width}.wav", tone(440, 0.1), width=width))
        assert np.allclose(samples, tone(440, 0.1), atol=0.02), width
    clip = audio.read_clip(write_wav(tmp_path / "cd.wav", tone(440, 0.5, rate=44100), rate=44100), 8000)
    assert len(clip) == 4000  # 44.1 kHz resampled to 8 kHz, pitch kept:
    assert abs(np.argmax(np.abs(np.fft.rfft(clip))) * 8000 / len(clip) - 440) < 5


def test_odd_and_damaged_sample_rates_resample_in_bounded_memory_or_are_refused(tmp_path):
    # 44101 Hz against 8 kHz is coprime: an exact polyphase filter would need ~880k taps.
    clip = audio.read_clip(write_wav(tmp_path / "odd.wav", tone(440, 0.5, rate=44101), rate=44101), 8000)
    assert abs(len(clip) - 4000) <= 1 and abs(np.argmax(np.abs(np.fft.rfft(clip))) * 8000 / len(clip) - 440) < 5
    for rate in (1, 2**31 - 1):  # a damaged header: resampling from it would take gigabytes
        path = write_wav(tmp_path / f"r{rate}.wav", tone(440, 0.01), rate=8000)
        raw = bytearray(path.read_bytes())
        raw[24:28] = rate.to_bytes(4, "little")  # the fmt chunk's sample rate
        path.write_bytes(bytes(raw))
        with pytest.raises(DlcliError, match=f"declares a sample rate of {rate} Hz"):
            audio.read_clip(path, 8000)


def test_clips_are_centred_and_padded_or_cropped():
    assert audio.fit_length(np.ones(3, np.float32), 7).tolist() == [0, 0, 1, 1, 1, 0, 0]
    assert audio.fit_length(np.arange(10, dtype=np.float32), 4).tolist() == [3, 4, 5, 6]


def test_fsdd_official_split_and_leave_one_speaker_out(tmp_path):
    write_fsdd(tmp_path / "fsdd" / "recordings")  # the recordings/ subfolder is found
    splits = speech.load_data(resolve(data=str(tmp_path / "fsdd"), validation_split=0.2))
    assert len(splits.test[0]) == 2 * 3 * 5 and len(splits.train[0]) + len(splits.val[0]) == 2 * 3 * 2
    assert splits.class_names == ["0", "1"] and np.bincount(splits.val[1]).tolist() == [1, 1]  # stratified
    assert splits.input_shape == (int(0.3 * 8000),)  # the 99th percentile (0.26 s) rounded up

    config = resolve(data=str(tmp_path / "fsdd"), holdout_speaker="bob", validation_split=0.2)
    files, _, speakers, _ = audio.list_fsdd(tmp_path / "fsdd")
    test = audio_folder.split_fsdd(speakers, np.zeros(len(files)), "bob")
    assert set(speakers[test]) == {"bob"} and test.sum() == 2 * 7
    splits = speech.load_data(config)
    assert len(splits.test[0]) == 14 and len(splits.train[0]) == 14 and len(splits.val[0]) == 14  # carol validates
    fit, val = speech.holdout(np.zeros(6, int), np.array(["a", "a", "b", "b", "c", "c"]), 0.2)
    assert fit.tolist() == [0, 1, 2, 3] and val.tolist() == [4, 5]  # whole speakers, never split
    with pytest.raises(DlcliError, match="holdout_speaker must be one of alice, bob, carol"):
        speech.load_data(resolve(data=str(tmp_path / "fsdd"), holdout_speaker="dave"))


def test_class_folders_of_mixed_lengths_and_rates_train_and_predict_from_wav(tmp_path):
    root = tmp_path / "words"
    for name, pitch in PITCHES.items():
        for i in range(16):
            rate = (8000, 16000, 22050)[i % 3]
            write_wav(root / name / f"{i}.wav", tone(pitch * (1 + 0.01 * (i % 4)), 0.15 + 0.02 * (i % 5), rate=rate, seed=i), rate=rate)
    run = tmp_path / "run"
    result = runner.invoke(app, [
        "train", "speech", "--data", str(root), "--epochs", "12", "--batch-size", "8", "-o", str(run), "--json",
        "--set", "num_mel_bins=32", "--set", "learning_rate=3e-3", "--set", "validation_split=0",
        # Tones, not voices: the per-band normalisation that own recordings get by default would
        # remove a steady tone, so these take FSDD's settings (speech.SEEN_VOICES).
        "--set", "band_norm=false", "--set", "warp=0", "--set", "head=flatten",
    ])
    assert result.exit_code == 0, result.output[-3000:]
    final = json.loads(result.stdout)
    assert final["test_examples"] == round(0.2 * 48)  # a stratified 20%: 3 or 4 of each class's 16
    assert final["test"]["accuracy"] >= 0.75, final["test"]
    assert (run / "spectrograms.png").is_file() and (run / "confusion_matrix.png").is_file()
    clips = [write_wav(tmp_path / f"{name}.wav", tone(pitch, 0.3, rate=16000, seed=99), rate=16000) for name, pitch in PITCHES.items()]
    result = runner.invoke(app, ["predict", str(run), *map(str, clips), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["input"] for row in rows] == list(map(str, clips))
    assert sum(row["class"] == name for row, name in zip(rows, PITCHES)) >= 2, rows


@pytest.mark.parametrize("unseen_speaker_settings", [{}, {"head": "time_pool", "warp": 0.2}])
def test_synthetic_tones_are_learned(tmp_path, unseen_speaker_settings):
    import tensorflow as tf

    from dlcli.training import loop

    config = config_lib.resolve(speech.Config, "speech", toml_values={**speech.QUICK, **unseen_speaker_settings})
    splits = speech.load_data(config)
    result = loop.fit(speech, config, splits, tf.distribute.get_strategy(), tmp_path)
    assert result.metrics["test"]["accuracy"] >= 0.9, result.metrics["test"]
    saved = safe_model.load_keras(tmp_path / "model.keras")  # safe mode: built-in layers only
    clips = splits.test[0][:4]
    assert np.allclose(saved.predict(clips, verbose=0), result.model.predict(clips, verbose=0), atol=1e-5)


def write_bad(tmp_path, case):
    """A folder that speech must refuse, and the words its error must hold."""
    root = tmp_path / case
    for name, pitch in PITCHES.items():
        for i in range(3):
            write_wav(root / name / f"{i}.wav", tone(pitch, 0.2))
    if case == "not_audio":
        (root / "low" / "0.wav").write_bytes(b"this is not a RIFF file at all")
        return root, ["low/0.wav", "not a PCM WAV"]
    if case == "empty":
        write_wav(root / "mid" / "1.wav", np.zeros(0))
        return root, ["mid/1.wav", "empty clip"]
    if case == "one_class":
        root = tmp_path / "single"
        write_wav(root / "only" / "0.wav", tone(400, 0.2))
        return root, ["single", "at least two class subfolders"]
    if case == "fsdd_name":
        root = write_fsdd(tmp_path / "fsdd", speakers=("alice",), indices=range(6))
        write_wav(root / "seven_alice_1.wav", tone(400, 0.2))
        return root, ["seven_alice_1.wav", "{digit}_{speaker}_{index}.wav"]
    if case == "fsdd_one_digit":
        return write_fsdd(tmp_path / "threes", digits=(3,)), ["threes", "one class only (3)"]
    raise ValueError(case)


@pytest.mark.parametrize("case", ["not_audio", "empty", "one_class", "fsdd_name", "fsdd_one_digit"])
def test_bad_audio_is_one_line_naming_the_file(case, tmp_path):
    root, words = write_bad(tmp_path, case)
    line = one_error_line(runner.invoke(app, ["train", "speech", "--data", str(root), "-o", str(tmp_path / "run"), "--epochs", "1"]))
    assert all(word in line for word in words), line


def test_predict_refuses_a_file_that_is_not_audio(tmp_path):
    clip = tmp_path / "clip.wav"
    clip.write_bytes(b"\x00" * 100)
    info = RunRecord(recipe="speech", config={"sample_rate": 8000}, data=DataSpec(kind="audio", source="clips", input_shape=[800]))
    with pytest.raises(DlcliError, match="clip.wav is not a PCM WAV file"):
        speech.read_inputs(info, [str(clip)])
    with pytest.raises(DlcliError, match="input clip not found"):
        speech.read_inputs(info, [str(tmp_path / "missing.wav")])


def test_spoken_digit_offline_fails_with_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    line = one_error_line(runner.invoke(app, ["train", "speech", "--dataset", "spoken_digit", "--data-dir", str(tmp_path), "-o", str(tmp_path / "run")]))
    assert "spoken_digit" in line and "cannot be downloaded" in line


def test_data_info_describes_an_fsdd_folder(tmp_path):
    write_fsdd(tmp_path / "fsdd")
    result = runner.invoke(app, ["data", "info", str(tmp_path / "fsdd"), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["speakers"] == {"alice": 14, "bob": 14, "carol": 14} and facts["splits"]["test (indices 0-4)"]["examples"] == 30


def test_spoken_digit_from_tfds_is_split_by_the_index_in_each_file_name(monkeypatch, tmp_path):
    import tensorflow as tf
    import tensorflow_datasets as tfds


    names = [f"{d}_{s}_{i}.wav" for d in (0, 1) for s in ("jackson", "theo") for i in range(7)]

    def as_dataset(self, split, **kwargs):
        examples = [{"audio": (tone(500 * (1 + int(n[0])), 0.2) * 30000).astype(np.int16), "label": int(n[0]), "audio/filename": n} for n in names]
        signature = {"audio": tf.TensorSpec([None], tf.int16), "label": tf.TensorSpec([], tf.int64), "audio/filename": tf.TensorSpec([], tf.string)}
        return tf.data.Dataset.from_generator(lambda: iter(examples), output_signature=signature)

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)
    with tfds.testing.mock_data(as_dataset_fn=as_dataset):
        splits = speech.load_data(resolve(data_dir=str(tmp_path), validation_split=0.0))
        assert len(splits.test[0]) == 2 * 2 * 5 and len(splits.train[0]) == 2 * 2 * 2
        held_out = speech.load_data(resolve(data_dir=str(tmp_path), holdout_speaker="theo", validation_split=0.0))
        assert len(held_out.test[0]) == 14 and len(held_out.train[0]) == 14


def test_source_arch_reads_every_frame_not_only_the_last(tmp_path):
    """arch=source pools the SimpleRNN's states over time: its last state comes after the padding."""
    import keras

    config = config_lib.resolve(speech.Config, "speech", toml_values={**speech.QUICK, "arch": "source"})
    splits = speech.load_data(config)
    model = speech.build_model(config, splits)
    rnn = next(layer for layer in model.layers if isinstance(layer, keras.layers.SimpleRNN))
    assert rnn.units == 50 and rnn.return_sequences
    assert model(splits.test[0][:2]).shape == (2, splits.num_classes)


def test_own_recordings_default_to_the_settings_for_unseen_voices(tmp_path):
    """A class folder of clips is someone's own recordings: the defaults for voices never heard;
    FSDD's official split and the synthetic tones keep the flatten head."""
    from dlcli.models.config import resolve

    root = tmp_path / "words"
    for name, pitch in PITCHES.items():
        write_wav(root / name / "0.wav", tone(pitch, 0.2, rate=8000, seed=0), rate=8000)
    own = resolve(speech.Config, "speech", toml_values={"data": str(root)}, dataset_defaults=speech.DATASET_DEFAULTS)
    assert (own.band_norm, own.warp, own.head, own.conv_stages, own.noise) == (True, 0.2, "time_pool", 4, 0.05)
    for name in ("spoken_digit", "synthetic"):
        seen = resolve(speech.Config, "speech", toml_values={"dataset": name}, dataset_defaults=speech.DATASET_DEFAULTS)
        assert (seen.band_norm, seen.warp, seen.head, seen.noise) == (False, 0.0, "flatten", 0.0)
    result = runner.invoke(app, ["show", "speech"])
    assert "spoken_digit" in result.stdout and "band_norm" in result.stdout


def test_a_run_saved_before_a_newer_dataset_default_resumes_as_it_was_saved(tmp_path):
    """conv_stages=4 and noise became the recordings' defaults after runs with three stages and
    no noise were saved (their config.json has neither): resumed, such a run keeps the fields' own
    defaults (what its checkpoint holds), not the dataset's newer ones."""
    root = tmp_path / "words"
    for name, pitch in PITCHES.items():
        for i in range(6):
            write_wav(root / name / f"{i}.wav", tone(pitch, 0.2, rate=8000, seed=i), rate=8000)
    run = tmp_path / "run"
    common = ["--data", str(root), "--batch-size", "6", "-o", str(run), "--set", "num_mel_bins=16", "--set", "validation_split=0"]
    result = runner.invoke(app, ["train", "speech", "--epochs", "1", "--set", "conv_stages=3", "--set", "noise=0", *common])
    assert result.exit_code == 0, result.output[-3000:]
    saved = json.loads((run / "config.json").read_text())
    del saved["config"]["conv_stages"], saved["config"]["noise"]  # as a run saved before the fields existed
    (run / "config.json").write_text(json.dumps(saved))
    result = runner.invoke(app, ["train", "speech", "--epochs", "2", "--resume", *common])
    assert result.exit_code == 0, result.output[-3000:]
    assert "resuming after epoch 1" in result.output
    resumed = json.loads((run / "config.json").read_text())["config"]
    assert (resumed["conv_stages"], resumed["noise"]) == (3, 0.0)


def test_background_noise_is_in_the_sound_only_in_training_and_at_most_its_level():
    """The hiss that own recordings are trained with: inside each clip's sound (between its first
    and last non-zero sample), never in the zero padding around it, never at prediction, and no
    louder than `level` times the clip's peak."""
    import keras

    from dlcli.models.layers import RandomBackgroundNoise

    wave = np.zeros((64, 4000), np.float32)
    for i in range(64):
        start = 200 + 20 * i
        wave[i, start : start + 1500] = 0.5 * np.sin(np.arange(1500) * (0.05 + 0.01 * (i % 7)))
    layer = RandomBackgroundNoise(0.1, seed=3)
    assert np.array_equal(keras.ops.convert_to_numpy(layer(wave)), wave)  # inference: untouched
    noisy = keras.ops.convert_to_numpy(layer(wave, training=True))
    hiss = noisy - wave
    sound = np.zeros_like(wave, bool)
    for i in range(64):
        nonzero = np.flatnonzero(wave[i])
        sound[i, nonzero[0] : nonzero[-1] + 1] = True
    assert np.all(hiss[~sound] == 0)  # the padding stays silent
    rms = np.sqrt((hiss**2).sum(1) / sound.sum(1)) / 0.5  # each clip's hiss against its peak
    assert 0 < rms.min() and rms.max() <= 0.1 * 1.2, rms  # from -60 dB up to the level (one draw's spread)
    assert rms.max() > 0.03 and rms.min() < 0.003  # levels are drawn across the range, in dB
    again = RandomBackgroundNoise.from_config(layer.get_config())
    assert (again.level, again.seed) == (0.1, 3)
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_float16")  # --set precision=mixed_float16: still float32 audio
    try:
        under_mixed = keras.ops.convert_to_numpy(RandomBackgroundNoise(0.1, seed=3)(wave, training=True))
    finally:
        keras.config.set_dtype_policy(previous)
    assert under_mixed.dtype == np.float32 and np.all(under_mixed[~sound] == 0)
