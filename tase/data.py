"""Long-tailed datasets of SPEC §1 behind one call: ``load(name, split, ...) -> LTDataset``.

=================  ========================================  ========================  ===========
name               balanced pool (probes)                    LT train set              test
=================  ========================================  ========================  ===========
``cifar10-lt``     CIFAR-10 train (50,000)                   ``sdclr:K`` or generated  CIFAR test
``cifar100-lt``    CIFAR-100 train (50,000)                  ``sdclr:K`` or generated  CIFAR test
``imagenet100-lt`` SDCLR balanced list ∪ 1 % list (13,297)   official list (12,205)    5,000
``digits-lt``      sklearn digits less the test part         generated                 50 / class
``folder-lt``      every ``root/train/<class>/*`` image      generated                 root/test
=================  ========================================  ========================  ===========

Splits
    ``"exp"`` / ``"step"`` generate an LT set from the pool (:func:`long_tail_counts`,
    :func:`long_tail_indices`); the seed fixes both which class is the head and which images are
    drawn, through ``numpy.random.Generator(PCG64(seed))``, so a seed gives the same split on any
    machine. ``"sdclr:K"`` (CIFAR) and ``"official"`` (ImageNet-100-LT) are the index files of
    SDCLR (Jiang et al., ICML 2021, github.com/VITA-Group/SDCLR, folder ``split/``) that BCL, TS and
    COLT reuse byte for byte.

Official split files
    The files have no licence, so the project never ships them: :func:`fetch_split_file` takes
    them from a local copy (``splits_dir=`` or ``$TASE_SDCLR_SPLITS``, laid out like SDCLR's
    ``split/``) or downloads them from the pinned commit :data:`SDCLR_COMMIT` with
    ``download=True``, always checked against the SHA-256 values in :data:`SDCLR_SHA256`, and
    caches them under ``paths.data_dir()/sdclr-splits/``. A download goes to a temporary file in
    the cache folder and is renamed into place only after its hash matches, so the cache never
    holds a half-written or unverified file.

Images are uint8 tensors ``N×3×H×W`` (grey digits replicated to three channels); labels are int64
tensors; per-class statistics and subset indices are read-only ``np.int64`` arrays. Class counts
and groups are derived from the labels at load time, never copied from a paper.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tase import paths

log = logging.getLogger(__name__)

DATASETS = ("cifar10-lt", "cifar100-lt", "imagenet100-lt", "digits-lt", "folder-lt")
GENERATED_SPLITS = ("exp", "step")
SDCLR_SPLITS = tuple(f"sdclr:{k}" for k in range(1, 6))
GROUP_NAMES = ("many", "medium", "few")

#: Commit of VITA-Group/SDCLR whose ``split/`` folder the official splits are read from.
SDCLR_COMMIT = "f1490fce26e6bb67d2c21b450db5a6e3184e6bc3"
SDCLR_URL = f"https://raw.githubusercontent.com/VITA-Group/SDCLR/{SDCLR_COMMIT}/split/"

# SHA-256 of every file of SDCLR's ``split/`` folder at SDCLR_COMMIT, verbatim from
# ``shared/data/sdclr-splits/SHA256SUMS`` (``sha256sum`` format). A file is used only if it matches.
_SDCLR_SHA256SUMS = """
86637b0277a0e19b84866cc236093aaf38c1694d97a72b8c0bbb272eb3ab5926  cifar10/trainIdxList.npy
c386a19bc0e1c7c2e70c8b4e2b54edcfeef5e310b7aade402d163e6bae076825  cifar10/valIdxList.npy
482bb2cd15900c6500c77c17212fd1fc73725b821d6dab631941e4960956afda  cifar100/cifar100_trainIdxList.npy
d0654dcc18b91345da49ba895a499641ff9d11757245ae79759dc45e9b83ec6d  cifar100/cifar100_valIdxList.npy
1fc27c5e6890b68fea13d280fc0e667aacfbe7c99166c3ce302b131012a12e1a  cifar100_imbSub_with_subsets/cifar100_split1_D_b.npy
109b4ec343997dc34e6b9f85b66f3f0f486d796cc109abadaa3ba645200778e2  cifar100_imbSub_with_subsets/cifar100_split1_D_i.npy
8ce44ccbabbed73aef99668f5fb4a26004df454d3ca3633e092aa8fadcee4e82  cifar100_imbSub_with_subsets/cifar100_split1_S_b.npy
66644da07878d32d474384fab9cdb34afd7bcd37986ebd1353ce1fd8e638b973  cifar100_imbSub_with_subsets/cifar100_split2_D_b.npy
813b59c6741bedc96e8ca0c64beb3457fda2077c97f44d74dc1a93f9501e7679  cifar100_imbSub_with_subsets/cifar100_split2_D_i.npy
27fb63d00fde490abe9152cf2e2d4f36ea890b62b9f45e249416a5d2b0ce36eb  cifar100_imbSub_with_subsets/cifar100_split2_S_b.npy
56581ce65730c6e5c0643ae96574a47b653c76aaacdbbc72a14816a98cd45d58  cifar100_imbSub_with_subsets/cifar100_split3_D_b.npy
7bb5c112bc3e39a189968fdde51a6365e85f0108ec03485de21e272a9084fbbb  cifar100_imbSub_with_subsets/cifar100_split3_D_i.npy
e7678d95ab8cba483d7cb9d7d56363cc237ccbeea0e5ee2aa7e622c585672020  cifar100_imbSub_with_subsets/cifar100_split3_S_b.npy
f74d77fb5e495c122f1ecdec68bbf932b81cbc3e2e9555f977372b8abcbf2bb0  cifar100_imbSub_with_subsets/cifar100_split4_D_b.npy
4de1ed95764e23d52e539c53c2e45f1d99820ae49be3a49a6f822fa0cd220d69  cifar100_imbSub_with_subsets/cifar100_split4_D_i.npy
fa3b4eed3a909878f3356dc5722f2ae970f8596b5705543d57b5aa73fcc431f1  cifar100_imbSub_with_subsets/cifar100_split4_S_b.npy
2f78aa4a106375ad995a0a7cd0cbbd3c948e2f2bc30b7f8dbea04149fb022cb7  cifar100_imbSub_with_subsets/cifar100_split5_D_b.npy
9282893b3f49480603e93424c7ba54918202888ce42c6871e9ec3fa5b8b7e20b  cifar100_imbSub_with_subsets/cifar100_split5_D_i.npy
18eaa14c445c22bf0023166392148118723c178a143f50ca706c7379c50a3078  cifar100_imbSub_with_subsets/cifar100_split5_S_b.npy
7267a3d52b2c2f340d639e225e596fad1acc6863c8ade8c9c4ceefafcfdd7cb4  cifar10_imbSub_with_subsets/split1_D_b.npy
cad730937a5015a32482e0e04df3400de4c153a16fd6f36e74f7b2c9b87e3232  cifar10_imbSub_with_subsets/split1_D_i.npy
9b88cb91aaf60279b0b3024a52d455222d5e8b4fe78e283907d00968a8855a0b  cifar10_imbSub_with_subsets/split1_S_b.npy
3137f17dd38f027f5f98212ad8e6510145934d15247a3385ed27583b18cfac94  cifar10_imbSub_with_subsets/split2_D_b.npy
dfdabe40ca9a403e4089a98315d9605b4ff12a53b1c79e86fed2b35785c149fa  cifar10_imbSub_with_subsets/split2_D_i.npy
9588b6cc1ff2de2e31edc1f33f4cb52e98d3e8a2a61380dbfd163593ecfce781  cifar10_imbSub_with_subsets/split2_S_b.npy
12ba3c0633420b9f6f3b376ff79e1360ee27ef2cfda81dee1aef0f1751007435  cifar10_imbSub_with_subsets/split3_D_b.npy
a61ab24357043482e0fca31b805d6d07146a1cd07441682cd3a9c609bd8de7f7  cifar10_imbSub_with_subsets/split3_D_i.npy
b0ef49b31ccb32344187f37f3528d19a2ae16c2eabe7b8cd7fea8960cc7df79e  cifar10_imbSub_with_subsets/split3_S_b.npy
45e26ae56f0d5256dffba5e6439e781345bb275b2366c4fd03b8c735656e2664  cifar10_imbSub_with_subsets/split4_D_b.npy
6dd2befff7f5423d70eafe65b1cb21a936d9a4c56e2911169f29e4a2a3908a86  cifar10_imbSub_with_subsets/split4_D_i.npy
11cb0e7eb75721a44cb72c94453ed3af7c9b1b250b5daa3928c4f96284c59d01  cifar10_imbSub_with_subsets/split4_S_b.npy
a6695586b18dbf6835c16f5d5b522ffedaa75845abee61ece58e559e26c9e6b9  cifar10_imbSub_with_subsets/split5_D_b.npy
314488d5f93d221b4c38c3418bad1bea43614645d242dc3e437f910fec9cad8c  cifar10_imbSub_with_subsets/split5_D_i.npy
b7ac94838bb476b6a903db9ac13932a61ef0594e53019d198b6cd769c15ba5e4  cifar10_imbSub_with_subsets/split5_S_b.npy
2441627da7561b6d8e45dbcb34db8711ee678808cd88ec9d6d9b8d839a886363  imagenet-100/ImageNet_100_test.txt
e4c423bf2b93f5cf2a2de747bf83dba7763016bdac0203a619f324f890146004  imagenet-100/ImageNet_100_val.txt
57e049bd8c79016dd8e599376a98c8f9f57e9bb82bb9f28758179a34ce2e9f28  imagenet-100/imageNet_100_BL_train.txt
0f94d6eef6935578a1e287a35d337cc0fe4c41059b023247d35a4119c93820bb  imagenet-100/imageNet_100_LT_train.txt
3b09fdbdf937ea7b62201b5619be2c54773907191c6c34425751ebdd57a301a9  imagenet-100/imageNet_100_sub_balance_train_0.01.txt
"""  # noqa: E501

#: Pinned SHA-256 of each SDCLR split file, by path relative to ``split/``.
SDCLR_SHA256 = {line.split()[1]: line.split()[0] for line in _SDCLR_SHA256SUMS.strip().splitlines()}

#: The ImageNet-100-LT list files used, by role, under ``imagenet-100/``.
IMAGENET100_LISTS = {
    "train": "imageNet_100_LT_train.txt",
    "test": "ImageNet_100_test.txt",
    "balanced": "imageNet_100_BL_train.txt",
    "one_pct": "imageNet_100_sub_balance_train_0.01.txt",
}

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")

# Version of the ImageNet decode recipe (resize + crop); part of the cache key so a change of
# recipe can never silently reuse images decoded the old way.
_DECODE_RECIPE = "v1-bilinear-shortside-centercrop"


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class DatasetNotFoundError(FileNotFoundError):
    """Data needed by :func:`load` is not on disk and ``download`` is False (or impossible)."""


class ChecksumError(RuntimeError):
    """A file's SHA-256 differs from the pinned value; the file is not used (nor cached)."""

    def __init__(self, path: str | Path, expected: str, actual: str, hint: str = ""):
        self.path, self.expected, self.actual = str(path), expected, actual
        super().__init__(
            f"SHA-256 mismatch for {self.path}: expected {expected}, got {actual}. {hint}".strip()
        )


