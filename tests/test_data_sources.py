"""Data sources: the IDX reader, MD5 verification, the download helper and the offline sources.

Fixtures are small files in the real IDX format written with ``write_idx`` into ``tmp_path``;
nothing here touches the network (``urllib.request.urlopen`` is monkeypatched where used).
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import os
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from benchmarks.data import load_source
from benchmarks.data import mnist as mnist_mod
from benchmarks.data.digits import TEST_FRACTION, load_digits
from benchmarks.data.idx import md5sum, read_idx, write_idx
from benchmarks.data.mnist import (
    FILES,
    MNIST,
    download,
    file_ok,
    find_files,
    load_idx_dataset,
    verify,
)
from benchmarks.errors import ConfigError, DataError

N_TRAIN, N_TEST = 12, 7


def _arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (N_TRAIN, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, N_TRAIN, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (N_TEST, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, N_TEST, dtype=np.uint8),
    }


def _write_set(folder: Path, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, array in arrays.items():
        write_idx(folder / (f"{name}.gz" if compress else name), array, compress=compress)


def _payload(array: np.ndarray) -> bytes:
    """The decompressed IDX bytes ``write_idx`` produces for ``array``."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


@pytest.fixture
def arrays() -> dict[str, np.ndarray]:
    return _arrays()


@pytest.fixture
def fixture_root(tmp_path: Path, arrays) -> Path:
    _write_set(tmp_path / "mnist", arrays)
    return tmp_path


def _spec_matching(arrays: dict[str, np.ndarray], folder: Path | None = None):
    """A copy of MNIST whose checksums are those of the fixture files (gz md5 read from disk)."""
    content = {n: hashlib.md5(_payload(a)).hexdigest() for n, a in arrays.items()}
    gz = {n: hashlib.md5(gzip.compress(_payload(a), mtime=0)).hexdigest()
          for n, a in arrays.items()}
    if folder is not None:  # the published-gz checksum of the files actually written
        gz = {n: md5sum(folder / f"{n}.gz") for n in arrays}
    return dataclasses.replace(MNIST, md5=gz, content_md5=content)


# ----------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_round_trips(tmp_path, compress):
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 5, dtype=np.uint8)
    suffix = ".gz" if compress else ""
    write_idx(tmp_path / f"img{suffix}", images, compress=compress)
    write_idx(tmp_path / f"lab{suffix}", labels, compress=compress)
    assert (tmp_path / f"img{suffix}").read_bytes()[:2] == (b"\x1f\x8b" if compress else b"\0\0")
    got_images, got_labels = read_idx(tmp_path / f"img{suffix}"), read_idx(tmp_path / f"lab{suffix}")
    assert got_images.dtype == np.uint8 and got_images.shape == (5, 28, 28)
    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_read_idx_detects_gzip_by_magic_not_name(tmp_path):
    labels = np.arange(10, dtype=np.uint8)
    write_idx(tmp_path / "labels.raw", labels, compress=True)  # gzip under a non-.gz name
    write_idx(tmp_path / "labels.gz", labels, compress=False)  # raw under a .gz name
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.raw"), labels)
    np.testing.assert_array_equal(read_idx(tmp_path / "labels.gz"), labels)


def test_read_idx_big_endian_int32(tmp_path):
    values = np.array([[1, -2, 70000], [2**31 - 1, 0, -(2**31)]], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 2]) + (2).to_bytes(4, "big") + (3).to_bytes(4, "big") + values.tobytes()
    (tmp_path / "ints").write_bytes(raw)
    got = read_idx(tmp_path / "ints")
    assert got.dtype == np.dtype(np.int32) and got.dtype.isnative
    np.testing.assert_array_equal(got, values.astype(np.int32))


@pytest.mark.parametrize("compress", [True, False])
def test_read_idx_truncated(tmp_path, compress):
    images = np.random.default_rng(2).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    path = tmp_path / "images"
    write_idx(path, images, compress=False)
    short = path.read_bytes()[:-100]  # header intact, 100 bytes of pixels missing
    path.write_bytes(gzip.compress(short) if compress else short)
    with pytest.raises(DataError, match=r"truncated or corrupt") as err:
        read_idx(path)
    assert "(4, 28, 28)" in str(err.value)


def test_read_idx_truncated_gzip_stream(tmp_path):
    path = tmp_path / "images.gz"
    write_idx(path, np.random.default_rng(3).integers(0, 256, (4, 28, 28)), compress=True)
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2])
    with pytest.raises(DataError, match=r"corrupt"):
        read_idx(path)


def test_read_idx_trailing_bytes(tmp_path):
    path = tmp_path / "labels"
    write_idx(path, np.arange(10), compress=False)
    path.write_bytes(path.read_bytes() + b"\0")
    with pytest.raises(DataError, match=r"truncated or corrupt"):
        read_idx(path)


