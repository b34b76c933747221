"""tase.embedding: deterministic subsets, cached UMAP, silhouette and kNN per group.

UMAP inputs stay at most 300 points; the first fit of the process pays numba's compilation.
"""

import numpy as np
import pytest
import torch

from tase import embedding


def blobs(n_per_class=(40, 25, 10), dim=16, spread=0.05, seed=0):
    """Unit vectors around orthogonal class directions, one class per entry of ``n_per_class``."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(n_per_class)), n_per_class)
    x = np.eye(dim)[labels] + spread * rng.normal(size=(labels.size, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32), labels


# --------------------------------------------------------------------------- plot_subset


def test_plot_subset_keeps_everything_when_small_and_orders_head_to_tail():
    labels = np.array([2, 0, 1, 2, 0, 1])
    groups = np.array([2, 0, 1])  # class 0 few, class 1 many, class 2 medium
    # many (indices 2, 5), then medium (0, 3), then few (1, 4), each by index
    assert embedding.plot_subset(labels, groups, max_points=10).tolist() == [2, 5, 0, 3, 1, 4]


def test_plot_subset_is_uniform_deterministic_and_label_independent():
    labels = np.arange(1000) % 10
    groups = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    first = embedding.plot_subset(labels, groups, max_points=100, seed=3)
    assert first.size == 100 and np.unique(first).size == 100
    assert np.array_equal(first, embedding.plot_subset(labels, groups, max_points=100, seed=3))
    assert not np.array_equal(np.sort(first), np.sort(embedding.plot_subset(labels, groups, 100)))
    # the same samples whatever the labels; only their order follows the groups
    shuffled = np.random.default_rng(0).permutation(labels)
    assert np.array_equal(np.sort(first), np.sort(embedding.plot_subset(shuffled, groups, 100, 3)))
    assert np.all(np.diff(groups[labels[first]]) >= 0)


def test_plot_subset_rejects_bad_input():
    with pytest.raises(ValueError, match="max_points"):
        embedding.plot_subset([0, 1], [0, 1], max_points=0)
    with pytest.raises(ValueError, match="one group per class"):
        embedding.plot_subset([0, 3], [0, 1], max_points=5)


# --------------------------------------------------------------------------- clusters by class


def test_clusters_named_by_class_follow_the_hungarian_matching():
    true = np.array([0, 0, 1, 1, 1, 2])
    pseudo = np.array([2, 2, 0, 0, 1, 1])  # cluster 2 is class 0, 0 is class 1, 1 is class 2
    assert embedding.clusters_named_by_class(true, pseudo, 3).tolist() == [0, 0, 1, 1, 2, 2]


def test_unmatched_clusters_get_ids_after_the_classes():
    true = np.array([0, 0, 1, 1, 1])
    pseudo = np.array([3, 3, 0, 0, 1])  # K = 4 > C = 2: clusters 1 and 2 (empty) stay unmatched
    assert embedding.clusters_named_by_class(true, pseudo, 2).tolist() == [0, 0, 1, 1, 2]


# --------------------------------------------------------------------------- umap_embedding


def test_umap_is_deterministic_cached_and_separates_blobs(tmp_path, monkeypatch):
    x, labels = blobs()
    first = embedding.umap_embedding(x, cache_dir=tmp_path, name="test", random_state=0)
    assert first.shape == (x.shape[0], 2) and first.dtype == np.float32
    (cached,) = tmp_path.glob("umap_test_*.npy")
    # classes that are apart in feature space stay apart on the map
    assert embedding.silhouette_by_group(first, labels, [0, 1, 2], metric="euclidean")["all"] > 0.5

    import umap

    def no_fit(*args, **kwargs):
        raise AssertionError("UMAP refitted although the embedding is cached")

    monkeypatch.setattr(umap, "UMAP", no_fit)
    again = embedding.umap_embedding(torch.from_numpy(x), cache_dir=tmp_path, name="test")
    assert np.array_equal(first, again)
    with pytest.raises(AssertionError, match="refitted"):  # other parameters: another key
        embedding.umap_embedding(x, cache_dir=tmp_path, name="test", min_dist=0.5)
    with pytest.raises(AssertionError, match="refitted"):  # other features: another key
        embedding.umap_embedding(x[:-1], cache_dir=tmp_path, name="test")
    monkeypatch.undo()

    cached.unlink()
    assert np.array_equal(first, embedding.umap_embedding(x, random_state=0))  # same seed, no cache


def test_umap_rejects_bad_input():
    x, _ = blobs()
    with pytest.raises(ValueError, match="N x d"):
        embedding.umap_embedding(x[0])
    with pytest.raises(ValueError, match="n_neighbors"):
        embedding.umap_embedding(x[:10], n_neighbors=15)
    with pytest.raises(ValueError, match="name"):
        embedding.umap_embedding(x, cache_dir=".", name="../escape")


# --------------------------------------------------------------------------- silhouette, kNN


def test_silhouette_by_group_matches_hand_computation():
    # 1-D, euclidean. Class 0 = {0, 2}: s(0) = (12-2)/12, s(2) = (10-2)/10, mean 49/60.
    # Class 1 = {10, 12, 14}: s(10) = (9-3)/9, s(12) = (11-2)/11, s(14) = (13-3)/13.
    x = np.array([[0.0], [2.0], [10.0], [12.0], [14.0]])
    labels = np.array([0, 0, 1, 1, 1])
    few = (6 / 9 + 9 / 11 + 10 / 13) / 3
    scores = embedding.silhouette_by_group(x, labels, [0, 2], metric="euclidean")
    assert scores["many"] == pytest.approx(49 / 60)
    assert scores["few"] == pytest.approx(few)
    assert scores["all"] == pytest.approx((49 / 60 + few) / 2)  # per class, not per sample
    assert np.isnan(scores["medium"])


def test_silhouette_is_one_for_identical_points_per_class_under_cosine():
    x = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 3.0]])
    scores = embedding.silhouette_by_group(x, [0, 0, 1, 1], [0, 1])
    assert scores["many"] == pytest.approx(1.0) and scores["medium"] == pytest.approx(1.0)


def test_silhouette_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 classes"):
        embedding.silhouette_by_group(np.ones((3, 2)), [0, 0, 0], [0])
    with pytest.raises(ValueError, match="N x d"):
        embedding.silhouette_by_group(np.ones((3, 2)), [0, 1], [0, 1])


def test_group_scores_on_separated_and_on_mixed_classes():
    train, train_labels = blobs(seed=0)
    test, test_labels = blobs(n_per_class=(12, 12, 12), seed=1)
    scores = embedding.group_scores(train, train_labels, test, test_labels, [0, 1, 2], k=5)
    assert {scores[f"knn5_{g}"] for g in ("many", "medium", "few")} == {100.0}
    assert scores["knn5"] == 100.0
    assert scores["silhouette_all"] > 0.8
    # every test point of class 2 sits on class 0's direction: all wrong, negative silhouette
    test[test_labels == 2] = test[test_labels == 0]
    scores = embedding.group_scores(train, train_labels, test, test_labels, [0, 1, 2], k=5)
    assert scores["knn5_few"] == 0.0 and scores["knn5_medium"] == 100.0
    assert scores["silhouette_few"] < 0 and scores["silhouette_medium"] > 0.8