class CorruptCacheError(ChecksumError):
    """A cached split file fails its hash and ``download=False`` forbids re-fetching it."""


class DownloadError(ConnectionError):
    """The network fetch of an official split file failed (not a checksum problem)."""


# --------------------------------------------------------------------------------------------
# Long-tail profiles and groups
# --------------------------------------------------------------------------------------------


def long_tail_counts(
    n_max: int, n_classes: int, ratio: float, profile: str = "exp", step_fraction: float = 0.5
) -> np.ndarray:
    """Per-position class sizes of a long-tailed profile, head first (SPEC §1).

    ``exp``: ``n_c = floor(n_max * ratio**(-c / (C - 1)))`` for ``c = 0..C-1`` (the profile of
    LDAM-DRW's CIFAR-LT and SDCLR's splits: ``(4500, 10, 100)`` gives 4500…45, 11,165 images;
    ``(450, 100, 100)`` gives 450…4, 9,754). ``step``: the first ``floor(step_fraction * C)``
    classes keep ``n_max``, the rest ``floor(n_max / ratio)`` (LDAM-DRW's step imbalance, where
    ``step_fraction=0.5`` is its ``C // 2``).

    The product is rounded to 1e-9 before the floor: ``98 * 49**-1`` is 1.9999999999999998 in
    binary floating point and must give 2, not 1.

    Raises ``ValueError`` for ``n_max < 1``, ``n_classes < 1``, ``ratio < 1``, an unknown profile,
    ``step_fraction`` outside [0, 1], or a profile that leaves a class with no image.
    """
    n_max, n_classes = _positive_int("n_max", n_max), _positive_int("n_classes", n_classes)
    ratio = _ratio(ratio)
    if profile == "exp":
        if n_classes == 1:
            exact = np.array([float(n_max)])
        else:
            exponents = -np.arange(n_classes) / (n_classes - 1)
            exact = n_max * np.power(float(ratio), exponents)
    elif profile == "step":
        if not 0.0 <= step_fraction <= 1.0:
            raise ValueError(f"step_fraction must lie in [0, 1], got {step_fraction}")
        n_head = int(np.floor(np.round(step_fraction * n_classes, 9)))
        exact = np.where(np.arange(n_classes) < n_head, float(n_max), n_max / float(ratio))
    else:
        raise ValueError(f"profile must be one of {GENERATED_SPLITS}, got {profile!r}")
    counts = np.floor(np.round(exact, 9)).astype(np.int64)
    if counts.min() < 1:
        raise ValueError(
            f"profile {profile!r} with n_max={n_max} and ratio={ratio} leaves a class with no "
            f"image (smallest count {exact.min():.3g}); lower the ratio or raise n_max"
        )
    return counts


