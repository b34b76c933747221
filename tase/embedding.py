"""2-D maps of frozen features and how well true classes separate in them (notebook ``05_umap``).

* :func:`plot_subset`: a deterministic subset of at most ``max_points`` samples, drawn uniformly
  (so a long-tailed set stays long-tailed on the map) and ordered head to tail, so that the few
  tail points are drawn on top of the head classes.
* :func:`clusters_named_by_class`: pseudo-labels renamed after their Hungarian-matched class, so
  a map coloured by cluster uses the colours of the map coloured by class.
* :func:`umap_embedding`: UMAP (McInnes, Healy & Melville, "UMAP: Uniform Manifold Approximation
  and Projection for Dimension Reduction", arXiv 1802.03426) with a fixed ``random_state``,
  cached as ``.npy`` so that re-running a notebook only re-plots. The cache key hashes the
  feature values themselves together with the UMAP parameters: another run, split or subset
  never reads a stale embedding.
* :func:`silhouette_by_group` and :func:`group_scores`: the quantitative companion of the maps,
  silhouette of the true classes (Rousseeuw 1987, cosine distance, via scikit-learn) and kNN
  accuracy, per many / medium / few group.

Groups follow ``tase.data``: ``groups_per_class[c]`` is 0 (many), 1 (medium) or 2 (few).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import silhouette_samples

from tase.diagnostics import GROUP_NAMES, contingency_table, hungarian_match
from tase.evaluate import group_accuracies, knn_predict, per_class_accuracy


def plot_subset(labels, groups_per_class, max_points: int, seed: int = 0) -> np.ndarray:
    """Indices of at most ``max_points`` samples, uniform without replacement, head to tail.

    All samples are kept when there are at most ``max_points``. The subset is a function of
    ``(len(labels), max_points, seed)`` only; the order is by group (many, medium, few), then by
    index, so a scatter drawn in this order puts tail points on top.

    Raises:
        ValueError: ``max_points`` < 1, or a label without a group.
    """
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups_per_class, dtype=np.int64)
    if max_points < 1:
        raise ValueError(f"max_points must be >= 1, got {max_points}")
    if labels.size and (labels.min() < 0 or labels.max() >= groups.size):
        raise ValueError(f"labels must lie in [0, {groups.size}) (one group per class)")
    n = labels.size
    if n > max_points:
        chosen = np.random.default_rng(seed).choice(n, size=max_points, replace=False)
    else:
        chosen = np.arange(n)
    chosen = np.sort(chosen)
    return chosen[np.argsort(groups[labels[chosen]], kind="stable")]


def clusters_named_by_class(true, pseudo, n_classes: int) -> np.ndarray:
    """Pseudo-labels renamed so that a cluster carries the id of its Hungarian-matched class.

    Cluster ids are arbitrary; after renaming, a map coloured by pseudo-label uses the colour of
    the class each cluster stands for, and a class merged into another's cluster shows in that
    class's colour. Clusters left unmatched (K > C) get ids ``n_classes, n_classes + 1, ...`` in
    the order of their original ids.
    """
    pseudo = np.asarray(pseudo, dtype=np.int64)
    table = contingency_table(true, pseudo, n_classes)
    mapping = hungarian_match(table)
    unmatched = [k for k in range(table.shape[1]) if k not in mapping]
    mapping.update({k: n_classes + i for i, k in enumerate(unmatched)})
    lookup = np.array([mapping[k] for k in range(table.shape[1])], dtype=np.int64)
    return lookup[pseudo]


def umap_embedding(
    features,
    cache_dir: str | Path | None = None,
    name: str = "features",
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    metric: str = "cosine",
    random_state: int = 0,
) -> np.ndarray:
    """UMAP of ``features`` (N x d) to N x 2, float32, deterministic for a ``random_state``.

    With ``cache_dir``, the embedding is read from / written to
    ``cache_dir/umap_<name>_<key>.npy``, where ``key`` hashes the float32 feature values, their
    shape and the UMAP parameters; the write is atomic. ``umap`` is imported only on a cache miss
    (its first fit in a process spends ~10 s compiling with numba).

    Raises:
        ValueError: features not 2-D, ``n_neighbors`` < 2 or not below the number of points, a
            ``name`` that is not a bare file-name stem.
    """
    x = np.ascontiguousarray(torch.as_tensor(features).detach().cpu().numpy(), dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be N x d, got shape {x.shape}")
    if not 2 <= n_neighbors < x.shape[0]:
        raise ValueError(f"n_neighbors must be in [2, {x.shape[0] - 1}] (N - 1), got {n_neighbors}")
    if not name or Path(name).name != name:
        raise ValueError(f"name must be a bare file-name stem, got {name!r}")
    settings = dict(n_neighbors=n_neighbors, min_dist=min_dist, metric=metric,
                    random_state=random_state)
    cache_file = None
    if cache_dir is not None:
        digest = hashlib.sha256(x.tobytes())
        digest.update(json.dumps([x.shape, settings], sort_keys=True).encode())
        cache_file = Path(cache_dir) / f"umap_{name}_{digest.hexdigest()[:16]}.npy"
        if cache_file.exists():
            return np.load(cache_file)

    with warnings.catch_warnings():
        # pynndescent imports tqdm.auto, which warns in a kernel without ipywidgets.
        warnings.filterwarnings("ignore", message="IProgress not found")
        import umap  # slow import; only on a cache miss

    # n_jobs=1: a fixed random_state makes UMAP single-threaded anyway (and warns otherwise).
    xy = umap.UMAP(n_components=2, n_jobs=1, **settings).fit_transform(x).astype(np.float32)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=cache_file.parent, suffix=".npy.tmp")
        try:
            with os.fdopen(handle, "wb") as stream:
                np.save(stream, xy)
            os.replace(temporary, cache_file)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return xy


def silhouette_by_group(features, labels, groups_per_class, metric: str = "cosine") -> dict:
    """Silhouette of the true classes, averaged per class, then over the classes of each group.

    Each sample's silhouette ``(b - a) / max(a, b)`` (``a``: mean distance to its own class,
    ``b``: to the nearest other class) comes from ``sklearn.metrics.silhouette_samples`` on all
    samples; averaging per class first gives every class the same say, as the mean per-class
    accuracies do.

    Returns:
        ``{"many", "medium", "few", "all"}`` in [-1, 1]; NaN for a group without samples.

    Raises:
        ValueError: fewer than two classes present, lengths that differ, labels without a group.
    """
    x = torch.as_tensor(features).detach().cpu().numpy()
    labels = np.asarray(labels, dtype=np.int64)
    groups = np.asarray(groups_per_class, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != labels.size:
        raise ValueError(f"features {x.shape} must be N x d with N = {labels.size} labels")
    if labels.size and (labels.min() < 0 or labels.max() >= groups.size):
        raise ValueError(f"labels must lie in [0, {groups.size}) (one group per class)")
    present = np.unique(labels)
    if present.size < 2:
        raise ValueError(f"silhouette needs at least 2 classes, got {present.size}")
    per_sample = silhouette_samples(x, labels, metric=metric)
    per_class = np.array([per_sample[labels == c].mean() for c in present])
    result = {}
    for g, group in enumerate(GROUP_NAMES):
        in_group = groups[present] == g
        result[group] = float(per_class[in_group].mean()) if in_group.any() else float("nan")
    result["all"] = float(per_class.mean())
    return result


def group_scores(
    train_features, train_labels, test_features, test_labels, groups_per_class, k: int = 10
) -> dict[str, float]:
    """Class separation of one encoder's features, per group: the table next to the UMAPs.

    ``silhouette_<group>``: :func:`silhouette_by_group` of the test features (cosine);
    ``knn<k>_<group>`` and ``knn<k>``: k-NN accuracy (percent, mean per class; LT training set
    as support, majority vote under cosine similarity, as ``tase.evaluate``'s ``knn10``).
    """
    groups = np.asarray(groups_per_class, dtype=np.int64)
    n_classes = groups.size
    predicted = knn_predict(torch.as_tensor(train_features), train_labels,
                            torch.as_tensor(test_features), k=k, n_classes=n_classes)
    per_class = per_class_accuracy(test_labels, predicted.numpy(), n_classes)
    knn = group_accuracies(per_class, groups)
    silhouette = silhouette_by_group(test_features, test_labels, groups)
    scores = {f"silhouette_{g}": silhouette[g] for g in (*GROUP_NAMES, "all")}
    scores.update({f"knn{k}_{g}": knn[g] for g in GROUP_NAMES})
    scores[f"knn{k}"] = float(np.nanmean(per_class))
    return scores