@pytest.mark.parametrize("head", [b"\x00\x01\x08\x01", b"\x00\x00\x07\x01", b"PK\x03\x04", b"\0"])
def test_read_idx_bad_magic(tmp_path, head):
    path = tmp_path / "bad"
    path.write_bytes(head + (10).to_bytes(4, "big") + bytes(10))
    with pytest.raises(DataError, match=r"not an IDX file \(bad magic"):
        read_idx(path)


@pytest.mark.parametrize("offset", [-6, 10], ids=["crc32_trailer", "deflate_stream"])
def test_read_idx_corrupt_gzip(tmp_path, offset):
    """A damaged CRC32 trailer (EOFError/OSError) or deflate block (zlib.error) is a DataError."""
    path = tmp_path / "images.gz"
    write_idx(path, np.random.default_rng(4).integers(0, 256, (6, 28, 28)), compress=True)
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"gzip stream is corrupt"):
        read_idx(path)


# ------------------------------------------------------------------- MNIST files and checksums


def test_load_idx_dataset_fixtures_fail_md5(fixture_root):
    with pytest.raises(DataError, match=r"failed the MD5 check") as err:
        load_idx_dataset(MNIST, fixture_root)
    message = str(err.value)
    for name in FILES:  # every one of the four files is named
        assert str(fixture_root / "mnist" / f"{name}.gz") in message
    assert "dps-bench download mnist" in message


@pytest.mark.parametrize("compress", [True, False])
def test_load_idx_dataset_without_md5(tmp_path, arrays, compress):
    _write_set(tmp_path / "mnist", arrays, compress=compress)
    data = load_idx_dataset(MNIST, tmp_path, check_md5=False)
    assert data.name == "mnist"
    assert data.train.x.shape == (N_TRAIN, 1, 28, 28) and data.test.x.shape == (N_TEST, 1, 28, 28)
    assert data.train.x.dtype == np.float32 and data.test.x.dtype == np.float32
    assert data.train.y.dtype == np.int64 and data.test.y.dtype == np.int64
    np.testing.assert_array_equal(data.train.y, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(data.test.y, arrays["t10k-labels-idx1-ubyte"])
    for got, images in ((data.train.x, arrays["train-images-idx3-ubyte"]),
                        (data.test.x, arrays["t10k-images-idx3-ubyte"])):
        expected = (images.astype(np.float32)[:, None] / 255.0 - MNIST.mean) / MNIST.std
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)
    assert data.train.x.min() == pytest.approx(-MNIST.mean / MNIST.std, rel=1e-5)
    assert data.input_shape == (1, 28, 28)


def test_load_idx_dataset_mismatched_counts(tmp_path, arrays):
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:-1]
    _write_set(tmp_path / "mnist", arrays)
    with pytest.raises(DataError, match=r"t10k.*do not match"):
        load_idx_dataset(MNIST, tmp_path, check_md5=False)


def test_verify_accepts_content_md5_for_gz_and_raw(tmp_path, arrays, monkeypatch):
    folder = tmp_path / "mnist"
    folder.mkdir()
    raw_names = {"train-labels-idx1-ubyte", "t10k-images-idx3-ubyte"}
    for name, array in arrays.items():
        compress = name not in raw_names
        write_idx(folder / (f"{name}.gz" if compress else name), array, compress=compress)
    # Published-gz checksums that match nothing: only the content checksum can accept the files.
    spec = dataclasses.replace(
        MNIST, md5={n: "0" * 32 for n in FILES},
        content_md5={n: hashlib.md5(_payload(a)).hexdigest() for n, a in arrays.items()})
    monkeypatch.setattr(mnist_mod, "MNIST", spec)

    files = find_files(mnist_mod.MNIST, tmp_path)
    assert {n for n, p in files.items() if p.suffix != ".gz"} == raw_names
    for name, path in files.items():
        assert file_ok(spec, name, path), path
    verify(spec, files)  # no exception
    data = load_idx_dataset(mnist_mod.MNIST, tmp_path)  # check_md5=True now passes
    np.testing.assert_array_equal(data.train.y, arrays["train-labels-idx1-ubyte"])

    # A recompressed .gz (different gzip bytes, same content) also verifies.
    recompressed = folder / "train-images-idx3-ubyte.gz"
    recompressed.write_bytes(gzip.compress(_payload(arrays["train-images-idx3-ubyte"]),
                                           compresslevel=1, mtime=12345))
    assert md5sum(recompressed) != hashlib.md5(
        gzip.compress(_payload(arrays["train-images-idx3-ubyte"]), mtime=0)).hexdigest()
    assert file_ok(spec, "train-images-idx3-ubyte", recompressed)

    # One changed pixel in a raw file: rejected, and only that file is named.
    changed = arrays["t10k-images-idx3-ubyte"].copy()
    changed[0, 0, 0] ^= 1
    write_idx(folder / "t10k-images-idx3-ubyte", changed, compress=False)
    with pytest.raises(DataError, match=r"failed the MD5 check") as err:
        verify(spec, find_files(spec, tmp_path))
    assert str(folder / "t10k-images-idx3-ubyte") in str(err.value)
    assert "train-images" not in str(err.value)