def group_membership(
    class_counts: Sequence[int] | np.ndarray, scheme: str = "thirds"
) -> np.ndarray:
    """Many / medium / few group of each class (0 / 1 / 2), from its LT train count (SPEC §1).

    ``thirds`` (CIFAR, digits, folders): classes sorted by count, descending, ties broken by class
    index; the first ``round(C / 3)`` are many, the last ``round(C / 3)`` few, the rest medium.
    C / 3 is never a half, so the rounding is unambiguous: C = 10 gives 3 / 4 / 3 classes,
    C = 100 gives 33 / 34 / 33. ``imagenet`` (ImageNet-100-LT; the ImageNet-LT convention of
    Liu et al., CVPR 2019): more than 100 images is many, 20 to 100 medium, fewer than 20 few.
    """
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size == 0 or not np.issubdtype(counts.dtype, np.integer):
        raise ValueError("class_counts must be a non-empty 1-D integer array")
    groups = np.empty(counts.size, dtype=np.int64)
    if scheme == "thirds":
        order = np.lexsort((np.arange(counts.size), -counts))
        n_third = int(np.floor(counts.size / 3 + 0.5))
        groups[order] = 1
        groups[order[:n_third]] = 0
        groups[order[counts.size - n_third :]] = 2
    elif scheme == "imagenet":
        groups[:] = np.where(counts > 100, 0, np.where(counts >= 20, 1, 2))
    else:
        raise ValueError(f"scheme must be 'thirds' or 'imagenet', got {scheme!r}")
    return groups


