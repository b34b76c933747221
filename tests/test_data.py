"""Tests of ``tase.data``: profile oracles, split determinism, every dataset on small files written
here (CIFAR-format archives, fake ImageNet and image folders), the official SDCLR files when
``shared/`` has them, verified fetching with a fake network, and one named error per bad input."""

from __future__ import annotations

import hashlib
import io
import json
import math
import pickle
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from tase import data as D

# --------------------------------------------------------------------------------------------
# Helpers that write small datasets in the real on-disk formats
# --------------------------------------------------------------------------------------------

CIFAR_LAYOUT = {
    # name: (folder, train files, test files, meta file, label key, names key, classes)
    "cifar10-lt": (
        "cifar-10-batches-py",
        [f"data_batch_{i}" for i in range(1, 6)],
        ["test_batch"],
        "batches.meta",
        "labels",
        "label_names",
        10,
    ),
    "cifar100-lt": (
        "cifar-100-python",
        ["train"],
        ["test"],
        "meta",
        "fine_labels",
        "fine_label_names",
        100,
    ),
}


def write_cifar(
    root: Path,
    name: str,
    train_per_class: int,
    test_per_class: int,
    zeros: bool = False,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A CIFAR python archive (same pickle layout as the real one, fewer images); returns the
    train images (N×3×32×32) and labels in torchvision order. The real batches were pickled by
    Python 2, whose str keys load as str with ``encoding="latin1"``: Python 3 str keys match."""
    folder, train_files, test_files, meta, label_key, names_key, n_classes = CIFAR_LAYOUT[name]
    rng = np.random.default_rng(seed)
    out = root / folder
    out.mkdir(parents=True, exist_ok=True)

    def write(files: list[str], per_class: int) -> tuple[np.ndarray, np.ndarray]:
        labels = np.tile(np.arange(n_classes), per_class)
        labels = labels if zeros else rng.permutation(labels)
        n = labels.size
        images = (
            np.zeros((n, 3072), np.uint8)
            if zeros
            else rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        )
        for i, chunk in enumerate(np.array_split(np.arange(n), len(files))):
            batch = {
                "data": images[chunk],
                label_key: labels[chunk].tolist(),
                "batch_label": f"batch {i}",
            }
            with open(out / files[i], "wb") as f:
                pickle.dump(batch, f, protocol=2)
        return images.reshape(-1, 3, 32, 32), labels

    train = write(train_files, train_per_class)
    write(test_files, test_per_class)
    with open(out / meta, "wb") as f:
        pickle.dump({names_key: [f"class{c}" for c in range(n_classes)]}, f)
    return train


def write_image(path: Path, size: tuple[int, int], seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def serve(files: dict[str, bytes], calls: list[str]):
    """A stand-in for ``urllib.request.urlopen`` serving SDCLR URLs from ``files``."""

    def urlopen(url, timeout=None):
        calls.append(url)
        assert url.startswith(D.SDCLR_URL)
        return io.BytesIO(files[url[len(D.SDCLR_URL) :]])

    return urlopen


def offline(url, timeout=None):
    raise AssertionError(f"unexpected network access: {url}")


# --------------------------------------------------------------------------------------------
# Profiles and groups: oracles
# --------------------------------------------------------------------------------------------


def test_exp_profile_matches_sdclr_cifar10_counts():
    counts = D.long_tail_counts(4500, 10, 100, "exp")
    assert counts.tolist() == [4500, 2697, 1617, 969, 581, 348, 208, 125, 75, 45]
    assert counts.sum() == 11_165 and counts.dtype == np.int64


def test_exp_profile_matches_sdclr_cifar100_counts():
    counts = D.long_tail_counts(450, 100, 100, "exp")
    assert counts.sum() == 9_754
    assert (counts[0], counts[-1]) == (450, 4)
    assert np.all(np.diff(counts) <= 0)


def test_exp_profile_floors_exact_integers_despite_rounding_error():
    # 98 * 49**-1 is 1.9999999999999998 in binary floating point: a bare floor gives 1.
    assert math.floor(98 * 49.0**-1.0) == 1
    assert D.long_tail_counts(98, 2, 49).tolist() == [98, 2]
    assert D.long_tail_counts(49, 10, 49)[-1] == 1


def test_exp_profile_edge_cases():
    assert D.long_tail_counts(7, 4, 1).tolist() == [7, 7, 7, 7]
    assert D.long_tail_counts(7, 1, 100).tolist() == [7]
    # floor(100 * 10**(-c/2)) for c = 0, 1, 2: 100, 31.62…, 10.
    assert D.long_tail_counts(100, 3, 10).tolist() == [100, 31, 10]


def test_step_profile_by_hand():
    assert D.long_tail_counts(100, 10, 10, "step").tolist() == [100] * 5 + [10] * 5
    assert D.long_tail_counts(100, 10, 3, "step", step_fraction=0.3).tolist() == (
        [100] * 3 + [33] * 7
    )
    # floor(0.5 * 5) = 2 head classes, as LDAM-DRW's C // 2.
    assert D.long_tail_counts(50, 5, 4, "step").tolist() == [50, 50, 12, 12, 12]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_max=10, n_classes=3, ratio=0.5), "ratio"),
        (dict(n_max=0, n_classes=3, ratio=10), "n_max"),
        (dict(n_max=10, n_classes=0, ratio=10), "n_classes"),
        (dict(n_max=10, n_classes=3, ratio=10, profile="linear"), "profile"),
        (dict(n_max=5, n_classes=3, ratio=10), "no image"),
        (dict(n_max=10, n_classes=4, ratio=2, profile="step", step_fraction=1.5), "step_fraction"),
    ],
)
def test_long_tail_counts_rejects_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        D.long_tail_counts(**kwargs)


def test_thirds_groups_by_hand_with_ties():
    counts = np.array([10, 50, 50, 7, 7, 1, 30, 3, 3, 3])
    # Descending, ties by index: 1, 2, 6 | 0, 3, 4, 7 | 8, 9, 5.
    expected = [1, 0, 0, 1, 1, 2, 0, 1, 2, 2]
    assert D.group_membership(counts, "thirds").tolist() == expected


@pytest.mark.parametrize(
    "n_classes, sizes", [(10, (3, 4, 3)), (100, (33, 34, 33)), (5, (2, 1, 2)), (1, (0, 1, 0))]
)
def test_thirds_group_sizes(n_classes, sizes):
    groups = D.group_membership(np.arange(n_classes, 0, -1), "thirds")
    assert tuple(np.bincount(groups, minlength=3)) == sizes
    assert np.all(np.diff(groups) >= 0)  # counts are descending, so groups are ascending


def test_imagenet_groups_thresholds():
    counts = np.array([1280, 101, 100, 20, 19, 6])
    assert D.group_membership(counts, "imagenet").tolist() == [0, 0, 1, 1, 2, 2]
    with pytest.raises(ValueError, match="scheme"):
        D.group_membership(counts, "quartiles")


# --------------------------------------------------------------------------------------------
# Generated splits: determinism
# --------------------------------------------------------------------------------------------


def test_long_tail_indices_follow_the_profile_in_the_drawn_class_order():
    labels = np.repeat(np.arange(5), 40)
    indices, order = D.long_tail_indices(labels, ratio=8, seed=3, n_max=32)
    counts = np.bincount(labels[indices], minlength=5)
    assert counts[order].tolist() == D.long_tail_counts(32, 5, 8).tolist()
    assert np.all(np.diff(indices) > 0)


def test_same_seed_same_split_other_seed_other_draw_same_counts():
    labels = np.random.default_rng(0).permutation(np.repeat(np.arange(10), 60))
    first, order_first = D.long_tail_indices(labels, ratio=10, seed=7)
    again, order_again = D.long_tail_indices(labels, ratio=10, seed=7)
    other, order_other = D.long_tail_indices(labels, ratio=10, seed=8)
    assert np.array_equal(first, again) and np.array_equal(order_first, order_again)
    assert not np.array_equal(first, other) and not np.array_equal(order_first, order_other)
    assert sorted(np.bincount(labels[first])) == sorted(np.bincount(labels[other]))


def test_generated_split_pins_the_pcg64_stream():
    # Same seed => same split on any machine: the class order is the first draw of PCG64(seed).
    _, order = D.long_tail_indices(np.repeat(np.arange(10), 5), ratio=5, seed=0)
    expected = np.random.Generator(np.random.PCG64(0)).permutation(10)
    assert order.tolist() == expected.tolist()


def test_n_max_above_the_smallest_pool_class_is_refused():
    labels = np.repeat(np.arange(3), [10, 10, 4])
    with pytest.raises(ValueError, match="at most 4"):
        D.long_tail_indices(labels, ratio=2, n_max=5)


# --------------------------------------------------------------------------------------------
# digits-lt
# --------------------------------------------------------------------------------------------


def image_keys(images: torch.Tensor) -> list[bytes]:
    return [bytes(image.numpy().tobytes()) for image in images]


def test_digits_lt_counts_groups_and_balanced_test():
    data = D.load("digits-lt")
    assert data.train_images.shape == (len(data.train_labels), 3, 16, 16)
    assert data.train_images.dtype == torch.uint8 and data.train_labels.dtype == torch.int64
    # Default n_max: the smallest digit class (174 images, digit 8) less its 50 test images.
    expected = D.long_tail_counts(124, 10, 10)
    assert sorted(data.class_counts.tolist(), reverse=True) == expected.tolist()
    assert data.class_counts.sum() == expected.sum() == len(data.train_labels)
    assert data.class_counts.tolist() == np.bincount(data.train_labels.numpy()).tolist()
    assert np.bincount(data.groups).tolist() == [3, 4, 3]
    assert np.bincount(data.test_labels.numpy()).tolist() == [50] * 10
    assert len(data.pool_labels) == 1797 - 500
    assert torch.equal(data.train_images[:, 0], data.train_images[:, 2])  # grey replicated


def test_digits_lt_pool_is_disjoint_from_test_and_contains_train():
    data = D.load("digits-lt", seed=4)
    pool, test, train = (
        set(image_keys(x)) for x in (data.pool_images, data.test_images, data.train_images)
    )
    assert len(pool) + len(test) == 1797  # all 1,797 digits are distinct images
    assert not pool & test
    assert train <= pool
    lt = torch.tensor(data.subsets["lt_train"])
    assert torch.equal(data.pool_images[lt], data.train_images)


def test_digits_lt_seeds():
    first, again, other = (D.load("digits-lt", seed=s) for s in (1, 1, 2))
    assert torch.equal(first.train_images, again.train_images)
    assert torch.equal(first.train_labels, again.train_labels)
    assert not torch.equal(first.train_labels, other.train_labels)
    assert sorted(first.class_counts) == sorted(other.class_counts)
    # The test set does not move with the training seed (test_seed does that).
    assert torch.equal(first.test_images, other.test_images)


def test_digits_lt_image_size_8_keeps_the_raw_pixels():
    from sklearn.datasets import load_digits

    data = D.load("digits-lt", image_size=8, test_per_class=10)
    raw = {np.round(x * 255 / 16).astype(np.uint8).tobytes() for x in load_digits().images}
    assert set(image_keys(data.pool_images[:, :1])) <= raw


def test_digits_lt_is_fast():
    D.load("digits-lt")  # warm imports
    best = min(_timed(lambda: D.load("digits-lt", seed=5)) for _ in range(3))
    assert best < 1.0


def _timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def test_summary_is_json_and_describe_lists_every_class():
    data = D.load("digits-lt", split="step", ratio=4)
    summary = json.loads(json.dumps(data.summary()))
    assert summary["class_counts"] == data.class_counts.tolist()
    assert summary["imbalance_ratio_measured"] == pytest.approx(124 / 31)
    assert summary["group_classes"] == {"many": 3, "medium": 4, "few": 3}
    assert summary["n_train"] == sum(summary["class_counts"])
    assert summary["provenance"]["generated"]["profile"] == "step"
    assert len(data.describe().splitlines()) == 2 + 10


def test_dataset_arrays_are_read_only_and_validated():
    data = D.load("digits-lt")
    with pytest.raises(ValueError):
        data.class_counts[0] = 1
    with pytest.raises(ValueError, match="class_counts"):
        D.LTDataset(**{**vars(data), "class_counts": data.class_counts + 1})


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100 on small archives in the real pickle layout
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, torchvision_class", [("cifar10-lt", "CIFAR10"), ("cifar100-lt", "CIFAR100")]
)
def test_cifar_generated_split_end_to_end(tmp_path, data_dir, monkeypatch, name, torchvision_class):
    import torchvision.datasets
    import torchvision.datasets.cifar

    images, labels = write_cifar(tmp_path / "cifar", name, train_per_class=20, test_per_class=3)
    data = D.load(name, split="exp", ratio=10, seed=1, root=tmp_path / "cifar")
    n_classes = CIFAR_LAYOUT[name][-1]
    # Reference reader: torchvision itself (its md5 check would reject the small archive).
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda *a, **k: True)
    reference = getattr(torchvision.datasets, torchvision_class)(tmp_path / "cifar", train=True)
    assert torch.equal(data.pool_images, torch.from_numpy(reference.data).permute(0, 3, 1, 2))
    assert data.pool_labels.tolist() == reference.targets == labels.tolist()
    assert list(data.class_names) == reference.classes == [f"class{c}" for c in range(n_classes)]
    assert sorted(data.class_counts, reverse=True) == D.long_tail_counts(20, n_classes, 10).tolist()
    lt = torch.tensor(data.subsets["lt_train"])
    assert torch.equal(data.train_images, data.pool_images[lt])
    assert torch.equal(data.train_labels, data.pool_labels[lt])
    assert np.bincount(data.test_labels.numpy()).tolist() == [3] * n_classes
    assert data.provenance["generated"]["n_max"] == 20


def test_cifar_step_split_and_resize(tmp_path, data_dir):
    write_cifar(tmp_path, "cifar10-lt", train_per_class=12, test_per_class=2)
    data = D.load("cifar10-lt", split="step", ratio=4, root=tmp_path, image_size=16)
    assert sorted(data.class_counts.tolist()) == [3] * 5 + [12] * 5
    assert data.train_images.shape[1:] == (3, 16, 16) and data.image_size == 16


def test_cifar_missing_archive_says_how_to_get_it(tmp_path, data_dir):
    with pytest.raises(D.DatasetNotFoundError, match="download=True") as error:
        D.load("cifar10-lt", root=tmp_path)
    assert isinstance(error.value, FileNotFoundError)
    assert "cifar-10-batches-py" in str(error.value)


def test_cifar_download_goes_through_torchvision(tmp_path, data_dir, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeCIFAR10:
        def __init__(self, root, train, download):
            calls.append((root, download))
            write_cifar(Path(root), "cifar10-lt", train_per_class=6, test_per_class=1)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", FakeCIFAR10)
    data = D.load("cifar10-lt", ratio=2, download=True)
    assert calls == [(str(data_dir / "cifar"), True)]
    assert len(data.pool_labels) == 60


def test_cifar_official_split_needs_the_full_train_set(tmp_path, data_dir, sdclr_splits):
    write_cifar(tmp_path, "cifar10-lt", train_per_class=5, test_per_class=1)
    with pytest.raises(ValueError, match="50,000"):
        D.load("cifar10-lt", split="sdclr:1", root=tmp_path, splits_dir=sdclr_splits)


# --------------------------------------------------------------------------------------------
# Official SDCLR files (read from shared/ when present; never committed)
# --------------------------------------------------------------------------------------------


def test_embedded_hashes_are_the_shared_sha256sums(sdclr_splits):
    listed = dict(
        line.split()[::-1]
        for line in (sdclr_splits / "SHA256SUMS").read_text().splitlines()
        if line.strip()
    )
    assert listed == D.SDCLR_SHA256
    for relpath, expected in D.SDCLR_SHA256.items():
        assert hashlib.sha256((sdclr_splits / relpath).read_bytes()).hexdigest() == expected


@pytest.mark.parametrize("k", range(1, 6))
def test_official_cifar_split_files(sdclr_splits, k):
    cifar10 = sdclr_splits / "cifar10_imbSub_with_subsets"
    cifar100 = sdclr_splits / "cifar100_imbSub_with_subsets"
    sizes = {
        cifar10 / f"split{k}_D_i.npy": D.long_tail_counts(4500, 10, 100).sum(),  # 11,165
        cifar10 / f"split{k}_S_b.npy": 450,
        cifar10 / f"split{k}_D_b.npy": 11_160,
        cifar100 / f"cifar100_split{k}_D_i.npy": D.long_tail_counts(450, 100, 100).sum(),  # 9,754
        cifar100 / f"cifar100_split{k}_S_b.npy": 400,
        cifar100 / f"cifar100_split{k}_D_b.npy": 9_700,
    }
    for path, size in sizes.items():
        indices = np.load(path)
        assert indices.dtype == np.int64 and indices.size == size == np.unique(indices).size
        assert 0 <= indices.min() and indices.max() < 50_000
    # SDCLR draws its LT sets from its 45,000-image train part, never from its validation part.
    assert np.isin(
        np.load(cifar10 / f"split{k}_D_i.npy"), np.load(sdclr_splits / "cifar10/trainIdxList.npy")
    ).all()


def test_official_imagenet100_lists(sdclr_splits):
    folder = sdclr_splits / "imagenet-100"
    files, labels = D.read_image_list(folder / D.IMAGENET100_LISTS["train"])
    counts = np.bincount(labels)
    assert (len(files), counts.size, counts.max(), counts.min()) == (12_205, 100, 1280, 6)
    assert np.bincount(D.group_membership(counts, "imagenet")).tolist() == [39, 48, 13]
    test_files, test_labels = D.read_image_list(folder / D.IMAGENET100_LISTS["test"])
    assert np.bincount(test_labels).tolist() == [50] * 100
    assert all(f.startswith("val/") for f in test_files)
    balanced = set(D.read_image_list(folder / D.IMAGENET100_LISTS["balanced"])[0])
    one_pct = D.read_image_list(folder / D.IMAGENET100_LISTS["one_pct"])[0]
    assert len(balanced | set(one_pct)) == 13_297  # the size of our ImageNet probe pool


@pytest.fixture(scope="module")
def full_size_cifar(tmp_path_factory):
    """CIFAR archives of the real sizes (50,000 + 10,000) with cheap zero images, by name."""
    made = {}

    def make(name: str) -> tuple[Path, np.ndarray]:
        if name not in made:
            root = tmp_path_factory.mktemp(name)
            per_class = 50_000 // CIFAR_LAYOUT[name][-1]
            _, labels = write_cifar(root, name, per_class, per_class // 5, zeros=True)
            made[name] = root, labels
        return made[name]

    return make


@pytest.mark.parametrize(
    "name, split, prefix, sizes",
    [
        ("cifar10-lt", "sdclr:1", "cifar10_imbSub_with_subsets/split1", (11_165, 450, 11_160)),
        (
            "cifar100-lt",
            "sdclr:5",
            "cifar100_imbSub_with_subsets/cifar100_split5",
            (9_754, 400, 9_700),
        ),
    ],
)
def test_official_cifar_split_end_to_end(
    full_size_cifar, data_dir, sdclr_splits, name, split, prefix, sizes
):
    root, labels = full_size_cifar(name)
    data = D.load(name, split=split, root=root, splits_dir=sdclr_splits)
    d_i, s_b, d_b = (
        np.load(sdclr_splits / f"{prefix}_{part}.npy") for part in ("D_i", "S_b", "D_b")
    )
    assert (len(data.train_labels), len(data.test_labels), len(data.pool_labels)) == (
        sizes[0],
        10_000,
        50_000,
    )
    assert (data.split, data.ratio) == (split, 100.0)
    # Counts come from the labels (here the fake archive's) at the official indices.
    assert data.train_labels.tolist() == labels[d_i].tolist()
    assert data.class_counts.tolist() == np.bincount(labels[d_i], minlength=data.n_classes).tolist()
    assert np.array_equal(data.subsets["lt_train"], d_i)
    assert np.array_equal(data.subsets["one_pct"], s_b) and s_b.size == sizes[1]
    assert np.array_equal(data.subsets["balanced_control"], d_b) and d_b.size == sizes[2]
    assert np.array_equal(D.one_percent_subset(data).indices, s_b)
    assert (
        data.provenance["split_files"][f"{prefix}_D_i.npy"] == D.SDCLR_SHA256[f"{prefix}_D_i.npy"]
    )
    json.dumps(data.summary())
    assert not data_dir.exists()  # a local copy is used in place, not copied into the cache


# --------------------------------------------------------------------------------------------
# Fetching split files: cache, verification, atomicity
# --------------------------------------------------------------------------------------------

RELPATH = "cifar10_imbSub_with_subsets/split2_D_i.npy"


def test_fetch_downloads_verifies_and_caches(data_dir, sdclr_splits, monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(
        urllib.request, "urlopen", serve({RELPATH: (sdclr_splits / RELPATH).read_bytes()}, calls)
    )
    path = D.fetch_split_file(RELPATH, download=True)
    assert path == data_dir / "sdclr-splits" / RELPATH
    assert calls == [
        f"https://raw.githubusercontent.com/VITA-Group/SDCLR/{D.SDCLR_COMMIT}/split/{RELPATH}"
    ]
    assert path.read_bytes() == (sdclr_splits / RELPATH).read_bytes()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    assert D.fetch_split_file(RELPATH, download=False) == path  # served from the cache


def test_fetch_checksum_mismatch_caches_nothing(data_dir, sdclr_splits, monkeypatch):
    corrupted = bytearray((sdclr_splits / RELPATH).read_bytes())
    corrupted[-1] ^= 0xFF
    monkeypatch.setattr(urllib.request, "urlopen", serve({RELPATH: bytes(corrupted)}, []))
    with pytest.raises(D.ChecksumError, match=RELPATH):
        D.fetch_split_file(RELPATH, download=True)
    assert not [p for p in data_dir.rglob("*") if p.is_file()]


def test_fetch_network_failure_caches_nothing(data_dir, monkeypatch):
    def unreachable(url, timeout=None):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    with pytest.raises(D.DownloadError, match="splits_dir"):
        D.fetch_split_file(RELPATH, download=True)
    assert not [p for p in data_dir.rglob("*") if p.is_file()]


def test_corrupt_cached_file_is_refused_then_refetched(data_dir, sdclr_splits, monkeypatch):
    cached = data_dir / "sdclr-splits" / RELPATH
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not an index file")
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(D.CorruptCacheError, match="download=True"):
        D.fetch_split_file(RELPATH, download=False)
    with pytest.raises(D.ChecksumError):  # the refusal is a checksum error too
        D.load("cifar10-lt", split="sdclr:2", root=data_dir)
    monkeypatch.setattr(
        urllib.request, "urlopen", serve({RELPATH: (sdclr_splits / RELPATH).read_bytes()}, [])
    )
    assert D.fetch_split_file(RELPATH, download=True) == cached
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == D.SDCLR_SHA256[RELPATH]


def test_missing_split_file_without_download(data_dir, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(D.DatasetNotFoundError, match="download=True"):
        D.fetch_split_file(RELPATH)
    with pytest.raises(D.DatasetNotFoundError, match="TASE_SDCLR_SPLITS"):
        D.load("cifar100-lt", split="sdclr:3")


def test_local_split_copy_is_verified(tmp_path, data_dir, sdclr_splits, monkeypatch):
    local = tmp_path / "splits"
    shutil.copytree(
        sdclr_splits / "cifar10_imbSub_with_subsets", local / "cifar10_imbSub_with_subsets"
    )
    monkeypatch.setenv("TASE_SDCLR_SPLITS", str(local))
    assert D.fetch_split_file(RELPATH) == local / RELPATH
    target = local / RELPATH
    corrupted = bytearray(target.read_bytes())
    corrupted[-1] ^= 0xFF
    target.chmod(0o644)
    target.write_bytes(bytes(corrupted))
    with pytest.raises(D.ChecksumError, match="split2_D_i.npy"):
        D.fetch_split_file(RELPATH)


def test_fetch_refuses_unknown_files(data_dir):
    with pytest.raises(ValueError, match="not an SDCLR split file"):
        D.fetch_split_file("cifar10/../../etc/passwd", download=True)


# --------------------------------------------------------------------------------------------
# imagenet100-lt and folder-lt on tiny fake folders
# --------------------------------------------------------------------------------------------

WNIDS = ["n01000001", "n01000002", "n01000003"]


@pytest.fixture
def fake_imagenet(tmp_path) -> tuple[Path, Path]:
    """Three wnids; labels chosen against folder order (label 0 is the last wnid)."""
    root, lists = tmp_path / "imagenet", tmp_path / "lists"
    label = {WNIDS[2]: 0, WNIDS[0]: 1, WNIDS[1]: 2}
    train = {w: [f"train/{w}/{w}_{i}.JPEG" for i in range(6)] for w in WNIDS}
    val = {w: [f"val/{w}/ILSVRC2012_val_{w[-1]}{i}.JPEG" for i in range(2)] for w in WNIDS}
    for i, file in enumerate(f for files in (*train.values(), *val.values()) for f in files):
        write_image(root / file, (40 + 3 * i, 30 + 2 * i), seed=i)
    rows = {
        "train": train[WNIDS[2]][:5] + train[WNIDS[0]][:3] + train[WNIDS[1]][:1],
        "test": [f for w in WNIDS for f in val[w]],
        "balanced": [f for w in WNIDS for f in train[w][3:5]],
        "one_pct": [train[WNIDS[0]][4], train[WNIDS[1]][5], train[WNIDS[2]][5]],
    }
    lists.mkdir()
    for role, files in rows.items():
        text = "".join(f"{f} {label[f.split('/')[1]]}\n" for f in files)
        (lists / D.IMAGENET100_LISTS[role]).write_text(text)
    return root, lists


def test_imagenet100_lt_from_list_files(fake_imagenet, data_dir):
    root, lists = fake_imagenet
    data = D.load("imagenet100-lt", root=root, list_dir=lists, image_size=24, num_workers=2)
    assert data.split == "official" and data.group_scheme == "imagenet"
    assert list(data.class_names) == [WNIDS[2], WNIDS[0], WNIDS[1]]  # labels from the files
    assert data.class_counts.tolist() == [5, 3, 1]
    assert data.groups.tolist() == [2, 2, 2]  # all under 20 images
    assert data.train_images.shape == (9, 3, 24, 24)
    assert np.bincount(data.test_labels.numpy()).tolist() == [2, 2, 2]
    # Pool: the 6 balanced images, then the 1 % images it lacks (one of three is shared).
    assert len(data.pool_labels) == 8
    assert data.subsets["one_pct"].tolist() == [1, 6, 7]
    expected = D._decode_square(root / f"train/{WNIDS[1]}/{WNIDS[1]}_5.JPEG", 24)
    assert np.array_equal(data.pool_images[6].numpy(), expected)
    assert data.provenance["lists_verified"] is False
    assert len(list((data_dir / "imagenet100-cache").glob("*.npy"))) == 4

    # A second load reads the cache: the images are no longer needed.
    shutil.rmtree(root)
    again = D.load("imagenet100-lt", root=root, list_dir=lists, image_size=24)
    assert torch.equal(again.train_images, data.train_images)
    assert torch.equal(again.pool_images, data.pool_images)


def test_imagenet100_corrupt_cache_is_rebuilt(fake_imagenet, data_dir):
    root, lists = fake_imagenet
    data = D.load("imagenet100-lt", root=root, list_dir=lists, image_size=16)
    for cache in (data_dir / "imagenet100-cache").glob("*.npy"):
        cache.write_bytes(cache.read_bytes()[:100])
    again = D.load("imagenet100-lt", root=root, list_dir=lists, image_size=16)
    assert torch.equal(again.test_images, data.test_images)
    assert not list((data_dir / "imagenet100-cache").glob(".*"))  # no temporary left


def test_imagenet100_missing_images(fake_imagenet, data_dir):
    root, lists = fake_imagenet
    (root / f"val/{WNIDS[0]}/ILSVRC2012_val_10.JPEG").unlink()
    with pytest.raises(D.DatasetNotFoundError, match="ILSVRC2012_val_10"):
        D.load("imagenet100-lt", root=root, list_dir=lists, image_size=16)


def test_decode_matches_torchvision_resize_and_center_crop(tmp_path):
    from torchvision import transforms

    for size, seed in (((57, 31), 0), ((31, 57), 1), ((40, 40), 2)):
        path = tmp_path / f"{seed}.png"
        write_image(path, size, seed)
        reference = transforms.Compose([transforms.Resize(16), transforms.CenterCrop(16)])
        with Image.open(path) as image:
            expected = np.asarray(reference(image.convert("RGB"))).transpose(2, 0, 1)
        assert np.array_equal(D._decode_square(path, 16), expected)


def test_folder_lt(tmp_path, data_dir):
    for part, per_class in (("train", 8), ("test", 2)):
        for c, name in enumerate(["cat", "dog", "emu"]):
            for i in range(per_class):
                write_image(tmp_path / part / name / f"{i}.png", (12, 10), seed=100 * c + i)
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")
    data = D.load("folder-lt", root=tmp_path, ratio=4, image_size=8, seed=2)
    assert data.class_names == ("cat", "dog", "emu")
    assert sorted(data.class_counts.tolist()) == [2, 4, 8]  # floor(8 * 4**(-c/2))
    assert len(data.pool_labels) == 24 and len(data.test_labels) == 6
    assert data.train_images.shape[1:] == (3, 8, 8)
    lt = torch.tensor(data.subsets["lt_train"])
    assert torch.equal(data.pool_images[lt], data.train_images)

    shutil.rmtree(tmp_path / "test" / "emu")
    with pytest.raises(ValueError, match="differ"):
        D.load("folder-lt", root=tmp_path, ratio=4)
    with pytest.raises(D.DatasetNotFoundError, match="train"):
        D.load("folder-lt", root=tmp_path / "nowhere")


# --------------------------------------------------------------------------------------------
# Probe subsets
# --------------------------------------------------------------------------------------------


def test_balanced_subset():
    labels = np.repeat(np.arange(3), [5, 4, 6])
    subset = D.balanced_subset(labels, 4, seed=0)
    assert np.bincount(labels[subset]).tolist() == [4, 4, 4] and np.unique(subset).size == 12
    assert np.array_equal(subset, D.balanced_subset(labels, 4, seed=0))
    assert not np.array_equal(subset, D.balanced_subset(labels, 4, seed=1))
    restricted = D.balanced_subset(labels, 2, seed=0, pool_indices=np.array([0, 1, 5, 6, 9, 10]))
    assert restricted.tolist() == [0, 1, 5, 6, 9, 10]
    with pytest.raises(ValueError, match="class 1 has 4"):
        D.balanced_subset(labels, 5, seed=0)


def test_probe_subsets_on_digits():
    data = D.load("digits-lt")
    one_pct = D.one_percent_subset(data, seed=0)  # 1 % of 124 → at least 1 per class
    assert one_pct.source == "pool" and sorted(one_pct.labels(data).tolist()) == list(range(10))
    many = D.many_shot_subset(data, per_class=100, seed=0)
    assert np.bincount(many.labels(data).numpy()).tolist() == [100] * 10
    smallest = D.many_shot_subset(data, per_class="min", seed=0)
    assert smallest.source == "train"
    assert np.bincount(smallest.labels(data).numpy()).tolist() == [12] * 10
    assert smallest.images(data).shape == (120, 3, 16, 16)
    with pytest.raises(ValueError, match="fewer than per_class=200"):
        D.many_shot_subset(data, per_class=200)
    with pytest.raises(ValueError, match="'min'"):
        D.many_shot_subset(data, per_class="max")


# --------------------------------------------------------------------------------------------
# Bad input: one named error each, raised before any file is read
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        (("mnist-lt",), {}, ValueError, "valid names: cifar10-lt, cifar100-lt"),
        (("digits-lt",), dict(split="sdclr:1"), ValueError, "valid: exp, step"),
        (("cifar10-lt",), dict(split="sdclr:6"), ValueError, "sdclr:5"),
        (("imagenet100-lt",), dict(split="exp"), ValueError, "official"),
        (("digits-lt",), dict(ratio=0.5), ValueError, "ratio"),
        (("digits-lt",), dict(ratio=float("nan")), ValueError, "ratio"),
        (("cifar10-lt",), dict(split="sdclr:1", ratio=50), ValueError, "fixed ratio 100"),
        (("cifar10-lt",), dict(split="sdclr:1", n_max=4500), ValueError, "n_max"),
        (("digits-lt",), dict(n_max=0), ValueError, "n_max"),
        (("digits-lt",), dict(n_max=500), ValueError, "at most 124"),
        (("digits-lt",), dict(seed=-1), ValueError, "seed"),
        (("digits-lt",), dict(image_size=0), ValueError, "image_size"),
        (("digits-lt",), dict(step_fraction=2.0), ValueError, "step_fraction"),
        (("digits-lt",), dict(test_per_class=174), ValueError, "at most 173"),
        (("digits-lt",), dict(list_dir="x"), TypeError, "test_per_class"),
        (("cifar10-lt",), dict(num_workers=2), TypeError, "none"),
        (("folder-lt",), {}, ValueError, "root"),
    ],
)
def test_bad_input_gives_a_named_error(data_dir, args, kwargs, error, match):
    with pytest.raises(error, match=match):
        D.load(*args, **kwargs)
    assert not data_dir.exists()
