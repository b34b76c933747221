"""Pseudo-label diagnostics: how well do TASE's K-means clusters recover the true classes?

Pure functions on NumPy arrays (SPEC §3, notebook ``04_pseudo_label_diagnostics``). True labels are
never used for training; here they only measure the clusterings a run wrote to
``<run>/clusterings/epoch_XXXX.npz``.

Everything starts from the **contingency table** ``M[c, k]`` = number of samples of true class
``c`` with pseudo-label (cluster) ``k`` (C rows, K columns). Two ways to turn clusters into class
predictions:

* **Hungarian (one-to-one)**: the matching of clusters to classes that maximises the number of
  correctly matched samples (Kuhn 1955, via ``scipy.optimize.linear_sum_assignment``), the
  standard unsupervised clustering accuracy (e.g. Xie et al., "Unsupervised Deep Embedding for
  Clustering Analysis", ICML 2016). Each class gets at most one cluster and each cluster at most
  one class. When K > C, K − C clusters stay unmatched and **their samples count as wrong** (the
  strict rule); when K < C, C − K classes stay unmatched and their samples are wrong.
* **Many-to-one (majority)**: every cluster predicts its majority class; several clusters may
  predict the same class. This is cluster purity (Manning et al., "Introduction to Information
  Retrieval", §16.3). It never penalises over-clustering (K = N gives 1.0), so it is reported next
  to the Hungarian accuracy, never instead of it.

NMI (arithmetic normalisation) and ARI come from scikit-learn and do not need a matching.

Groups follow ``tase.data``: ``groups_per_class[c]`` is 0 (many), 1 (medium) or 2 (few).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

GROUP_NAMES = ("many", "medium", "few")
CLUSTERING_KEYS = ("epoch", "labels", "sizes", "tau", "weight", "true_labels")


# --------------------------------------------------------------------------- validation


def _as_labels(values, name: str) -> np.ndarray:
    """A 1-D non-negative int64 array; integral floats (e.g. read from CSV) are accepted."""
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.issubdtype(array.dtype, np.integer):
        if not np.issubdtype(array.dtype, np.floating) or not np.all(np.isfinite(array)):
            raise ValueError(f"{name} must hold integer labels, got dtype {array.dtype}")
        if np.any(array != np.round(array)):
            raise ValueError(f"{name} must hold integer labels, got non-integral values")
    array = array.astype(np.int64)
    if array.min() < 0:
        raise ValueError(f"{name} must be >= 0, got {int(array.min())}")
    return array


def _check_pair(true, pseudo, n_classes: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    true = _as_labels(true, "true")
    pseudo = _as_labels(pseudo, "pseudo")
    if true.shape != pseudo.shape:
        raise ValueError(f"true and pseudo differ in length: {true.size} != {pseudo.size}")
    n_classes = _check_n_classes(true, n_classes)
    return true, pseudo, n_classes


def _check_n_classes(true: np.ndarray, n_classes: int | None) -> int:
    if n_classes is None:
        return int(true.max()) + 1
    if int(n_classes) < 1:
        raise ValueError(f"n_classes must be >= 1, got {n_classes}")
    if true.max() >= n_classes:
        raise ValueError(f"true label {int(true.max())} is out of range for n_classes={n_classes}")
    return int(n_classes)


def _check_groups(groups_per_class) -> np.ndarray:
    groups = _as_labels(groups_per_class, "groups_per_class")
    if groups.max() >= len(GROUP_NAMES):
        raise ValueError(
            f"groups_per_class must hold 0 (many), 1 (medium) or 2 (few), got {int(groups.max())}"
        )
    return groups


# --------------------------------------------------------------------------- matching


def contingency_table(true, pseudo, n_classes: int | None = None) -> np.ndarray:
    """``M[c, k]`` = number of samples with true class ``c`` and pseudo-label ``k``.

    Shape ``(n_classes, max(pseudo) + 1)``; ``n_classes`` defaults to ``max(true) + 1``.
    Raises ``ValueError`` on mismatched lengths, negative or out-of-range labels.
    """
    return _count(*_check_pair(true, pseudo, n_classes))


def _count(true: np.ndarray, pseudo: np.ndarray, n_classes: int) -> np.ndarray:
    n_clusters = int(pseudo.max()) + 1
    flat = np.bincount(true * n_clusters + pseudo, minlength=n_classes * n_clusters)
    return flat.reshape(n_classes, n_clusters)


def hungarian_match(table: np.ndarray) -> dict[int, int]:
    """One-to-one matching ``{cluster: class}`` maximising the matched count of a contingency table.

    Returns ``min(C, K)`` pairs; the clusters (K > C) or classes (K < C) left out are unmatched.
    """
    table = np.asarray(table)
    if table.ndim != 2:
        raise ValueError(f"table must be 2-D (classes x clusters), got shape {table.shape}")
    classes, clusters = linear_sum_assignment(table, maximize=True)
    return {int(k): int(c) for c, k in zip(classes, clusters, strict=True)}


def majority_match(table: np.ndarray) -> dict[int, int]:
    """Many-to-one mapping ``{cluster: majority class}`` of a contingency table.

    Empty clusters are left out; ties go to the lowest class index.
    """
    table = np.asarray(table)
    return {int(k): int(np.argmax(table[:, k])) for k in range(table.shape[1]) if table[:, k].any()}


def _predict(pseudo: np.ndarray, mapping: dict[int, int], n_clusters: int) -> np.ndarray:
    """Class predicted for each sample; -1 (always wrong) for samples of unmatched clusters."""
    lookup = np.full(n_clusters, -1, dtype=np.int64)
    for cluster, cls in mapping.items():
        lookup[cluster] = cls
    return lookup[pseudo]


# --------------------------------------------------------------------------- accuracies


def pseudo_label_accuracy(true, pseudo, n_classes: int | None = None) -> dict:
    """Agreement between pseudo-labels and true classes.

    Args:
        true: true class per sample, integers in ``[0, n_classes)``.
        pseudo: cluster per sample, integers ``>= 0`` (K = ``max(pseudo) + 1`` clusters).
        n_classes: number of classes C; defaults to ``max(true) + 1``.

    Returns:
        ``accuracy``: fraction of samples whose cluster is Hungarian-matched to their class
        (strict rule: samples of unmatched clusters, K > C, or of unmatched classes, K < C,
        are wrong); ``accuracy_many_to_one``: fraction of samples whose cluster's majority class
        is their class; ``nmi``: ``normalized_mutual_info_score`` (arithmetic); ``ari``:
        ``adjusted_rand_score``; ``mapping``: the Hungarian ``{cluster: class}``;
        ``mapping_many_to_one``: ``{cluster: majority class}``; ``n_classes``, ``n_clusters``.

    Raises:
        ValueError: mismatched lengths, empty input, negative or out-of-range labels.
    """
    true, pseudo, n_classes = _check_pair(true, pseudo, n_classes)
    table = _count(true, pseudo, n_classes)
    mapping = hungarian_match(table)
    majority = majority_match(table)
    n = true.size
    return {
        "accuracy": sum(int(table[c, k]) for k, c in mapping.items()) / n,
        "accuracy_many_to_one": int(table.max(axis=0).sum()) / n,
        "nmi": float(normalized_mutual_info_score(true, pseudo)),
        "ari": float(adjusted_rand_score(true, pseudo)),
        "mapping": mapping,
        "mapping_many_to_one": majority,
        "n_classes": n_classes,
        "n_clusters": table.shape[1],
    }


def group_pseudo_label_accuracy(true, pseudo, groups_per_class) -> dict[str, dict]:
    """Pseudo-label agreement restricted to the samples of many / medium / few classes.

    The cluster-to-class mappings (Hungarian and many-to-one) are computed **once on all
    samples** and then scored on each group's samples, so a tail class whose only cluster was
    matched to a head class counts as wrong. NMI and ARI are computed on the group's samples
    alone.

    Args:
        true, pseudo: as in :func:`pseudo_label_accuracy`.
        groups_per_class: group of each class (0 many, 1 medium, 2 few); its length is C.

    Returns:
        ``{group name: {n_samples, n_classes, accuracy, accuracy_many_to_one, nmi, ari}}`` for
        ``"many"``, ``"medium"``, ``"few"``; NaN metrics for a group without samples.
    """
    groups = _check_groups(groups_per_class)
    true, pseudo, n_classes = _check_pair(true, pseudo, len(groups))
    table = _count(true, pseudo, n_classes)
    n_clusters = table.shape[1]
    correct = _predict(pseudo, hungarian_match(table), n_clusters) == true
    correct_majority = _predict(pseudo, majority_match(table), n_clusters) == true
    sample_group = groups[true]
    result = {}
    for g, name in enumerate(GROUP_NAMES):
        mask = sample_group == g
        row = {"n_samples": int(mask.sum()), "n_classes": int((groups == g).sum())}
        if mask.any():
            row["accuracy"] = float(correct[mask].mean())
            row["accuracy_many_to_one"] = float(correct_majority[mask].mean())
            row["nmi"] = float(normalized_mutual_info_score(true[mask], pseudo[mask]))
            row["ari"] = float(adjusted_rand_score(true[mask], pseudo[mask]))
        else:
            row.update(accuracy=np.nan, accuracy_many_to_one=np.nan, nmi=np.nan, ari=np.nan)
        result[name] = row
    return result


# --------------------------------------------------------------------------- per class


def per_class_cluster_stats(true, pseudo, n_classes: int, groups_per_class=None) -> pd.DataFrame:
    """Where each true class lands among the clusters; one row per class.

    Let ``m(c)`` be the **dominant cluster** of class ``c`` (the cluster most of its samples
    land in, ties to the lowest index) and ``h(c)`` its Hungarian-matched cluster. Columns:

    ========================  ================================================================
    ``class``                 class index c
    ``size``                  n_c, samples of class c
    ``dominant_cluster``      m(c)
    ``dominant_share``        |m(c) ∩ c| / n_c, fraction of the class in its dominant cluster
    ``dominant_cluster_size`` |m(c)|
    ``size_ratio``            |m(c)| / n_c (≫ 1: the class shares a big cluster)
    ``purity``                |m(c) ∩ c| / |m(c)|, fraction of the dominant cluster that is c
    ``matched_cluster``       h(c), -1 when the class is unmatched (K < C)
    ``recall``                |h(c) ∩ c| / n_c (0 when unmatched)
    ``host_class``            majority class of m(c); c itself when c is among the tied maxima
    ``merged``                ``host_class != c``: another class owns the cluster c mostly
                              lands in, i.e. c is merged into that class's cluster
    ``group``                 group name, only when ``groups_per_class`` is given
    ========================  ================================================================

    Classes without samples get -1 clusters, NaN ratios and ``merged = False``.
    """
    true, pseudo, n_classes = _check_pair(true, pseudo, n_classes)
    table = _count(true, pseudo, n_classes)
    class_sizes = table.sum(axis=1)
    cluster_sizes = table.sum(axis=0)
    matched = np.full(n_classes, -1, dtype=np.int64)
    for cluster, cls in hungarian_match(table).items():
        matched[cls] = cluster

    rows = []
    for c in range(n_classes):
        n_c = int(class_sizes[c])
        if n_c == 0:
            rows.append(
                dict(
                    size=0,
                    dominant_cluster=-1,
                    dominant_share=np.nan,
                    dominant_cluster_size=0,
                    size_ratio=np.nan,
                    purity=np.nan,
                    matched_cluster=int(matched[c]),
                    recall=np.nan,
                    host_class=-1,
                    merged=False,
                )
            )
            continue
        m = int(np.argmax(table[c]))
        column = table[:, m]
        host = c if column[c] == column.max() else int(np.argmax(column))
        h = int(matched[c])
        rows.append(
            dict(
                size=n_c,
                dominant_cluster=m,
                dominant_share=table[c, m] / n_c,
                dominant_cluster_size=int(cluster_sizes[m]),
                size_ratio=cluster_sizes[m] / n_c,
                purity=table[c, m] / cluster_sizes[m],
                matched_cluster=h,
                recall=(table[c, h] / n_c) if h >= 0 else 0.0,
                host_class=host,
                merged=host != c,
            )
        )
    frame = pd.DataFrame(rows)
    frame.insert(0, "class", np.arange(n_classes))
    if groups_per_class is not None:
        groups = _check_groups(groups_per_class)
        if len(groups) != n_classes:
            raise ValueError(f"groups_per_class has {len(groups)} entries, expected {n_classes}")
        frame["group"] = [GROUP_NAMES[g] for g in groups]
    return frame


def per_class_assignment_stats(true, values, n_classes: int) -> pd.DataFrame:
    """Mean, std (population, ddof = 0) and median of a per-sample quantity for each true class.

    Typical quantities: the per-sample temperature τ_i or negative weight w_j of SPEC §3.
    Columns ``class, count, mean, std, median``; NaN for classes without samples.
    """
    true = _as_labels(true, "true")
    values = np.asarray(values, dtype=np.float64)
    if values.shape != true.shape:
        raise ValueError(f"true and values differ in shape: {true.shape} != {values.shape}")
    n_classes = _check_n_classes(true, n_classes)
    rows = []
    for c in range(n_classes):
        v = values[true == c]
        if v.size:
            rows.append((c, v.size, v.mean(), v.std(), np.median(v)))
        else:
            rows.append((c, 0, np.nan, np.nan, np.nan))
    return pd.DataFrame(rows, columns=["class", "count", "mean", "std", "median"])


def merge_summary(stats_df: pd.DataFrame, groups_per_class) -> dict[str, dict]:
    """Numbers for the conclusion of the diagnostics notebook, per group and for all classes.

    Args:
        stats_df: output of :func:`per_class_cluster_stats` (one row per class, in class order).
        groups_per_class: group of each class (0 many, 1 medium, 2 few).

    Returns:
        ``{"many" | "medium" | "few" | "all": {...}}`` with ``n_classes``, ``n_merged``,
        ``fraction_merged``, ``fraction_merged_into_many`` (the class's dominant cluster is owned
        by a many-shot class other than itself: a tail class absorbed by a head cluster),
        ``mean_recall``, ``mean_purity``, ``mean_dominant_share`` and ``median_size_ratio``.
        Classes without samples are left out; a group without classes gets NaN fractions.
    """
    groups = _check_groups(groups_per_class)
    if len(groups) != len(stats_df):
        raise ValueError(
            f"groups_per_class has {len(groups)} entries, stats_df has {len(stats_df)} rows"
        )
    present = stats_df["size"].to_numpy() > 0
    merged = stats_df["merged"].to_numpy(dtype=bool)
    host = stats_df["host_class"].to_numpy()
    into_many = merged & (groups[np.clip(host, 0, None)] == 0)

    def summarise(mask: np.ndarray) -> dict:
        mask = mask & present
        n = int(mask.sum())
        rows = stats_df[mask]
        return {
            "n_classes": n,
            "n_merged": int(merged[mask].sum()),
            "fraction_merged": merged[mask].mean() if n else np.nan,
            "fraction_merged_into_many": into_many[mask].mean() if n else np.nan,
            "mean_recall": rows["recall"].mean() if n else np.nan,
            "mean_purity": rows["purity"].mean() if n else np.nan,
            "mean_dominant_share": rows["dominant_share"].mean() if n else np.nan,
            "median_size_ratio": rows["size_ratio"].median() if n else np.nan,
        }

    summary = {name: summarise(groups == g) for g, name in enumerate(GROUP_NAMES)}
    summary["all"] = summarise(np.ones(len(groups), dtype=bool))
    return summary


# --------------------------------------------------------------------------- run directories


def load_clusterings(run_dir: str | Path) -> list[dict]:
    """Every clustering a run wrote, ``run_dir/clusterings/epoch_XXXX.npz``, sorted by epoch.

    Each record is a dict of arrays with the keys of :data:`CLUSTERING_KEYS` (``epoch`` as an
    int). A run without a ``clusterings/`` folder (e.g. SimCLR) gives ``[]``.

    Raises:
        FileNotFoundError: ``run_dir`` does not exist.
        ValueError: a file lacks one of the keys.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory not found: {run_dir}")
    records = []
    for path in sorted((run_dir / "clusterings").glob("epoch_*.npz")):
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in CLUSTERING_KEYS if key not in data.files]
            if missing:
                raise ValueError(f"{path} lacks keys {missing}")
            record = {key: data[key] for key in CLUSTERING_KEYS}
        record["epoch"] = int(record["epoch"])
        records.append(record)
    records.sort(key=lambda record: record["epoch"])
    return records