def long_tail_indices(
    pool_labels: np.ndarray | torch.Tensor,
    ratio: float,
    profile: str = "exp",
    seed: int = 0,
    n_max: int | None = None,
    n_classes: int | None = None,
    step_fraction: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw a long-tailed subset of a labelled pool; returns ``(indices, class_order)``.

    ``class_order[p]`` is the class that receives the p-th largest count of
    :func:`long_tail_counts` (``class_order[0]`` is the head); it is a permutation drawn first from
    ``Generator(PCG64(seed))``, then the same generator draws, class by class in index order, the
    images without replacement. ``indices`` (sorted, into ``pool_labels``) are therefore the same
    on every machine for a seed, and two seeds give different draws with the same sorted counts.

    ``n_max`` defaults to the smallest per-class pool count, and may not exceed it: the head can
    land on any class, so a larger value would make some seeds fail and others not.
    """
    labels = _as_numpy_labels(pool_labels)
    n_classes = (
        int(labels.max()) + 1 if n_classes is None else _positive_int("n_classes", n_classes)
    )
    available = np.bincount(labels, minlength=n_classes)
    if available.size > n_classes:
        raise ValueError(f"pool_labels holds labels >= n_classes={n_classes}")
    smallest = int(available.min())
    if n_max is None:
        n_max = smallest
    n_max = _positive_int("n_max", n_max)
    if n_max > smallest:
        raise ValueError(
            f"n_max={n_max} exceeds the smallest class of the pool ({smallest} images, class "
            f"{int(available.argmin())}); n_max must be at most {smallest}"
        )
    counts = long_tail_counts(n_max, n_classes, ratio, profile, step_fraction)
    rng = np.random.Generator(np.random.PCG64(_seed(seed)))
    class_order = rng.permutation(n_classes).astype(np.int64)
    per_class = np.empty(n_classes, dtype=np.int64)
    per_class[class_order] = counts
    chosen = [
        rng.permutation(np.flatnonzero(labels == c))[: per_class[c]] for c in range(n_classes)
    ]
    return np.sort(np.concatenate(chosen)).astype(np.int64), class_order


# --------------------------------------------------------------------------------------------
# The dataset
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LTDataset:
    """A long-tailed training set with its balanced test set and balanced probe pool.

    ``train_images``/``test_images``/``pool_images`` are uint8 tensors ``N×3×S×S`` (``S =
    image_size``) with int64 label tensors. ``class_counts`` and ``groups`` (0 many, 1 medium,
    2 few; :func:`group_membership`) are derived from ``train_labels``. ``subsets`` maps a name
    to read-only ``np.int64`` indices into the pool:

    - ``lt_train``: where the LT train set sits in the pool (CIFAR, digits, folders; not
      ImageNet, whose LT list is not part of its pool);
    - ``one_pct``: the official 1 % few-shot set (SDCLR ``S_b`` / ImageNet 1 % list);
    - ``balanced_control``: SDCLR's balanced control of the same size (``D_b`` / ``BL_train``).

    ``provenance`` records where everything came from (roots, split-file hashes, profile, n_max,
    class order); it is part of :meth:`summary`.
    """

    name: str
    split: str
    seed: int
    ratio: float
    train_images: torch.Tensor
    train_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    pool_images: torch.Tensor
    pool_labels: torch.Tensor
    class_names: tuple[str, ...]
    class_counts: np.ndarray
    groups: np.ndarray
    subsets: dict[str, np.ndarray]
    n_classes: int
    image_size: int
    group_scheme: str = "thirds"
    provenance: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        for part in ("train", "test", "pool"):
            images, labels = getattr(self, f"{part}_images"), getattr(self, f"{part}_labels")
            expected = (3, self.image_size, self.image_size)
            if (
                images.dtype != torch.uint8
                or images.ndim != 4
                or tuple(images.shape[1:]) != expected
            ):
                raise ValueError(
                    f"{part}_images must be uint8 N×{'×'.join(map(str, expected))}, "
                    f"got {images.dtype} {tuple(images.shape)}"
                )
            if labels.dtype != torch.int64 or labels.shape != (images.shape[0],):
                raise ValueError(f"{part}_labels must be int64 of length {images.shape[0]}")
            if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < self.n_classes:
                raise ValueError(f"{part}_labels must lie in [0, {self.n_classes})")
        if len(self.class_names) != self.n_classes:
            raise ValueError(f"{len(self.class_names)} class names for {self.n_classes} classes")
        derived = np.bincount(self.train_labels.numpy(), minlength=self.n_classes)
        if not np.array_equal(derived, self.class_counts):
            raise ValueError("class_counts must equal the per-class counts of train_labels")
        n_pool = self.pool_labels.shape[0]
        for key, indices in self.subsets.items():
            if indices.dtype != np.int64 or indices.ndim != 1:
                raise ValueError(f"subset {key!r} must be a 1-D np.int64 array")
            if indices.size and not 0 <= indices.min() <= indices.max() < n_pool:
                raise ValueError(f"subset {key!r} indexes outside the pool of {n_pool} images")
        if "lt_train" in self.subsets and not torch.equal(
            self.pool_labels[torch.from_numpy(self.subsets["lt_train"])], self.train_labels
        ):
            raise ValueError("subsets['lt_train'] does not point at the train labels in the pool")
        for array in (self.class_counts, self.groups, *self.subsets.values()):
            array.setflags(write=False)

    @property
    def imbalance_ratio(self) -> float:
        """Measured ratio: largest over smallest LT class count."""
        return float(self.class_counts.max() / self.class_counts.min())

    def summary(self) -> dict:
        """JSON-serialisable description: sizes, per-class counts, groups, measured ratio."""
        order = np.lexsort((np.arange(self.n_classes), -self.class_counts))
        return {
            "name": self.name,
            "split": self.split,
            "seed": self.seed,
            "ratio": self.ratio,
            "imbalance_ratio_measured": self.imbalance_ratio,
            "n_classes": self.n_classes,
            "image_size": self.image_size,
            "n_train": int(self.train_labels.shape[0]),
            "n_test": int(self.test_labels.shape[0]),
            "n_pool": int(self.pool_labels.shape[0]),
            "class_names": list(self.class_names),
            "class_counts": self.class_counts.tolist(),
            "head_to_tail": order.tolist(),
            "group_scheme": self.group_scheme,
            "groups": self.groups.tolist(),
            "group_classes": {g: int((self.groups == i).sum()) for i, g in enumerate(GROUP_NAMES)},
            "group_images": {
                g: int(self.class_counts[self.groups == i].sum()) for i, g in enumerate(GROUP_NAMES)
            },
            "test_counts": _bincount(self.test_labels, self.n_classes).tolist(),
            "pool_counts": _bincount(self.pool_labels, self.n_classes).tolist(),
            "subsets": {key: int(indices.size) for key, indices in self.subsets.items()},
            "provenance": self.provenance,
        }

    def describe(self) -> str:
        """Per-class table, head first: class, name, LT count, group, test and pool counts."""
        test = _bincount(self.test_labels, self.n_classes)
        pool = _bincount(self.pool_labels, self.n_classes)
        lines = [
            f"{self.name} split={self.split} seed={self.seed}: {int(self.class_counts.sum())} "
            f"train / {int(test.sum())} test / {int(pool.sum())} pool images, {self.n_classes} "
            f"classes, measured imbalance {self.imbalance_ratio:.1f}",
            f"{'class':>5}  {'name':<20} {'train':>6}  {'group':<6} {'test':>5} {'pool':>6}",
        ]
        for c in np.lexsort((np.arange(self.n_classes), -self.class_counts)):
            lines.append(
                f"{c:>5}  {self.class_names[c][:20]:<20} {self.class_counts[c]:>6}  "
                f"{GROUP_NAMES[self.groups[c]]:<6} {test[c]:>5} {pool[c]:>6}"
            )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Few-shot subsets for the probes (SPEC §5)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeSubset:
    """Indices of a probe training set into ``data.pool_*`` (``source="pool"``) or
    ``data.train_*`` (``source="train"``)."""

    source: str
    indices: np.ndarray

    def images(self, data: LTDataset) -> torch.Tensor:
        return getattr(data, f"{self.source}_images")[torch.tensor(self.indices)]

    def labels(self, data: LTDataset) -> torch.Tensor:
        return getattr(data, f"{self.source}_labels")[torch.tensor(self.indices)]


def balanced_subset(
    labels: np.ndarray | torch.Tensor,
    per_class: int,
    seed: int = 0,
    pool_indices: np.ndarray | None = None,
    n_classes: int | None = None,
) -> np.ndarray:
    """Exactly ``per_class`` indices (into ``labels``) of every class, drawn without replacement.

    Candidates are ``pool_indices`` when given, else all of ``labels``; classes are
    ``0..n_classes-1`` (default: up to the largest label). The draw uses
    ``Generator(PCG64(seed))`` class by class, so it is deterministic; the result is sorted.
    Raises ``ValueError`` when a class has fewer than ``per_class`` candidates.
    """
    labels = _as_numpy_labels(labels)
    per_class = _positive_int("per_class", per_class)
    candidates = (
        np.arange(labels.size, dtype=np.int64)
        if pool_indices is None
        else np.asarray(pool_indices, dtype=np.int64)
    )
    n_classes = int(labels.max()) + 1 if n_classes is None else n_classes
    rng = np.random.Generator(np.random.PCG64(_seed(seed)))
    chosen = []
    for c in range(n_classes):
        of_class = candidates[labels[candidates] == c]
        if of_class.size < per_class:
            raise ValueError(
                f"class {c} has {of_class.size} candidate images, fewer than per_class={per_class}"
            )
        chosen.append(rng.permutation(of_class)[:per_class])
    return np.sort(np.concatenate(chosen))


def one_percent_subset(data: LTDataset, seed: int = 0) -> ProbeSubset:
    """The 1 % probe set (SPEC §1): the official ``S_b`` when the split has one, else 1 % of the
    smallest pool class (at least 1), drawn per class from the pool with :func:`balanced_subset`.
    """
    if "one_pct" in data.subsets:
        return ProbeSubset("pool", data.subsets["one_pct"])
    pool_counts = _bincount(data.pool_labels, data.n_classes)
    per_class = max(1, int(np.floor(np.round(0.01 * pool_counts.min(), 9))))
    return ProbeSubset(
        "pool", balanced_subset(data.pool_labels, per_class, seed, None, data.n_classes)
    )


def many_shot_subset(data: LTDataset, per_class: int | str = 100, seed: int = 0) -> ProbeSubset:
    """The many-shot probe set (SPEC §1): ``per_class`` images per class from the balanced pool,
    or with ``per_class="min"`` the smallest LT class count per class drawn from the LT train set
    (TS's "FS" protocol, Kukleva et al., ICLR 2023)."""
    if per_class == "min":
        smallest = int(data.class_counts.min())
        indices = balanced_subset(data.train_labels, smallest, seed, None, data.n_classes)
        return ProbeSubset("train", indices)
    if isinstance(per_class, str):
        raise ValueError(f"per_class must be a positive int or 'min', got {per_class!r}")
    return ProbeSubset(
        "pool", balanced_subset(data.pool_labels, per_class, seed, None, data.n_classes)
    )


# --------------------------------------------------------------------------------------------
# One call for every dataset
# --------------------------------------------------------------------------------------------

_DEFAULT_SPLIT = {
    "cifar10-lt": "exp",
    "cifar100-lt": "exp",
    "imagenet100-lt": "official",
    "digits-lt": "exp",
    "folder-lt": "exp",
}
_VALID_SPLITS = {
    "cifar10-lt": GENERATED_SPLITS + SDCLR_SPLITS,
    "cifar100-lt": GENERATED_SPLITS + SDCLR_SPLITS,
    "imagenet100-lt": ("official",),
    "digits-lt": GENERATED_SPLITS,
    "folder-lt": GENERATED_SPLITS,
}
_DEFAULT_SIZE = {
    "cifar10-lt": 32,
    "cifar100-lt": 32,
    "imagenet100-lt": 224,
    "digits-lt": 16,
    "folder-lt": 32,
}
_DEFAULT_RATIO = {"digits-lt": 10.0}
_OPTIONS = {
    "digits-lt": {"test_per_class", "test_seed"},
    "imagenet100-lt": {"list_dir", "num_workers"},
    "folder-lt": {"num_workers"},
}
OFFICIAL_RATIO = 100.0


def load(
    name: str,
    split: str | None = None,
    ratio: float | None = None,
    seed: int = 0,
    download: bool = False,
    root: str | Path | None = None,
    n_max: int | None = None,
    image_size: int | None = None,
    step_fraction: float = 0.5,
    splits_dir: str | Path | None = None,
    **options,
) -> LTDataset:
    """Load a long-tailed dataset of SPEC §1.

    Args:
        name: one of :data:`DATASETS`.
        split: ``"exp"`` or ``"step"`` (generated; default except for ImageNet), ``"sdclr:1"``
            .. ``"sdclr:5"`` (official CIFAR splits of SDCLR), ``"official"`` (ImageNet-100-LT).
        ratio: imbalance ratio of a generated profile (>= 1; default 100, digits 10). Official
            splits have a fixed ratio of 100: ``None`` or ``100`` only.
        seed: fixes the class order and the images drawn of a generated split (recorded, unused
            by official splits).
        download: fetch what is missing: CIFAR through torchvision (md5-verified), split and list
            files from SDCLR's pinned commit (SHA-256-verified). ImageNet images are never
            downloaded.
        root: dataset folder; defaults to ``data_dir()/cifar``, ``data_dir()/imagenet``; required
            for ``folder-lt``.
        n_max: head-class size of a generated profile (default and maximum: the smallest class of
            the pool, e.g. 5000 for CIFAR-10, giving LDAM-DRW's 12,406-image CIFAR-10-LT; 4500
            reproduces SDCLR's sizes).
        image_size: side of the square images (defaults: CIFAR 32, ImageNet 224, digits 16,
            folders 32); CIFAR and digits are resized bilinearly when it differs from the source.
        step_fraction: fraction of classes that keep ``n_max`` in the ``step`` profile.
        splits_dir: local copy of SDCLR's ``split/`` folder (default ``$TASE_SDCLR_SPLITS``),
            still hash-checked.
        **options: dataset-specific: ``digits-lt``: ``test_per_class=50``, ``test_seed=0``;
            ``imagenet100-lt``: ``list_dir`` (your own list files, used as given and not
            hash-checked), ``num_workers``; ``folder-lt``: ``num_workers``.

    Raises:
        ValueError: unknown name or split (the message lists the valid ones), ratio < 1, n_max or
            image_size not positive or larger than the pool allows, inconsistent files.
        TypeError: an option the dataset does not take.
        DatasetNotFoundError: data missing and ``download=False`` (the message says how to get it).
        ChecksumError, CorruptCacheError, DownloadError: see :func:`fetch_split_file`.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid names: {', '.join(DATASETS)}")
    split = _DEFAULT_SPLIT[name] if split is None else split
    if split not in _VALID_SPLITS[name]:
        raise ValueError(
            f"unknown split {split!r} for {name}; valid: {', '.join(_VALID_SPLITS[name])}"
        )
    generated = split in GENERATED_SPLITS
    if generated:
        ratio = _ratio(_DEFAULT_RATIO.get(name, 100.0) if ratio is None else ratio)
        if n_max is not None:
            _positive_int("n_max", n_max)
        if not 0.0 <= step_fraction <= 1.0:
            raise ValueError(f"step_fraction must lie in [0, 1], got {step_fraction}")
    else:
        if ratio is not None and _ratio(ratio) != OFFICIAL_RATIO:
            raise ValueError(f"split {split!r} has the fixed ratio {OFFICIAL_RATIO:g}; got {ratio}")
        if n_max is not None:
            raise ValueError(f"n_max does not apply to the official split {split!r}")
        ratio = OFFICIAL_RATIO
    seed = _seed(seed)
    image_size = _positive_int(
        "image_size", _DEFAULT_SIZE[name] if image_size is None else image_size
    )
    unknown = set(options) - _OPTIONS.get(name, set())
    if unknown:
        valid = sorted(_OPTIONS.get(name, set())) or "none"
        raise TypeError(
            f"load({name!r}) got unexpected option(s) {sorted(unknown)}; valid: {valid}"
        )
    if name == "folder-lt" and root is None:
        raise ValueError("folder-lt needs root=<folder with train/<class>/ and test/<class>/>")

    common = dict(name=name, split=split, seed=seed, ratio=float(ratio), image_size=image_size)
    generation = dict(n_max=n_max, step_fraction=step_fraction)
    if name in ("cifar10-lt", "cifar100-lt"):
        data = _load_cifar(common, generation, download, root, splits_dir)
    elif name == "digits-lt":
        data = _load_digits(common, generation, **options)
    elif name == "folder-lt":
        data = _load_folder(common, generation, Path(root), **options)
    else:
        data = _load_imagenet100(common, download, root, splits_dir, **options)
    log.info(
        "%s %s: %d train images, counts %s",
        name,
        split,
        len(data.train_labels),
        data.class_counts.tolist(),
    )
    return data


def _assemble(
    common: dict,
    train: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    pool: tuple[torch.Tensor, torch.Tensor],
    class_names: Sequence[str],
    subsets: dict[str, np.ndarray],
    provenance: dict,
    group_scheme: str = "thirds",
) -> LTDataset:
    n_classes = len(class_names)
    counts = _bincount(train[1], n_classes)
    return LTDataset(
        **common,
        train_images=train[0],
        train_labels=train[1],
        test_images=test[0],
        test_labels=test[1],
        pool_images=pool[0],
        pool_labels=pool[1],
        class_names=tuple(class_names),
        class_counts=counts,
        groups=group_membership(counts, group_scheme),
        subsets=subsets,
        n_classes=n_classes,
        group_scheme=group_scheme,
        provenance=provenance,
    )


def _generated(
    common: dict, generation: dict, pool: tuple[torch.Tensor, torch.Tensor], n_classes: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], np.ndarray, dict]:
    """LT train set drawn from the pool; returns (train, indices into the pool, provenance)."""
    labels = pool[1].numpy()
    n_max = generation["n_max"]
    if n_max is None:
        n_max = int(np.bincount(labels, minlength=n_classes).min())
    indices, class_order = long_tail_indices(
        labels,
        common["ratio"],
        common["split"],
        common["seed"],
        n_max,
        n_classes,
        generation["step_fraction"],
    )
    selected = torch.from_numpy(indices)
    info = {
        "profile": common["split"],
        "n_max": n_max,
        "ratio": common["ratio"],
        "class_order": class_order.tolist(),
    }
    if common["split"] == "step":
        info["step_fraction"] = generation["step_fraction"]
    return (pool[0][selected], pool[1][selected]), indices, info


# --------------------------------------------------------------------------------------------
# CIFAR-10 / CIFAR-100
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _CifarLayout:
    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    meta_file: str
    label_key: str
    names_key: str
    torchvision_class: str
    split_prefix: str


_CIFAR = {
    "cifar10-lt": _CifarLayout(
        "cifar-10-batches-py",
        tuple(f"data_batch_{i}" for i in range(1, 6)),
        ("test_batch",),
        "batches.meta",
        "labels",
        "label_names",
        "CIFAR10",
        "cifar10_imbSub_with_subsets/split",
    ),
    "cifar100-lt": _CifarLayout(
        "cifar-100-python",
        ("train",),
        ("test",),
        "meta",
        "fine_labels",
        "fine_label_names",
        "CIFAR100",
        "cifar100_imbSub_with_subsets/cifar100_split",
    ),
}


def _load_cifar(
    common: dict,
    generation: dict,
    download: bool,
    root: str | Path | None,
    splits_dir: str | Path | None,
) -> LTDataset:
    layout = _CIFAR[common["name"]]
    root = Path(root).expanduser() if root is not None else paths.data_dir() / "cifar"
    folder = root / layout.folder
    needed = [*layout.train_files, *layout.test_files, layout.meta_file]
    split_files: dict[str, tuple[str, Path]] = {}
    if common["split"] in SDCLR_SPLITS:
        # Fetch (or refuse) the split files before reading 150 MB of images.
        k = common["split"].split(":")[1]
        for part in ("D_i", "S_b", "D_b"):
            relpath = f"{layout.split_prefix}{k}_{part}.npy"
            split_files[part] = (relpath, fetch_split_file(relpath, download, splits_dir))
    if download:
        _download_cifar(layout, root)
    missing = [f for f in needed if not (folder / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"{common['name']}: {folder} lacks {', '.join(missing)}. Pass download=True to fetch "
            f"the python archive with torchvision (md5-verified), or extract "
            f"{layout.folder}/ (from the python version of the archive) under {root} "
            f"(root=... or $TASE_DATA/cifar)."
        )
    pool = _read_cifar_batches(folder, layout.train_files, layout.label_key)
    test = _read_cifar_batches(folder, layout.test_files, layout.label_key)
    with open(folder / layout.meta_file, "rb") as f:
        class_names = list(pickle.load(f, encoding="latin1")[layout.names_key])
    n_classes = len(class_names)
    if common["image_size"] != 32:
        pool = (_resize_uint8(pool[0], common["image_size"]), pool[1])
        test = (_resize_uint8(test[0], common["image_size"]), test[1])
    provenance = {
        "source": f"torchvision {layout.torchvision_class} python archive",
        "root": str(root),
    }
    if split_files:
        indices = {
            part: _read_index_file(path, len(pool[1])) for part, (_, path) in split_files.items()
        }
        selected = torch.from_numpy(indices["D_i"])
        train = (pool[0][selected], pool[1][selected])
        subsets = {
            "lt_train": indices["D_i"],
            "one_pct": indices["S_b"],
            "balanced_control": indices["D_b"],
        }
        provenance["split_files"] = {
            relpath: SDCLR_SHA256[relpath] for relpath, _ in split_files.values()
        }
    else:
        train, lt_indices, provenance["generated"] = _generated(common, generation, pool, n_classes)
        subsets = {"lt_train": lt_indices}
    return _assemble(common, train, test, pool, class_names, subsets, provenance)


def _download_cifar(layout: _CifarLayout, root: Path) -> None:
    """torchvision checks the md5 of every batch file and (re)downloads the archive if needed."""
    import torchvision.datasets  # imported here: only a download needs it

    dataset_class = getattr(torchvision.datasets, layout.torchvision_class)
    # train=False: the integrity check covers all files, and loading only the test part is cheap.
    dataset_class(root=str(root), train=False, download=True)


def _read_cifar_batches(
    folder: Path, files: Iterable[str], label_key: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """Images and labels of CIFAR python batches, concatenated in torchvision's order."""
    images, labels = [], []
    for file in files:
        with open(folder / file, "rb") as f:
            # The batches were pickled by Python 2: latin1 turns its str keys into str, as in
            # torchvision, and leaves the numpy payload intact.
            batch = pickle.load(f, encoding="latin1")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(batch[label_key]) != len(data):
            raise ValueError(f"{folder / file} is not a CIFAR python batch (data {data.shape})")
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch[label_key], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _read_index_file(path: Path, pool_size: int) -> np.ndarray:
    indices = np.load(path, allow_pickle=False)
    if indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        raise ValueError(f"{path} is not a 1-D integer index array")
    if indices.size and (indices.min() < 0 or indices.max() >= pool_size):
        raise ValueError(
            f"{path} indexes up to {indices.max()}, but the CIFAR train archive holds "
            f"{pool_size} images; official splits need the full 50,000-image train set"
        )
    if np.unique(indices).size != indices.size:
        raise ValueError(f"{path} repeats indices")
    return indices.astype(np.int64)


# --------------------------------------------------------------------------------------------
# Official split files: local copy, cache, or verified download
# --------------------------------------------------------------------------------------------


def split_cache_dir() -> Path:
    """Where downloaded split files are cached: ``paths.data_dir()/sdclr-splits``."""
    return paths.data_dir() / "sdclr-splits"


def fetch_split_file(
    relpath: str, download: bool = False, splits_dir: str | Path | None = None
) -> Path:
    """Path of a verified SDCLR split file (``relpath`` as in :data:`SDCLR_SHA256`).

    Looked up, in order: ``splits_dir`` (or ``$TASE_SDCLR_SPLITS``), the cache
    :func:`split_cache_dir`, then a download from :data:`SDCLR_URL` when ``download=True``.
    Every file is checked against :data:`SDCLR_SHA256` before use. A download is streamed to a
    temporary file next to its cache path and renamed into place only once its hash matches.

    Raises:
        ValueError: ``relpath`` is not an SDCLR split file.
        ChecksumError: the local copy or the downloaded bytes have the wrong hash (a bad download
            is deleted, never cached).
        CorruptCacheError: the cached file has the wrong hash and ``download=False``; it is not
            used (delete it or pass ``download=True`` to replace it).
        DatasetNotFoundError: the file is nowhere and ``download=False``.
        DownloadError: the network fetch failed.
    """
    if relpath not in SDCLR_SHA256:
        raise ValueError(f"{relpath!r} is not an SDCLR split file; known: {sorted(SDCLR_SHA256)}")
    expected = SDCLR_SHA256[relpath]
    local_root = splits_dir if splits_dir is not None else os.environ.get("TASE_SDCLR_SPLITS")
    if local_root:
        local = Path(local_root).expanduser() / relpath
        if local.is_file():
            actual = _sha256_file(local)
            if actual != expected:
                raise ChecksumError(
                    local,
                    expected,
                    actual,
                    "This local copy differs from SDCLR's file at the pinned commit.",
                )
            return local
    cached = split_cache_dir() / relpath
    if cached.is_file():
        actual = _sha256_file(cached)
        if actual == expected:
            return cached
        if not download:
            raise CorruptCacheError(
                cached,
                expected,
                actual,
                "The cached file is corrupt and was not used; delete it or pass download=True "
                "to fetch it again.",
            )
        cached.unlink()
    if not download:
        raise DatasetNotFoundError(
            f"official split file {relpath} not found. Pass download=True to fetch it from "
            f"SDCLR (commit {SDCLR_COMMIT[:7]}, SHA-256-checked), or point splits_dir= or "
            f"$TASE_SDCLR_SPLITS at a folder laid out like SDCLR's split/ "
            f"(expected cache path: {cached})."
        )
    _download_verified(SDCLR_URL + relpath, cached, expected, relpath)
    return cached


def _download_verified(url: str, target: Path, expected: str, label: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    try:
        digest = hashlib.sha256()
        try:
            with (
                os.fdopen(handle, "wb") as out,
                urllib.request.urlopen(url, timeout=60) as response,
            ):
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except (urllib.error.URLError, OSError) as error:
            raise DownloadError(
                f"could not download {url}: {error}. Without network, copy SDCLR's split/ folder "
                f"and pass splits_dir= (or set $TASE_SDCLR_SPLITS)."
            ) from error
        if digest.hexdigest() != expected:
            raise ChecksumError(
                label, expected, digest.hexdigest(), f"Downloaded from {url}; nothing was cached."
            )
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# digits-lt (offline default)
# --------------------------------------------------------------------------------------------


def _load_digits(
    common: dict, generation: dict, test_per_class: int = 50, test_seed: int = 0
) -> LTDataset:
    """scikit-learn's 1,797 real 8×8 digits; the balanced test part is drawn with ``test_seed``
    (not ``seed``) so every training seed is scored on the same test images."""
    from sklearn.datasets import load_digits  # ships its data: no download

    test_per_class = _positive_int("test_per_class", test_per_class)
    digits = load_digits()
    labels = digits.target.astype(np.int64)
    smallest = int(np.bincount(labels).min())
    if test_per_class >= smallest:
        raise ValueError(
            f"test_per_class={test_per_class} leaves no training image in the smallest digit "
            f"class ({smallest} images); use at most {smallest - 1}"
        )
    # Intensities 0..16 mapped onto 0..255, grey replicated to the three channels of the contract.
    grey = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None]
    images = _resize_uint8(torch.from_numpy(grey), common["image_size"]).expand(-1, 3, -1, -1)
    test_mask = np.zeros(labels.size, dtype=bool)
    test_mask[balanced_subset(labels, test_per_class, test_seed)] = True
    pool_idx, test_idx = np.flatnonzero(~test_mask), np.flatnonzero(test_mask)
    pool = (images[pool_idx].contiguous(), torch.from_numpy(labels[pool_idx]))
    test = (images[test_idx].contiguous(), torch.from_numpy(labels[test_idx]))
    train, lt_indices, info = _generated(common, generation, pool, 10)
    provenance = {
        "source": "sklearn.datasets.load_digits",
        "test_per_class": test_per_class,
        "test_seed": test_seed,
        "generated": info,
    }
    return _assemble(
        common, train, test, pool, [str(d) for d in range(10)], {"lt_train": lt_indices}, provenance
    )


# --------------------------------------------------------------------------------------------
# folder-lt
# --------------------------------------------------------------------------------------------


def _load_folder(
    common: dict, generation: dict, root: Path, num_workers: int | None = None
) -> LTDataset:
    """``root/train/<class>/*`` and ``root/test/<class>/*``; classes are the sorted folder names,
    images are decoded with PIL, their short side resized to ``image_size``, centre-cropped."""
    listings = {}
    for part in ("train", "test"):
        folder = root / part
        if not folder.is_dir():
            raise DatasetNotFoundError(
                f"folder-lt: {folder} does not exist; expected root/train/<class>/* and "
                f"root/test/<class>/* image files"
            )
        listings[part] = {
            d.name: sorted(
                f for f in d.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS
            )
            for d in sorted(folder.iterdir())
            if d.is_dir() and not d.name.startswith(".")
        }
    class_names = list(listings["train"])
    if class_names != list(listings["test"]):
        raise ValueError(
            f"folder-lt: train classes {class_names} differ from test classes "
            f"{list(listings['test'])}"
        )
    for part, listing in listings.items():
        empty = [c for c, files in listing.items() if not files]
        if not class_names or empty:
            raise ValueError(f"folder-lt: {root / part} has no images for classes {empty or 'any'}")

    def read(part: str) -> tuple[torch.Tensor, torch.Tensor]:
        files = [f for c in class_names for f in listings[part][c]]
        labels = np.repeat(
            np.arange(len(class_names)), [len(listings[part][c]) for c in class_names]
        )
        images = _decode_many(files, common["image_size"], num_workers)
        return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64))

    pool, test = read("train"), read("test")
    train, lt_indices, info = _generated(common, generation, pool, len(class_names))
    provenance = {"source": "image folder", "root": str(root), "generated": info}
    return _assemble(common, train, test, pool, class_names, {"lt_train": lt_indices}, provenance)


