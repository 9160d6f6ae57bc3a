"""Hypothesis fuzzing of file contents, per data format: random bytes, truncations and forged
headers are read or refused with a DlcliError (one line at the CLI), never another exception."""

import gzip
import io
import tarfile

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dlcli import sources
from dlcli.errors import DlcliError
from recipes.cnn import Config
from tests.helpers import write_idx_folder, write_image_folder

FUZZ = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def read_or_refuse(path):
    try:
        found = sources.find(path)
        found.describe(path)
        found.load(path, Config(data=str(path)))
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