def test_verify_accepts_published_gz_md5(tmp_path, arrays):
    folder = tmp_path / "mnist"
    _write_set(folder, arrays)
    spec = dataclasses.replace(MNIST, md5={n: md5sum(folder / f"{n}.gz") for n in FILES},
                               content_md5={n: "0" * 32 for n in FILES})
    verify(spec, find_files(spec, tmp_path))
    assert load_idx_dataset(spec, tmp_path).train.x.shape == (N_TRAIN, 1, 28, 28)


def test_file_ok_rejects_corrupt_gzip(tmp_path, arrays):
    folder = tmp_path / "mnist"
    _write_set(folder, arrays)
    spec = _spec_matching(arrays, folder)
    path = folder / "train-images-idx3-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[-6] ^= 0xFF  # CRC32 trailer
    path.write_bytes(bytes(data))
    assert not file_ok(spec, "train-images-idx3-ubyte", path)


def test_verify_corrupt_deflate_stream(tmp_path, arrays):
    folder = tmp_path / "mnist"
    _write_set(folder, arrays)
    spec = _spec_matching(arrays, folder)
    path = folder / "train-labels-idx1-ubyte.gz"
    data = bytearray(path.read_bytes())
    data[10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"failed the MD5 check"):
        verify(spec, find_files(spec, tmp_path))


def test_locate_prefers_gz_over_raw(tmp_path, arrays):
    folder = tmp_path / "mnist"
    _write_set(folder, arrays, compress=True)
    write_idx(folder / "train-labels-idx1-ubyte", np.zeros(3), compress=False)
    files = find_files(MNIST, tmp_path)
    assert files["train-labels-idx1-ubyte"] == folder / "train-labels-idx1-ubyte.gz"


def test_missing_files_message(tmp_path, arrays):
    _write_set(tmp_path / "mnist", {k: v for k, v in arrays.items() if "t10k-labels" not in k})
    with pytest.raises(DataError) as err:
        load_idx_dataset(MNIST, tmp_path)
    message = str(err.value)
    assert "--data-dir" in message and "`dps-bench download mnist" in message
    assert str(tmp_path / "mnist") in message
    assert "t10k-labels-idx1-ubyte.gz" in message


def test_missing_data_dir_message(monkeypatch):
    monkeypatch.delenv("DPS_DATA_DIR", raising=False)
    with pytest.raises(DataError, match=r"no --data-dir and no DPS_DATA_DIR") as err:
        load_source("mnist")
    assert "dps-bench download mnist" in str(err.value)


def test_load_source_uses_env_data_dir(monkeypatch, fixture_root):
    monkeypatch.setenv("DPS_DATA_DIR", str(fixture_root))
    with pytest.raises(DataError, match=r"failed the MD5 check") as err:
        load_source("mnist")  # found the fixtures through $DPS_DATA_DIR, then rejected them
    assert str(fixture_root / "mnist") in str(err.value)


def test_load_source_unknown():
    with pytest.raises(ConfigError, match=r"unknown data source 'nope'.*mnist1d"):
        load_source("nope")


# ------------------------------------------------------------------------------------ download


class _Response(io.BytesIO):
    """What urlopen returns: a context manager with read()."""


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.endswith(".gz"))