# --------------------------------------------------------------------------------------------
# imagenet100-lt
# --------------------------------------------------------------------------------------------


def _load_imagenet100(
    common: dict,
    download: bool,
    root: str | Path | None,
    splits_dir: str | Path | None,
    list_dir: str | Path | None = None,
    num_workers: int | None = None,
) -> LTDataset:
    """ImageNet-100-LT of SDCLR: LT train = ``imageNet_100_LT_train.txt`` (12,205 images,
    1280→6), test = ``ImageNet_100_test.txt`` (5,000 ImageNet val images, 50/class).

    Pool (our choice; SDCLR has no single balanced pool file): the balanced control list
    ``imageNet_100_BL_train.txt`` (122/class) followed by the images of the 1 % list
    ``imageNet_100_sub_balance_train_0.01.txt`` (12/class) that it lacks: 13,297 images, 128–134
    per class (``summary()["pool_counts"]``), so that ``subsets["one_pct"]`` is the official 1 % set
    and ``subsets["balanced_control"]`` the official balanced control, both inside the pool.

    Images under ``root`` (default ``data_dir()/imagenet``) as the lists name them:
    ``train/<wnid>/<file>.JPEG`` and ``val/<wnid>/<file>.JPEG`` (val sorted into wnid folders).
    They are decoded once with PIL (RGB, short side resized bilinearly to ``image_size``, centre
    crop, as torchvision's ``Resize`` + ``CenterCrop``) and cached as one uint8 ``N×3×S×S`` ``.npy``
    per list under ``data_dir()/imagenet100-cache/``, keyed by the list's SHA-256, the size and
    the decode recipe, written atomically. The default size 224 is the paper's input size (all
    three sets take about 4.6 GB); ``image_size=160`` halves that.

    ``list_dir`` replaces the official lists by files of the same names in that folder, used as
    given (not hash-checked; recorded in ``provenance``).
    """
    root = Path(root).expanduser() if root is not None else paths.data_dir() / "imagenet"
    lists: dict[str, tuple[list[str], np.ndarray, str]] = {}
    for role, filename in IMAGENET100_LISTS.items():
        if list_dir is not None:
            path = Path(list_dir).expanduser() / filename
            if not path.is_file():
                raise DatasetNotFoundError(f"list file {path} not found (list_dir={list_dir})")
        else:
            path = fetch_split_file(f"imagenet-100/{filename}", download, splits_dir)
        lists[role] = (*read_image_list(path), _sha256_file(path))
    names_of: dict[int, str] = {}
    for role, (files, labels, _) in lists.items():
        for file, label in zip(files, labels, strict=True):
            wnid = Path(file).parent.name
            if names_of.setdefault(int(label), wnid) != wnid:
                raise ValueError(
                    f"{IMAGENET100_LISTS[role]}: label {label} names both "
                    f"{names_of[int(label)]} and {wnid}"
                )
    n_classes = max(names_of) + 1
    if sorted(names_of) != list(range(n_classes)):
        raise ValueError("ImageNet-100 list labels must be 0..C-1 with no gap")

    size = common["image_size"]
    decoded = {
        role: _cached_decode(root, files, digest, size, num_workers)
        for role, (files, _, digest) in lists.items()
    }

    def part(role: str) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(decoded[role]), torch.from_numpy(lists[role][1])

    balanced_files, one_pct_files = lists["balanced"][0], lists["one_pct"][0]
    position = {file: i for i, file in enumerate(balanced_files)}
    extra = [i for i, file in enumerate(one_pct_files) if file not in position]
    for i in extra:
        position[one_pct_files[i]] = len(position)
    extra_t = torch.as_tensor(extra, dtype=torch.int64)
    pool = (
        torch.cat([part("balanced")[0], part("one_pct")[0][extra_t]]),
        torch.cat([part("balanced")[1], part("one_pct")[1][extra_t]]),
    )
    subsets = {
        "one_pct": np.array([position[f] for f in one_pct_files], dtype=np.int64),
        "balanced_control": np.arange(len(balanced_files), dtype=np.int64),
    }
    provenance = {
        "source": "ImageNet folder + SDCLR ImageNet-100-LT lists",
        "root": str(root),
        "lists": {IMAGENET100_LISTS[role]: digest for role, (_, _, digest) in lists.items()},
        "lists_verified": list_dir is None,
        "decode": _DECODE_RECIPE,
    }
    class_names = [names_of[c] for c in range(n_classes)]
    return _assemble(
        common,
        part("train"),
        part("test"),
        pool,
        class_names,
        subsets,
        provenance,
        group_scheme="imagenet",
    )


