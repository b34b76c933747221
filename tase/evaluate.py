"""Evaluation protocols of SPEC §5: frozen features, k-NN and linear probes, per-class accuracy.

Every number is a **mean per-class accuracy in percent** (0-100, as in the paper tables) on the
balanced test set, also reported for the many / medium / few groups with the population std
(``ddof=0``) of the three group accuracies.

=============  ============================================================================
protocol       training set / support                      classifier
=============  ============================================================================
``knn1``       LT training set                             1-NN, cosine similarity
``knn10``      LT training set                             10-NN majority vote
``wknn200``    LT training set                             200-NN, votes exp(sim / 0.1)
``ms_lp``      many-shot subset (100/class of the pool;    linear probe
               ``"min"``: smallest LT class count per
               class, drawn from the LT set, TS's "FS")
``one_pct_lp`` 1% subset (official ``subsets["one_pct"]``  linear probe
               when present, else 1% of the pool per
               class, at least 1)
``lt_lp``      whole LT training set                       linear probe
``full_lp``    whole balanced pool                         linear probe
=============  ============================================================================

The protocol follows the released evaluation notebooks of TS (Kukleva et al., ICLR 2023,
``Annusha/temperature_schedules/notebooks``): L2-normalised backbone features, nearest neighbours
on the LT set, ``LinearSVC(random_state=42)`` with default ``C = 1`` as probe, and the "FS"
subset (``many_shot="min"``): the smallest LT class count of every class, drawn from the LT set.

``evaluate`` is the entry point: it extracts features once, runs the requested protocols and
writes ``metrics.json`` and ``per_class.csv`` into the run directory (atomically), reusing the
cached metrics when they already cover the request.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

PROTOCOLS: tuple[str, ...] = (
    "knn1",
    "knn10",
    "wknn200",
    "ms_lp",
    "one_pct_lp",
    "lt_lp",
    "full_lp",
)
KNN_PROTOCOLS: dict[str, dict[str, Any]] = {
    "knn1": {"k": 1, "weighted": False},
    "knn10": {"k": 10, "weighted": False},
    "wknn200": {"k": 200, "weighted": True, "temperature": 0.1},
}
PROBE_METHODS: tuple[str, ...] = ("svc", "logreg")
GROUP_NAMES: tuple[str, ...] = ("many", "medium", "few")
GROUP_SUFFIXES: tuple[str, ...] = ("_many", "_medium", "_few", "_group_std")

# Similarity entries per k-NN chunk when ``chunk_size`` is not given (128 MiB of float32).
_KNN_CHUNK_ELEMENTS = 2**25


class MissingClassError(ValueError):
    """A linear probe's training set lacks some classes; ``missing`` lists them."""

    def __init__(self, missing: Sequence[int], n_classes: int):
        self.missing = [int(c) for c in missing]
        shown = ", ".join(str(c) for c in self.missing[:20])
        more = f" (+{len(self.missing) - 20} more)" if len(self.missing) > 20 else ""
        super().__init__(
            f"the probe's training set has no example of {len(self.missing)} of {n_classes} "
            f"classes: {shown}{more}"
        )


# --------------------------------------------------------------------------------------------
# Features