def test_download_offline_fails_clearly(tmp_path, monkeypatch):
    calls = []

    def offline(url, timeout=None):
        calls.append((url, timeout))
        raise OSError("network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as err:
        download(MNIST, tmp_path, timeout=0.5)
    message = str(err.value)
    assert "copy the four published .gz files" in message and "by hand" in message
    assert str(tmp_path / "mnist") in message
    assert "train-images-idx3-ubyte.gz" in message and "network is unreachable" in message
    for mirror in MNIST.mirrors:
        assert mirror in message
    assert [u for u, _ in calls] == [f"{m}train-images-idx3-ubyte.gz" for m in MNIST.mirrors]
    assert all(t == 0.5 for _, t in calls)
    assert (tmp_path / "mnist").is_dir() and not any((tmp_path / "mnist").iterdir())


def test_download_wrong_bytes_checksum_mismatch(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen",
                        lambda url, timeout=None: _Response(b"<html>not the file</html>"))
    with pytest.raises(DataError, match=r"checksum mismatch") as err:
        download(MNIST, tmp_path, timeout=1)
    assert err.value.args[0].count("checksum mismatch") == len(MNIST.mirrors)
    folder = tmp_path / "mnist"
    assert list(folder.iterdir()) == []  # no target and no temporary file left behind


def test_download_correct_bytes_land_verified(tmp_path, arrays, monkeypatch):
    served = {f"{n}.gz": gzip.compress(_payload(a), mtime=0) for n, a in arrays.items()}
    spec = _spec_matching(arrays)
    assert spec.md5 == {n: hashlib.md5(served[f"{n}.gz"]).hexdigest() for n in FILES}
    first, second = spec.mirrors
    calls = []

    def fake_urlopen(url, timeout=None):
        calls.append(url)
        if url.startswith(first):  # first mirror is down: the helper falls through to the second
            raise OSError("timed out")
        return _Response(served[url[len(second):]])

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    folder = download(spec, tmp_path, timeout=1)
    assert folder == tmp_path / "mnist"
    assert sorted(p.name for p in folder.iterdir()) == sorted(served)
    assert _leftovers(folder) == []
    for name in FILES:
        assert (folder / f"{name}.gz").read_bytes() == served[f"{name}.gz"]
    verify(spec, find_files(spec, tmp_path))
    data = load_idx_dataset(spec, tmp_path)
    np.testing.assert_array_equal(data.test.y, arrays["t10k-labels-idx1-ubyte"])
    assert len(calls) == 2 * len(FILES)

    # A second run finds verified files and fetches nothing.
    calls.clear()
    assert download(spec, tmp_path, timeout=1) == folder
    assert calls == []

    # A damaged file is fetched again and replaced.
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")
    download(spec, tmp_path, timeout=1)
    assert calls == [f"{first}t10k-labels-idx1-ubyte.gz", f"{second}t10k-labels-idx1-ubyte.gz"]
    assert (folder / "t10k-labels-idx1-ubyte.gz").read_bytes() == served[
        "t10k-labels-idx1-ubyte.gz"]


# -------------------------------------------------------------------------- offline sources


@pytest.fixture(scope="module")
def digits():
    return load_digits()


def test_digits_pools(digits):
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    assert digits.name == "digits"
    assert len(digits.train) + len(digits.test) == len(bunch.target) == 1797
    assert digits.train.x.shape[1:] == (1, 8, 8) and digits.train.x.dtype == np.float32
    assert digits.train.y.dtype == np.int64
    per_class = np.bincount(bunch.target, minlength=10)
    test_counts = np.bincount(digits.test.y, minlength=10)
    train_counts = np.bincount(digits.train.y, minlength=10)
    np.testing.assert_array_equal(test_counts, np.round(TEST_FRACTION * per_class).astype(int))
    np.testing.assert_array_equal(train_counts + test_counts, per_class)
    assert TEST_FRACTION == 0.4
    # The pools partition the data set: together they are exactly the 1,797 (standardised) images.
    full = (bunch.images.astype(np.float32) / 16.0)[:, None]
    full = (full - full.mean()) / full.std()
    both = np.concatenate([digits.train.x, digits.test.x]).reshape(1797, -1)
    labels = np.concatenate([digits.train.y, digits.test.y])

    def key(x: np.ndarray, y: np.ndarray) -> list[tuple[int, bytes]]:
        return sorted(zip(y.tolist(), map(bytes, x), strict=True))

    assert key(both, labels) == key(full.reshape(1797, -1), bunch.target)
    # Standardised over the whole set.
    assert abs(float(both.mean())) < 1e-4 and abs(float(both.std()) - 1) < 1e-4


def test_digits_split_is_fixed(digits):
    again = load_digits()
    np.testing.assert_array_equal(again.train.x, digits.train.x)
    np.testing.assert_array_equal(again.test.y, digits.test.y)


# ------------------------------------------------------------------------------- real MNIST


def _real_data_dir() -> Path:
    env = os.environ.get("DPS_DATA_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "shared" / "data"


@pytest.mark.realdata
def test_real_mnist():
    root = _real_data_dir()
    try:
        files = find_files(MNIST, root)
    except DataError:
        pytest.skip(f"real MNIST files not found under {root / 'mnist'}")
    verify(MNIST, files)  # the published checksums
    data = load_idx_dataset(MNIST, root)
    assert data.train.x.shape == (60000, 1, 28, 28) and data.test.x.shape == (10000, 1, 28, 28)
    assert len(data.train.y) == 60000 and len(data.test.y) == 10000
    assert set(np.unique(data.train.y)) == set(range(10))
    assert np.bincount(data.test.y).tolist()[:2] == [980, 1135]
    assert abs(float(data.train.x.mean())) < 0.01 and abs(float(data.train.x.std()) - 1) < 0.01