def read_image_list(path: str | Path) -> tuple[list[str], np.ndarray]:
    """Relative paths and int64 labels of an SDCLR list file (``<path> <label>`` per line)."""
    path = Path(path)
    files, labels = [], []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ValueError(f"{path}:{number}: expected '<relative path> <label>', got {line!r}")
        files.append(parts[0])
        labels.append(int(parts[1]))
    if not files:
        raise ValueError(f"{path} lists no image")
    return files, np.asarray(labels, dtype=np.int64)


def imagenet_cache_path(list_sha256: str, image_size: int) -> Path:
    """Cache of a decoded list: ``data_dir()/imagenet100-cache/<hash>-<size>px-<recipe>.npy``."""
    return (
        paths.data_dir()
        / "imagenet100-cache"
        / (f"{list_sha256[:16]}-{image_size}px-{_DECODE_RECIPE}.npy")
    )


def _cached_decode(
    root: Path, files: list[str], list_sha256: str, size: int, num_workers: int | None
) -> np.ndarray:
    cache = imagenet_cache_path(list_sha256, size)
    expected_shape = (len(files), 3, size, size)
    if cache.is_file():
        try:
            images = np.load(cache, allow_pickle=False)
            if images.shape == expected_shape and images.dtype == np.uint8:
                return images
        except (ValueError, OSError, EOFError):
            pass
        log.warning("rebuilding unreadable or mismatched cache %s", cache)
    missing = [f for f in files if not (root / f).is_file()]
    if missing:
        raise DatasetNotFoundError(
            f"imagenet100-lt: {len(missing)} of {len(files)} listed images are missing under "
            f"{root} (first: {missing[:3]}). ImageNet cannot be downloaded automatically; put the "
            f"ILSVRC-2012 train/<wnid>/ and val/<wnid>/ folders there (root=...)."
        )
    images = _decode_many([root / f for f in files], size, num_workers)
    _save_atomic(cache, images)
    return images


