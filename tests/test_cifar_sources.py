"""CIFAR-10 (python batches, image folder) and CIFAR-10N readers, on fixtures in the real formats."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_fixtures import (
    batch_bytes,
    image_set,
    jpeg_bytes,
    write_batches,
    write_cifar10n,
    write_image_folder,
)

from benchmarks.data import cifar10, load_source
from benchmarks.data.cifar10 import (
    CLASSES,
    MEAN,
    STD,
    load_cifar10_batches,
    load_cifar10_images,
    official_order,
    read_batch,
    read_decoded_cache,
)
from benchmarks.data.cifar10n import load_cifar10n
from benchmarks.data.safe_pickle import load_torch_saved, loads
from benchmarks.errors import DataError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_python_batches_load_in_official_order_standardised(tmp_path):
    x, y = write_batches(tmp_path)
    src = load_cifar10_batches(tmp_path, check_md5=False)
    assert src.train.x.shape == (20, 3, 32, 32) and src.test.x.shape == (4, 3, 32, 32)
    assert src.train.x.dtype == np.float32 and src.order == "official"
    np.testing.assert_array_equal(src.train.y, y)
    expected = (x.astype(np.float32) / 255 - MEAN[None, :, None, None]) / STD[None, :, None, None]
    np.testing.assert_allclose(src.train.x, expected, rtol=1e-6)


def test_python_batches_are_md5_checked(tmp_path):
    write_batches(tmp_path)
    with pytest.raises(DataError, match="MD5"):
        load_cifar10_batches(tmp_path)


def test_missing_batches_name_what_to_do(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load_cifar10_batches(tmp_path)
    write_batches(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataError, match="data_batch_3"):
        load_cifar10_batches(tmp_path, check_md5=False)


class _Exploit:
    def __init__(self, target: Path) -> None:
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_restricted_unpickler_never_runs_code(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({b"data": _Exploit(marker)}, protocol=2)
    with pytest.raises(DataError, match="refusing"):
        loads(payload, "a batch")
    assert not marker.exists()
    (tmp_path / "evil").write_bytes(payload)
    with pytest.raises(DataError):
        read_batch(tmp_path / "evil")
    assert not marker.exists()


def test_batch_of_the_wrong_shape_or_labels_is_refused(tmp_path):
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (tmp_path / "b").write_bytes(pickle.dumps(bad, protocol=2))
    with pytest.raises(DataError, match="3072"):
        read_batch(tmp_path / "b")
    (tmp_path / "c").write_bytes(batch_bytes(np.zeros((2, 3, 32, 32), np.uint8), [0, 12]))
    with pytest.raises(DataError, match="0-9"):
        read_batch(tmp_path / "c")


@pytest.mark.parametrize("archive", [False, True], ids=["folder", "tar.gz"])
def test_image_folder_decodes_in_class_folder_order_and_caches(tmp_path, archive, monkeypatch):
    files = image_set(per_class=2)
    write_image_folder(tmp_path, files, archive=archive)
    cache = tmp_path / "cache"
    src = load_cifar10_images(tmp_path, cache=cache)
    assert src.order == "class-folder" and src.train.x.shape == (20, 3, 32, 32)
    np.testing.assert_array_equal(src.train.y, np.repeat(np.arange(10), 2))
    first_pixel = np.rint((src.train.x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).astype(int)
    np.testing.assert_array_equal(first_pixel, [c * 10 + k for c in range(10) for k in range(2)])
    assert len(list(cache.glob("*.npz"))) == 1

    def no_decoding(location):
        raise AssertionError("decoded again although the cache is valid")

    monkeypatch.setattr(cifar10, "decode_folder", no_decoding)
    again = load_cifar10_images(tmp_path, cache=cache)
    np.testing.assert_array_equal(again.train.x, src.train.x)


def test_a_damaged_cache_is_decoded_again(tmp_path):
    write_image_folder(tmp_path, image_set(per_class=1))
    cache = tmp_path / "cache"
    first = load_cifar10_images(tmp_path, cache=cache)
    (path,) = cache.glob("*.npz")
    path.write_bytes(path.read_bytes()[:100])
    assert read_decoded_cache(path) is None
    np.testing.assert_array_equal(load_cifar10_images(tmp_path, cache=cache).train.x, first.train.x)


def test_image_folder_errors_name_the_file(tmp_path):
    files = image_set(per_class=1)
    files["train/cat/0001.png"] = b"not an image"
    write_image_folder(tmp_path, files)
    with pytest.raises(DataError, match="cat/0001.png"):
        load_cifar10_images(tmp_path, cache=tmp_path / "cache")
    with pytest.raises(DataError, match="cifar10-images"):
        load_cifar10_images(tmp_path / "nowhere", cache=tmp_path / "cache")


def test_official_order_is_rebuilt_from_the_clean_labels():
    clean = np.array([3, 0, 3, 1, 0, 1])
    folder_y = np.sort(clean)  # class-folder order: 0 0 1 1 3 3
    rows = official_order(folder_y, clean)
    # i-th official image = k-th file of class clean[i]
    np.testing.assert_array_equal(rows, [4, 0, 5, 2, 1, 3])
    np.testing.assert_array_equal(folder_y[rows], clean)
    with pytest.raises(DataError, match="not the\nsame|not the same"):
        official_order(np.array([0, 0, 1]), np.array([0, 1, 1]))


def test_cifar10n_labels_load_without_unpickling_code(tmp_path):
    clean = np.array([1, 2, 3, 4])
    worse = np.array([1, 0, 3, 0])
    write_cifar10n(tmp_path, clean, {"worse_label": worse})
    got_clean, got_worse = load_cifar10n(tmp_path, "worse", check_md5=False)
    np.testing.assert_array_equal(got_clean, clean)
    np.testing.assert_array_equal(got_worse, worse)
    with pytest.raises(DataError, match="MD5"):
        load_cifar10n(tmp_path, "worse")
    with pytest.raises(DataError, match="unknown CIFAR-10N"):
        load_cifar10n(tmp_path, "best")


def test_torch_saved_tensors_or_code_are_refused(tmp_path):
    torch.save({"clean_label": torch.arange(3)}, tmp_path / "t.pt")
    with pytest.raises(DataError, match="tensors"):
        load_torch_saved(tmp_path / "t.pt", "labels")
    marker = tmp_path / "pwned"
    torch.save({"clean_label": _Exploit(marker)}, tmp_path / "e.pt")
    with pytest.raises(DataError, match="refusing"):
        load_torch_saved(tmp_path / "e.pt", "labels")
    assert not marker.exists()
    (tmp_path / "z.pt").write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(DataError):
        load_torch_saved(tmp_path / "z.pt", "labels")


@pytest.mark.realdata
def test_real_cifar10n_matches_the_real_image_folder(tmp_path):
    if not (SHARED / "cifar10n").is_dir() or not (SHARED / "cifar10-images").is_dir():
        pytest.skip("../shared/data has no CIFAR-10N or CIFAR-10 images")
    clean, worse = load_cifar10n(SHARED, "worse")
    assert len(clean) == 50_000 and abs(float((clean != worse).mean()) - 0.402) < 0.001
    src = load_source("cifar10-images", SHARED)
    assert src.train.x.shape == (50_000, 3, 32, 32) and src.test.x.shape == (10_000, 3, 32, 32)
    assert src.order == "class-folder"  # each class's files are numbered 0000 … 4999
    rows = official_order(src.train.y, clean)
    assert len(np.unique(rows)) == 50_000


def test_download_helper_fails_offline_with_a_clear_message(tmp_path, monkeypatch):
    import urllib.request

    def offline(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(DataError, match="no internet"):
        cifar10.download_cifar10(tmp_path)


def test_extracting_the_archive_keeps_only_verified_batches(tmp_path, monkeypatch):
    import hashlib
    import io
    import tarfile

    good = hashlib.md5(b"abc").hexdigest()
    monkeypatch.setattr(cifar10, "BATCH_MD5", dict.fromkeys(cifar10.BATCHES, good))
    archive = tmp_path / "c.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name in ("../../data_batch_1", *(f"cifar-10-batches-py/{n}" for n in cifar10.BATCHES[1:]),
                     "cifar-10-batches-py/readme.html"):
            info = tarfile.TarInfo(name)
            info.size = 3
            tar.addfile(info, io.BytesIO(b"abc"))
    out = tmp_path / "deep" / "out"
    folder = cifar10.extract_batches(archive, out)
    assert sorted(p.name for p in folder.iterdir()) == sorted(cifar10.BATCHES)  # no readme
    assert not (tmp_path / "data_batch_1").exists() and not (tmp_path / "deep" / "data_batch_1").exists()
    monkeypatch.setattr(cifar10, "BATCH_MD5", dict.fromkeys(cifar10.BATCHES, "0" * 32))
    with pytest.raises(DataError, match="MD5"):
        cifar10.extract_batches(archive, tmp_path / "again")


def test_numbered_files_sort_by_number_and_unnumbered_folders_say_so(tmp_path):
    files = image_set(per_class=1)
    extra = {}
    for k in (2, 10):  # "10" must come after "2" (and after 0000)
        for name in CLASSES:
            pixels = np.full((32, 32, 3), k, np.uint8)
            extra[f"train/{name}/{k}.png"] = jpeg_bytes(pixels)
    write_image_folder(tmp_path / "a", {**files, **extra})
    src = load_cifar10_images(tmp_path / "a", cache=tmp_path / "cache")
    first_pixel = np.rint((src.train.x[:, 0, 0, 0] * STD[0] + MEAN[0]) * 255).astype(int)
    assert first_pixel[1:3].tolist() == [2, 10]  # class 0: 0000, 2, 10
    assert src.order == "unnumbered"  # 0, 2, 10 is not 0, 1, 2
    write_image_folder(tmp_path / "b", image_set(per_class=3))
    assert load_cifar10_images(tmp_path / "b", cache=tmp_path / "cache").order == "class-folder"


def test_duplicate_and_metadata_files(tmp_path):
    files = image_set(per_class=1)
    files["train/cat/._0000.png"] = b"macOS metadata, not an image"
    write_image_folder(tmp_path, files)
    assert len(load_cifar10_images(tmp_path, cache=tmp_path / "cache").train.y) == 10
    nested = tmp_path / "n"
    write_image_folder(nested, {**image_set(per_class=1), # an archive with the layout twice
                                **{"copy/" + k: v for k, v in image_set(per_class=1).items()}},
                       archive=True)
    with pytest.raises(DataError, match="twice"):
        load_cifar10_images(nested, cache=tmp_path / "cache2")


def test_unpickler_refuses_arrays_numpy_never_pickles():
    # an array rebuilt with a non-empty shape: numpy's own pickles always start from (0,)
    plain = pickle.dumps(np.zeros(3, np.uint8), protocol=2)
    evil = plain.replace(b"K\x00\x85", b"K\x07\x85", 1)  # BININT1 0, TUPLE1 -> 7
    assert evil != plain and loads(plain, "zeros").tolist() == [0, 0, 0]
    with pytest.raises(DataError):
        loads(evil, "an array")
    with pytest.raises(DataError, match="object array"):
        loads(pickle.dumps(np.array([1, None], dtype=object), protocol=2), "an object array")
    assert loads(pickle.dumps(np.arange(5), protocol=2), "ints").tolist() == [0, 1, 2, 3, 4]
