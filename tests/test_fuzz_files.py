"""Hypothesis fuzzing of file contents, per data format: random bytes, truncations and forged
headers are read or refused with a DlcliError (one line at the CLI), never another exception."""

import gzip
import io
import tarfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli.core.errors import DlcliError
from dlcli.data import sources
from recipes.cnn import Config
from tests.helpers import write_idx_folder, write_image_folder

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_refuse(path, config=Config):
    try:
        found = sources.find(path)
        found.describe(path)
        found.load(path, config(data=str(path)))
    except DlcliError as e:
        assert "\n" not in str(e).strip() or str(path).count("\n"), str(e)


def mutate(data, cut, flips, seed):
    """`data` truncated to `cut` of its length, with `flips` random bytes changed."""
    rng = np.random.default_rng(seed)
    out = bytearray(data[: max(0, int(len(data) * cut))])
    for _ in range(flips if out else 0):
        out[rng.integers(len(out))] = rng.integers(256)
    return bytes(out)


mutations = st.tuples(st.floats(0, 1), st.integers(0, 20), st.integers(0, 2**32 - 1))


@FUZZ
@given(mutations, st.sampled_from(["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"]),
       st.booleans())
def test_idx_files(tmp_path_factory, mutation, name, forge_header):
    folder = write_idx_folder(tmp_path_factory.mktemp("idx"), n_train=12, n_test=4)
    raw = gzip.decompress((folder / name).read_bytes())
    if forge_header:  # a header that declares a gigantic image count
        raw = raw[:4] + (2**31 - 1).to_bytes(4, "big") + raw[8:]
    (folder / name).write_bytes(gzip.compress(mutate(raw, *mutation)))
    read_or_refuse(folder)


@FUZZ
@given(mutations)
def test_image_files(tmp_path_factory, mutation):
    folder = write_image_folder(tmp_path_factory.mktemp("images"), per_class=2)
    victim = folder / "cat" / "0.png"
    victim.write_bytes(mutate(victim.read_bytes(), *mutation))
    read_or_refuse(folder)


@FUZZ
@given(mutations, st.binary(max_size=200))
def test_csv_tables(tmp_path_factory, mutation, noise):
    path = tmp_path_factory.mktemp("csv") / "table.csv"
    text = "a,b,name\n" + "\n".join(f"{i},{i * 2},x{i}" for i in range(20))
    path.write_bytes(mutate(text.encode(), *mutation) + noise)
    read_or_refuse(path)


@FUZZ
@given(mutations)
def test_aclimdb_tarballs(tmp_path_factory, mutation):
    path = tmp_path_factory.mktemp("imdb") / "aclImdb.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                content = f"a {label} review".encode()
                info = tarfile.TarInfo(f"aclImdb/{split}/{label}/0_1.txt")
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
    path.write_bytes(mutate(buffer.getvalue(), *mutation))
    read_or_refuse(path)


@FUZZ
@given(mutations, st.binary(max_size=100))
def test_auto_mpg_files(tmp_path_factory, mutation, noise):
    path = tmp_path_factory.mktemp("mpg") / "auto-mpg.data"
    text = "18.0   8   307.0      130.0      3504.      12.0   70  1\t\"chevrolet\"\n" * 5
    path.write_bytes(mutate(text.encode(), *mutation) + noise)
    read_or_refuse(path)


# ## Each image format: a truncated file or a forged size never passes the listing check
# (header, pixel budget, end marker) unless it decodes, so it cannot stop training mid-epoch.
# (Bytes flipped in the middle of a file are only read or refused: the check does not decode.)

IMAGE_KINDS = ["0_rgb.jpg", "1_rgba.png", "2_p.png", "3_l.png", "5_rgb.bmp", "6_p.gif", "7_rgb.webp", "0_rgb.tif"]


truncations = st.tuples(st.floats(0, 1), st.just(0), st.just(0))


@settings(FUZZ, max_examples=50)
@given(st.one_of(truncations, mutations), st.sampled_from(IMAGE_KINDS), st.booleans())
def test_every_image_format_passes_the_check_only_if_it_decodes(tmp_path_factory, mutation, name, forge_size):
    from dlcli.core.lazy import tf
    from dlcli.data.sources import image_folder
    from tests.helpers import write_messy_images

    folder = write_messy_images(tmp_path_factory.mktemp("formats"), ("a", "b", "c"), per_class=10)
    victim = next(p for p in folder.rglob("*") if p.name.endswith(name.split("_", 1)[1]))
    raw = victim.read_bytes()
    if forge_size and raw.startswith(b"\x89PNG"):  # a PNG header that declares 65535 x 65535 pixels
        raw = raw[:16] + (65535).to_bytes(4, "big") * 2 + raw[24:]
    victim.write_bytes(mutate(raw, *mutation) if not forge_size else raw)
    why = image_folder.check_image(victim)
    if forge_size and raw.startswith(b"\x89PNG"):
        assert why is not None and "over the budget" in why
    if why is None and mutation[1] == 0:  # truncated only
        image = image_folder.decoder((16, 16, 3))(tf.constant(str(victim)))
        assert image.shape == (16, 16, 3)
    read_or_refuse(folder)


@FUZZ
@given(mutations, st.integers(1, 2))
def test_wav_clips_in_class_folders(tmp_path_factory, mutation, width):
    from recipes.speech import Config as SpeechConfig
    from tests.helpers import tone, write_wav

    folder = tmp_path_factory.mktemp("wav")
    for label, frequency in (("low", 300), ("high", 1200)):
        for i in range(3):
            write_wav(folder / label / f"{i}.wav", tone(frequency, 0.2, seed=i), width=width)
    victim = folder / "low" / "0.wav"
    victim.write_bytes(mutate(victim.read_bytes(), *mutation))
    read_or_refuse(folder, SpeechConfig)


@FUZZ
@given(mutations, st.binary(max_size=200))
def test_text_files_in_class_folders(tmp_path_factory, mutation, noise):
    from recipes.lstm import Config as TextConfig

    folder = tmp_path_factory.mktemp("texts")
    for label in ("ham", "spam"):
        (folder / label).mkdir()
        for i in range(6):
            (folder / label / f"{i}.txt").write_text(f"a {label} message, number {i}, with a few words in it")
    victim = folder / "ham" / "0.txt"
    victim.write_bytes(mutate(victim.read_bytes(), *mutation) + noise)
    read_or_refuse(folder, TextConfig)


@FUZZ
@given(mutations, st.binary(max_size=200), st.sampled_from([".csv", ".tsv", ".jsonl"]))
def test_text_tables(tmp_path_factory, mutation, noise, suffix):
    import json

    from recipes.lstm import Config as TextConfig

    path = tmp_path_factory.mktemp("text_table") / f"messages{suffix}"
    rows = [(f"message number {i} about {'lunch' if i % 2 else 'a free prize'} today", "ab"[i % 2]) for i in range(20)]
    if suffix == ".jsonl":
        text = "\n".join(json.dumps({"text": t, "label": y}) for t, y in rows)
    else:
        sep = "," if suffix == ".csv" else "\t"
        text = f"text{sep}label\n" + "\n".join(f"{t}{sep}{y}" for t, y in rows)
    path.write_bytes(mutate(text.encode(), *mutation) + noise)
    read_or_refuse(path, TextConfig)