def _save_atomic(target: Path, array: np.ndarray) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=target.parent, prefix=f".{target.name}.", suffix=".part"
    )
    try:
        with os.fdopen(handle, "wb") as out:
            np.save(out, array, allow_pickle=False)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)


# --------------------------------------------------------------------------------------------
# Image helpers
# --------------------------------------------------------------------------------------------


def _decode_square(path: Path, size: int) -> np.ndarray:
    """PIL decode, RGB, short side to ``size`` (bilinear, antialiased), centre crop: 3×S×S uint8."""
    from PIL import Image

    with Image.open(path) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    # Same arithmetic as torchvision's Resize(size) and CenterCrop(size).
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    image = image.resize(new_size, Image.Resampling.BILINEAR)
    left = int(round((new_size[0] - size) / 2.0))
    top = int(round((new_size[1] - size) / 2.0))
    image = image.crop((left, top, left + size, top + size))
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1)


def _decode_many(files: Sequence[Path], size: int, num_workers: int | None) -> np.ndarray:
    out = np.empty((len(files), 3, size, size), dtype=np.uint8)

    def fill(i: int) -> None:
        out[i] = _decode_square(files[i], size)

    # PIL releases the GIL while decoding and resizing, so threads use every core.
    with ThreadPoolExecutor(max_workers=num_workers or os.cpu_count() or 1) as pool:
        list(pool.map(fill, range(len(files))))
    return out