def extract_features(
    model: torch.nn.Module,
    images: torch.Tensor | np.ndarray,
    batch_size: int = 512,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """L2-normalised backbone features of uint8 images, without augmentation.

    Args:
        model: an encoder with ``.backbone`` (float images in [0, 1], N×3×H×W, normalised
            inside; see docs/CONTRACTS.md) and optionally ``.input_size`` (int or (H, W)).
        images: uint8 tensor or array N×3×H×W. Converted to [0, 1]; resized (bilinear,
            antialiased) to ``model.input_size`` when that differs from H×W.
        batch_size: images per forward pass.
        device: where the forward passes run; default: the device of the model's parameters.
            The model is moved there for the call and back afterwards.

    Returns:
        float32 tensor (N, d) on the CPU, rows of unit norm.

    The model runs in eval mode under ``torch.no_grad``; the train/eval flag of every submodule
    is restored on exit, whatever it was (also on error).

    Raises:
        ValueError: images not uint8 or not N×3×H×W, ``batch_size`` < 1, no ``.backbone``.
    """
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (N×3×H×W in 0..255), got dtype {images.dtype}")
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"images must have shape N×3×H×W, got {tuple(images.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    backbone = getattr(model, "backbone", None)
    if backbone is None:
        raise ValueError("model has no .backbone (see docs/CONTRACTS.md, tase.models)")
    size = _input_size(model, images.shape[-2:])

    home = _module_device(model)
    device = torch.device(device) if device is not None else home
    modes = [(m, m.training) for m in model.modules()]
    chunks = []
    try:
        model.to(device)
        model.eval()
        with torch.no_grad():
            for start in range(0, images.shape[0], batch_size):
                x = images[start : start + batch_size].to(device, non_blocking=True)
                x = x.to(_module_dtype(model)).div_(255.0)
                if tuple(x.shape[-2:]) != size:
                    x = F.interpolate(x, size=size, mode="bilinear", antialias=True,
                                      align_corners=False)
                feats = backbone(x).flatten(1).float()
                chunks.append(F.normalize(feats, dim=1).cpu())
    finally:
        model.to(home)
        for module, training in modes:
            module.training = training
    if not chunks:
        dim = getattr(model, "feature_dim", 0)
        return torch.empty(0, dim, dtype=torch.float32)
    return torch.cat(chunks)


def _input_size(model: torch.nn.Module, current: Sequence[int]) -> tuple[int, int]:
    size = getattr(model, "input_size", None)
    if size is None:
        return int(current[0]), int(current[1])
    if isinstance(size, int):
        return size, size
    return int(size[0]), int(size[1])


def _module_dtype(model: torch.nn.Module) -> torch.dtype:
    for tensor in model.parameters():
        return tensor.dtype if tensor.is_floating_point() else torch.float32
    return torch.float32


def _module_device(model: torch.nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# k-NN


def knn_predict(
    support: torch.Tensor,
    support_labels: torch.Tensor | np.ndarray,
    queries: torch.Tensor,
    k: int,
    weighted: bool = False,
    temperature: float = 0.1,
    n_classes: int | None = None,
    chunk_size: int | None = None,
    tie_break: str = "nearest",
) -> torch.Tensor:
    """k-nearest-neighbour labels under cosine similarity.

    Rows of ``support`` and ``queries`` are L2-normalised here; similarities are computed for
    ``chunk_size`` queries at a time (default: as many as fit in 2^25 similarity entries, so 50k
    support × 10k queries never materialises the full matrix), keeping only each chunk's top k.
    Runs on the device of ``support``.

    Unweighted (``knn1``, ``knn10``): majority vote among the k nearest. **Ties** between classes
    with the same number of votes go, with ``tie_break="nearest"`` (default), to the class whose
    nearest member is most similar to the query, i.e. the one that appears first in the sorted
    neighbour list (for k = 1 and k = 2 this is simply the nearest neighbour's class). With
    ``tie_break="lowest_label"`` the smallest class index wins: what ``np.argmax`` over vote
    counts does in TS's evaluation notebooks. Exactly equal similarities are ordered as
    ``torch.topk`` returns them.

    Weighted (``wknn200``; InstDisc, Wu et al. 2018): each of the k neighbours votes
    ``exp(sim / temperature)`` for its class, the largest total wins (computed as
    ``exp((sim - max sim) / temperature)``, the same argmax without overflow at small
    temperatures; exact ties go to the smallest class index).

    Args:
        support: (N, d) features; support_labels: (N,) ints in [0, n_classes).
        queries: (M, d) features.
        k: neighbours, 1 <= k <= N (k may exceed the size of a class).
        weighted, temperature: see above; temperature > 0.
        n_classes: number of classes (default: largest support label + 1).
        chunk_size: queries per similarity block.
        tie_break: ``"nearest"`` or ``"lowest_label"`` (unweighted vote only).

    Returns:
        int64 tensor (M,) of predicted labels, on the CPU.

    Raises:
        ValueError: shapes disagree, k outside [1, N], temperature <= 0, labels outside
            [0, n_classes), unknown tie_break, chunk_size < 1.
    """
    support = torch.as_tensor(support)
    queries = torch.as_tensor(queries)
    if support.ndim != 2 or queries.ndim != 2:
        raise ValueError(
            f"support and queries must be 2-D, got {tuple(support.shape)} and "
            f"{tuple(queries.shape)}"
        )
    if support.shape[1] != queries.shape[1]:
        raise ValueError(
            f"feature dimensions differ: support {support.shape[1]}, queries {queries.shape[1]}"
        )
    n_support = support.shape[0]
    device = support.device
    labels = torch.as_tensor(np.asarray(support_labels), dtype=torch.int64).to(device)
    if labels.shape != (n_support,):
        raise ValueError(
            f"support_labels must have shape ({n_support},), got {tuple(labels.shape)}"
        )
    if not 1 <= k <= n_support:
        raise ValueError(f"k must be in [1, {n_support}] (the support size), got {k}")
    if weighted and not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if tie_break not in ("nearest", "lowest_label"):
        raise ValueError(f"tie_break must be 'nearest' or 'lowest_label', got {tie_break!r}")
    n_classes = _check_labels(labels, n_classes, "support_labels")
    if chunk_size is None:
        chunk_size = max(1, _KNN_CHUNK_ELEMENTS // n_support)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")

    support = F.normalize(support.float(), dim=1)
    predictions = torch.empty(queries.shape[0], dtype=torch.int64)
    for start in range(0, queries.shape[0], chunk_size):
        block = F.normalize(queries[start : start + chunk_size].to(device).float(), dim=1)
        top_sim, top_idx = (block @ support.T).topk(k, dim=1)  # sorted, most similar first
        top_labels = labels[top_idx]
        rows = block.shape[0]
        if weighted:
            weights = ((top_sim - top_sim[:, :1]) / temperature).exp()
            votes = torch.zeros(rows, n_classes, device=device, dtype=weights.dtype)
            votes.scatter_add_(1, top_labels, weights)
        else:
            votes = torch.zeros(rows, n_classes, device=device, dtype=torch.int64)
            votes.scatter_add_(1, top_labels, torch.ones_like(top_labels))
            if tie_break == "nearest":
                # Integer key: votes dominate; among equal votes the earliest first rank wins.
                ranks = torch.arange(k, device=device).expand(rows, k)
                first = torch.full((rows, n_classes), k, device=device, dtype=torch.int64)
                first.scatter_reduce_(1, top_labels, ranks, reduce="amin")
                votes = votes * (k + 1) + (k - first)
        predictions[start : start + rows] = votes.argmax(dim=1).cpu()
    return predictions


def _check_labels(labels: torch.Tensor, n_classes: int | None, name: str) -> int:
    if labels.numel() == 0:
        if n_classes is None:
            raise ValueError(f"{name} is empty and n_classes is not given")
        return n_classes
    low, high = int(labels.min()), int(labels.max())
    if n_classes is None:
        n_classes = high + 1
    if low < 0 or high >= n_classes:
        raise ValueError(f"{name} must lie in [0, {n_classes}), found range [{low}, {high}]")
    return n_classes


# --------------------------------------------------------------------------------------------
# Accuracy


def per_class_accuracy(true, pred, n_classes: int) -> np.ndarray:
    """Accuracy of each class in percent, shape (n_classes,); NaN for a class with no sample.

    Raises:
        ValueError: lengths differ or labels outside [0, n_classes).
    """
    true = np.asarray(true, dtype=np.int64).ravel()
    pred = np.asarray(pred, dtype=np.int64).ravel()
    if true.shape != pred.shape:
        raise ValueError(f"true and pred differ in length: {true.size} vs {pred.size}")
    for name, values in (("true", true), ("pred", pred)):
        if values.size and (values.min() < 0 or values.max() >= n_classes):
            raise ValueError(f"{name} labels must lie in [0, {n_classes})")
    total = np.bincount(true, minlength=n_classes).astype(np.float64)
    correct = np.bincount(true[true == pred], minlength=n_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, 100.0 * correct / total, np.nan)


def mean_per_class_accuracy(true, pred, n_classes: int) -> float:
    """Mean over classes (those with at least one sample) of the per-class accuracy, percent."""
    per_class = per_class_accuracy(true, pred, n_classes)
    if np.all(np.isnan(per_class)):
        raise ValueError("no samples to score")
    return float(np.nanmean(per_class))


def group_accuracies(per_class: np.ndarray, groups: np.ndarray) -> dict[str, float]:
    """Mean per-class accuracy of the many (0) / medium (1) / few (2) groups, and their spread.

    Args:
        per_class: (C,) per-class accuracies (NaN entries, classes without a test sample, are
            skipped).
        groups: (C,) group ids, 0 many, 1 medium, 2 few (``LTDataset.groups``).

    Returns:
        ``{"many", "medium", "few", "group_std"}``; ``group_std`` is the population std
        (``ddof=0``) of the group accuracies. A group without scored classes is NaN and left out
        of ``group_std``.
    """
    per_class = np.asarray(per_class, dtype=np.float64)
    groups = np.asarray(groups, dtype=np.int64)
    if per_class.shape != groups.shape:
        raise ValueError(f"per_class {per_class.shape} and groups {groups.shape} differ")
    if groups.size and (groups.min() < 0 or groups.max() > 2):
        raise ValueError("groups must be 0 (many), 1 (medium) or 2 (few)")
    result: dict[str, float] = {}
    for gid, name in enumerate(GROUP_NAMES):
        values = per_class[(groups == gid) & ~np.isnan(per_class)]
        result[name] = float(values.mean()) if values.size else math.nan
    present = [v for v in result.values() if not math.isnan(v)]
    result["group_std"] = float(np.std(present)) if present else math.nan
    return result


# --------------------------------------------------------------------------------------------
# Linear probes


def linear_probe(
    train_x,
    train_y,
    test_x,
    n_classes: int,
    method: str = "svc",
    seed: int = 42,
    C: float = 1.0,
    max_iter: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """Fit a linear classifier on frozen features and predict the test labels.

    ``"svc"`` (default, TS protocol): ``sklearn.svm.LinearSVC(C=C, random_state=seed,
    dual=True, max_iter=1000)``, one-vs-rest, squared hinge, on the CPU. ``dual=True`` is what
    TS's notebooks ran (the scikit-learn default before 1.3), and is 3-4× faster than the primal
    solver on these shapes.

    ``"logreg"``: multinomial logistic regression in torch on ``device`` (default: the device of
    ``train_x``), full-batch L-BFGS (strong Wolfe line search, at most ``max_iter`` = 500
    iterations) from zero weights on the objective of ``sklearn.linear_model.LogisticRegression``
    with the same ``C``: mean cross-entropy + ||W||² / (2·C·n), bias unpenalised. Convex and
    started at zero, so deterministic; ``seed`` is unused. For large pools on a GPU. On unit-norm
    features ``C = 1`` is a strong penalty: on an imbalanced training set (``lt_lp``) the
    probe then leans on the class prior (benchmarks/evaluate.py: 48 % with C = 1, 71 % with
    C = 100, LinearSVC 79 % on the same synthetic LT features; balanced sets are unaffected).

    Features are used as given (already L2-normalised by :func:`extract_features`).

    Returns:
        int64 tensor of predicted labels, on the CPU.

    Raises:
        ValueError: unknown method, lengths or dimensions disagree, labels outside
            [0, n_classes).
        MissingClassError: some class has no training example (the message lists them).
    """
    if method not in PROBE_METHODS:
        raise ValueError(f"unknown probe method {method!r}; choose one of {PROBE_METHODS}")
    train_x = torch.as_tensor(train_x)
    test_x = torch.as_tensor(test_x)
    train_y = torch.as_tensor(np.asarray(train_y), dtype=torch.int64)
    if train_x.ndim != 2 or test_x.ndim != 2:
        raise ValueError("train_x and test_x must be 2-D (N, d)")
    if train_x.shape[0] != train_y.shape[0]:
        raise ValueError(
            f"train_x has {train_x.shape[0]} rows but train_y has {train_y.shape[0]} labels"
        )
    if train_x.shape[1] != test_x.shape[1]:
        raise ValueError(
            f"feature dimensions differ: train {train_x.shape[1]}, test {test_x.shape[1]}"
        )
    _check_labels(train_y, n_classes, "train_y")
    missing = np.setdiff1d(np.arange(n_classes), train_y.numpy())
    if missing.size:
        raise MissingClassError(missing, n_classes)
    if not C > 0:
        raise ValueError(f"C must be > 0, got {C}")

    if method == "svc":
        from sklearn.svm import LinearSVC

        svc = LinearSVC(C=C, random_state=seed, dual=True, max_iter=max_iter or 1000)
        if n_classes == 1:
            return torch.zeros(test_x.shape[0], dtype=torch.int64)
        svc.fit(train_x.float().cpu().numpy(), train_y.numpy())
        return torch.as_tensor(svc.predict(test_x.float().cpu().numpy()), dtype=torch.int64)

    device = torch.device(device) if device is not None else train_x.device
    return _logistic_regression(train_x, train_y, test_x, n_classes, C, max_iter or 500, device)


def _logistic_regression(train_x, train_y, test_x, n_classes, C, max_iter, device):
    x = train_x.to(device=device, dtype=torch.float32)
    y = train_y.to(device)
    n, dim = x.shape
    weight = torch.zeros(dim, n_classes, device=device, requires_grad=True)
    bias = torch.zeros(n_classes, device=device, requires_grad=True)
    penalty = 0.5 / (C * n)

    def objective():
        weight.grad = bias.grad = None
        loss = F.cross_entropy(x @ weight + bias, y) + penalty * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        objective()
        # L2-normalised features make every gradient small: stop when the largest gradient
        # entry has shrunk 1e5-fold from its value at zero, not at a fixed absolute size.
        start = max(weight.grad.abs().max().item(), bias.grad.abs().max().item())
        optimiser = torch.optim.LBFGS(
            [weight, bias], lr=1.0, max_iter=max_iter, history_size=20,
            line_search_fn="strong_wolfe", tolerance_grad=1e-5 * start, tolerance_change=1e-12,
        )
        optimiser.step(objective)
    with torch.no_grad():
        logits = test_x.to(device=device, dtype=torch.float32) @ weight + bias
        return logits.argmax(dim=1).cpu()


# --------------------------------------------------------------------------------------------
# Probe training sets


def probe_training_set(dataset, protocol: str, many_shot: int | str = 100, seed: int = 42):
    """Where a probe protocol's training examples come from: ``(source, indices)``.

    ``source`` is ``"train"`` (indices into ``dataset.train_*``, the LT set) or ``"pool"``
    (into ``dataset.pool_*``); ``indices`` is an int64 array, or ``None`` for the whole set.
    The few-shot subsets are ``tase.data.many_shot_subset`` / ``one_percent_subset``
    (deterministic for a seed). Test images are never used: the pool and the test set are
    disjoint by construction.
    """
    if protocol == "lt_lp":
        return "train", None
    if protocol == "full_lp":
        return "pool", None
    from tase.data import many_shot_subset, one_percent_subset

    if protocol == "one_pct_lp":
        subset = one_percent_subset(dataset, seed=seed)
    elif protocol == "ms_lp":
        subset = many_shot_subset(dataset, per_class=many_shot, seed=seed)
    else:
        raise ValueError(f"{protocol!r} is not a linear-probe protocol")
    return subset.source, np.asarray(subset.indices, dtype=np.int64)


def _numpy(values) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.cpu().numpy()
    return np.asarray(values, dtype=np.int64)


# --------------------------------------------------------------------------------------------
# The whole evaluation of one encoder


def evaluate(
    model_or_run,
    dataset,
    protocols: Sequence[str] = PROTOCOLS,
    out_dir: str | os.PathLike | None = None,
    force: bool = False,
    probe: str = "svc",
    seed: int = 42,
    device: str | torch.device | None = None,
    many_shot: int | str = 100,
    probe_C: float = 1.0,
    batch_size: int = 512,
) -> dict[str, Any]:
    """Run the protocols of SPEC §5 on one encoder and (optionally) write the results.

    Args:
        model_or_run: an encoder (``.backbone``, see :func:`extract_features`) or a run
            directory, loaded with ``tase.train.load_encoder``; ``out_dir`` then defaults to it.
        dataset: an ``LTDataset`` or any object with its attributes (``name, split, seed,
            train_images/labels, test_images/labels, pool_images/labels, class_names,
            class_counts, groups, subsets, n_classes``).
        protocols: names from :data:`PROTOCOLS`.
        out_dir: where ``metrics.json`` and ``per_class.csv`` go; ``None``: nothing written and
            nothing cached.
        force: recompute even when ``metrics.json`` covers the request.
        probe: ``"svc"`` or ``"logreg"`` (see :func:`linear_probe`).
        seed: seed of the subsets and of LinearSVC.
        device: features, k-NN and the logreg probe run here (default: the model's device).
        many_shot: images per class of the ``ms_lp`` subset, or ``"min"``.
        probe_C: inverse regularisation strength of the probe (``C`` of :func:`linear_probe`).
        batch_size: images per forward pass.

    Returns:
        the content of ``metrics.json``: for each protocol ``p`` the keys ``p``, ``p_many``,
        ``p_medium``, ``p_few``, ``p_group_std`` (percent; NaN written as null), plus
        ``"header"`` (dataset, split, data_seed, n_classes, seed, probe, probe_C, many_shot,
        protocols, sizes of every training set) and ``"timings"`` (seconds:
        ``features_<set>`` and one per protocol).

    Caching: when ``out_dir/metrics.json`` exists with the same header (dataset, split, seeds,
    probe, probe_C, many_shot) and covers every requested protocol, it is returned as is.
    Otherwise only the missing protocols are computed and merged with the cached ones (all of
    them when ``force`` or when the header differs, in which case the old files are replaced).

    Raises:
        ValueError: unknown protocol or probe; a k-NN protocol with k above the LT set size;
            a many-shot class shorter than ``many_shot``.
        MissingClassError: a probe's training set lacks a class.
    """
    protocols = list(dict.fromkeys(protocols))
    unknown = [p for p in protocols if p not in PROTOCOLS]
    if unknown:
        raise ValueError(f"unknown protocols {unknown}; choose from {PROTOCOLS}")
    if probe not in PROBE_METHODS:
        raise ValueError(f"unknown probe method {probe!r}; choose one of {PROBE_METHODS}")
    n_train = len(dataset.train_labels)
    for name in protocols:
        if name in KNN_PROTOCOLS and KNN_PROTOCOLS[name]["k"] > n_train:
            raise ValueError(
                f"{name} needs k = {KNN_PROTOCOLS[name]['k']} neighbours but the LT training "
                f"set has {n_train} images"
            )

    is_run = isinstance(model_or_run, (str, os.PathLike))
    if is_run and out_dir is None:
        out_dir = model_or_run
    out_dir = Path(out_dir) if out_dir is not None else None

    header = {
        "dataset": str(getattr(dataset, "name", "")),
        "split": _jsonable(getattr(dataset, "split", None)),
        "data_seed": _jsonable(getattr(dataset, "seed", None)),
        "n_classes": int(dataset.n_classes),
        "seed": int(seed),
        "probe": probe,
        "probe_C": float(probe_C),
        "many_shot": many_shot,
    }
    cached = _read_cache(out_dir, header) if (out_dir is not None and not force) else None
    if cached is not None and all(p in cached["header"]["protocols"] for p in protocols):
        return cached
    todo = [p for p in protocols if cached is None or p not in cached["header"]["protocols"]]
    # Only now load the encoder: a run whose metrics are cached is never read from disk.
    if is_run:
        from tase.train import load_encoder

        model = load_encoder(Path(model_or_run))
    else:
        model = model_or_run
    if device is None:
        device = _module_device(model)

    # Plan every training set first, so bad subsets fail before any forward pass.
    n_classes = int(dataset.n_classes)
    labels = {"train": _numpy(dataset.train_labels)}
    if getattr(dataset, "pool_labels", None) is not None:
        labels["pool"] = _numpy(dataset.pool_labels)
    plan: dict[str, tuple[str, np.ndarray | None]] = {}
    for name in todo:
        if name in KNN_PROTOCOLS:
            plan[name] = ("train", None)
            continue
        plan[name] = probe_training_set(dataset, name, many_shot=many_shot, seed=seed)
        source, index = plan[name]
        if source not in labels:
            raise ValueError(f"{name} needs the balanced pool; the dataset has none")
        probe_labels = labels[source] if index is None else labels[source][index]
        missing = np.setdiff1d(np.arange(n_classes), probe_labels)
        if missing.size:
            raise MissingClassError(missing, n_classes)

    timings: dict[str, float] = {}
    features: dict[str, torch.Tensor] = {}
    image_sets = {"test": dataset.test_images, "train": dataset.train_images,
                  "pool": getattr(dataset, "pool_images", None)}
    for name in ["test", *dict.fromkeys(source for source, _ in plan.values())]:
        start = time.perf_counter()
        features[name] = extract_features(model, image_sets[name], batch_size=batch_size,
                                          device=device)
        timings[f"features_{name}"] = time.perf_counter() - start

    test_labels = _numpy(dataset.test_labels)
    groups = np.asarray(dataset.groups, dtype=np.int64)
    metrics: dict[str, float] = {}
    per_class: dict[str, np.ndarray] = {}
    sizes: dict[str, int] = {}
    for name in todo:
        start = time.perf_counter()
        if name in KNN_PROTOCOLS:
            support = features["train"].to(device)
            pred = knn_predict(support, labels["train"], features["test"], n_classes=n_classes,
                               **KNN_PROTOCOLS[name])
            sizes[name] = len(labels["train"])
        else:
            source, index = plan[name]
            train_x, train_y = features[source], labels[source]
            if index is not None:
                train_x, train_y = train_x[torch.as_tensor(index)], train_y[index]
            pred = linear_probe(train_x, train_y, features["test"], n_classes, method=probe,
                                seed=seed, C=probe_C, device=device)
            sizes[name] = len(train_y)
        timings[name] = time.perf_counter() - start
        per_class[name] = per_class_accuracy(test_labels, pred.numpy(), n_classes)
        metrics[name] = float(np.nanmean(per_class[name]))
        for key, value in group_accuracies(per_class[name], groups).items():
            metrics[f"{name}_{key}"] = value

    if cached is not None:
        for name in cached["header"]["protocols"]:
            if name not in todo:
                metrics.update({k: cached.get(k) for k in _metric_keys(name)})
                timings.setdefault(name, cached.get("timings", {}).get(name))
                sizes.setdefault(name, cached["header"].get("sizes", {}).get(name))
                per_class[name] = _read_per_class_column(out_dir, name, n_classes)
    done = [p for p in PROTOCOLS if p in metrics]
    header.update(protocols=done, sizes={p: sizes[p] for p in done})
    result: dict[str, Any] = {k: _nan_to_none(metrics[k]) for p in done for k in _metric_keys(p)}
    result["header"] = header
    result["timings"] = {k: v for k, v in timings.items() if v is not None}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        _write_atomic(out_dir / "per_class.csv", _per_class_csv(dataset, per_class, done))
        _write_atomic(out_dir / "metrics.json", json.dumps(result, indent=2, allow_nan=False))
    return json.loads(json.dumps(result))


def _metric_keys(protocol: str) -> list[str]:
    return [protocol] + [protocol + suffix for suffix in GROUP_SUFFIXES]


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _nan_to_none(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _read_cache(out_dir: Path, header: dict) -> dict | None:
    path = out_dir / "metrics.json"
    if not path.exists():
        return None
    try:
        cached = json.loads(path.read_text())
    except json.JSONDecodeError:
        return None
    cached_header = cached.get("header", {})
    if any(cached_header.get(key) != value for key, value in header.items()):
        return None
    if not (out_dir / "per_class.csv").exists():
        return None
    return cached


def _read_per_class_column(out_dir: Path, protocol: str, n_classes: int) -> np.ndarray:
    values = np.full(n_classes, np.nan)
    with open(out_dir / "per_class.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            cell = row.get(protocol, "")
            values[int(row["class"])] = float(cell) if cell not in ("", None) else np.nan
    return values


def _per_class_csv(dataset, per_class: dict[str, np.ndarray], protocols: list[str]) -> str:
    n_classes = int(dataset.n_classes)
    names = list(getattr(dataset, "class_names", None) or [str(c) for c in range(n_classes)])
    counts = np.asarray(dataset.class_counts, dtype=np.int64)
    groups = np.asarray(dataset.groups, dtype=np.int64)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["class", "name", "count", "group", *protocols])
    for c in range(n_classes):
        cells = ["" if np.isnan(per_class[p][c]) else f"{per_class[p][c]:.4f}" for p in protocols]
        writer.writerow([c, names[c], int(counts[c]), GROUP_NAMES[groups[c]], *cells])
    return buffer.getvalue()


def _write_atomic(path: Path, text: str) -> None:
    handle, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