def per_sample_values(record: dict, key: str) -> np.ndarray:
    """A clustering's ``tau`` or ``weight`` as one value per sample.

    Stored arrays may be per sample (length N) or per cluster (length K, then indexed by the
    pseudo-labels); when N == K they are read as per sample.
    """
    values = np.asarray(record[key])
    labels = np.asarray(record["labels"])
    if values.shape == labels.shape:
        return values
    if values.shape == np.asarray(record["sizes"]).shape:
        return values[labels]
    raise ValueError(
        f"{key} has shape {values.shape}: neither per sample {labels.shape} "
        f"nor per cluster {np.asarray(record['sizes']).shape}"
    )


def clustering_history(run_dir: str | Path, groups_per_class=None) -> pd.DataFrame:
    """One row per clustering epoch of a run: agreement with the true classes and cluster sizes.

    Columns: ``epoch, n_clusters, n_empty, size_min, size_max, accuracy, accuracy_many_to_one,
    nmi, ari`` (as in :func:`pseudo_label_accuracy`), ``tau_min, tau_max, weight_min,
    weight_max`` (as stored), and, when ``groups_per_class`` is given, ``accuracy_<group>,
    nmi_<group>, ari_<group>`` for many / medium / few (:func:`group_pseudo_label_accuracy`).
    Sizes are the stored cluster sizes (over the whole training set), so empty clusters count.
    """
    n_classes = None if groups_per_class is None else len(_check_groups(groups_per_class))
    rows = []
    for record in load_clusterings(run_dir):
        sizes = np.asarray(record["sizes"])
        true, labels = record["true_labels"], record["labels"]
        overall = pseudo_label_accuracy(true, labels, n_classes)
        row = {
            "epoch": record["epoch"],
            "n_clusters": int(sizes.size),
            "n_empty": int((sizes == 0).sum()),
            "size_min": int(sizes.min()),
            "size_max": int(sizes.max()),
            "accuracy": overall["accuracy"],
            "accuracy_many_to_one": overall["accuracy_many_to_one"],
            "nmi": overall["nmi"],
            "ari": overall["ari"],
            "tau_min": float(np.min(record["tau"])),
            "tau_max": float(np.max(record["tau"])),
            "weight_min": float(np.min(record["weight"])),
            "weight_max": float(np.max(record["weight"])),
        }
        if groups_per_class is not None:
            by_group = group_pseudo_label_accuracy(true, labels, groups_per_class)
            for name in GROUP_NAMES:
                for metric in ("accuracy", "nmi", "ari"):
                    row[f"{metric}_{name}"] = by_group[name][metric]
        rows.append(row)
    return pd.DataFrame(rows)