def _resize_uint8(images: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear (antialiased) resize of uint8 ``N×C×H×W`` images to ``size×size``."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    resized = F.interpolate(
        images.float(), size=(size, size), mode="bilinear", align_corners=False, antialias=True
    )
    return resized.round_().clamp_(0, 255).to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Validation helpers
# --------------------------------------------------------------------------------------------


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _ratio(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not value >= 1:
        raise ValueError(f"ratio must be a number >= 1, got {value!r}")
    return float(value)


def _seed(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"seed must be a non-negative integer, got {value!r}")
    return int(value)


def _as_numpy_labels(labels: np.ndarray | torch.Tensor) -> np.ndarray:
    array = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if array.ndim != 1 or array.size == 0 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError("labels must be a non-empty 1-D integer array")
    if array.min() < 0:
        raise ValueError("labels must be non-negative")
    return array.astype(np.int64, copy=False)


def _bincount(labels: torch.Tensor, n_classes: int) -> np.ndarray:
    return np.bincount(labels.numpy(), minlength=n_classes).astype(np.int64)


__all__ = [
    "DATASETS",
    "GROUP_NAMES",
    "IMAGENET100_LISTS",
    "SDCLR_COMMIT",
    "SDCLR_SHA256",
    "SDCLR_URL",
    "ChecksumError",
    "CorruptCacheError",
    "DatasetNotFoundError",
    "DownloadError",
    "LTDataset",
    "ProbeSubset",
    "balanced_subset",
    "fetch_split_file",
    "group_membership",
    "imagenet_cache_path",
    "load",
    "long_tail_counts",
    "long_tail_indices",
    "many_shot_subset",
    "one_percent_subset",
    "read_image_list",
    "split_cache_dir",
]
