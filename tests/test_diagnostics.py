"""Oracle tests of pseudo-label diagnostics: hand-built contingency tables with exact answers,
brute-force matching and scikit-learn as references."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from tase import diagnostics as D


def labels_from_table(table) -> tuple[np.ndarray, np.ndarray]:
    """(true, pseudo) arrays whose contingency table is ``table`` (classes x clusters)."""
    table = np.asarray(table)
    true, pseudo = [], []
    for c, k in itertools.product(range(table.shape[0]), range(table.shape[1])):
        true += [c] * int(table[c, k])
        pseudo += [k] * int(table[c, k])
    return np.array(true), np.array(pseudo)


# Square case where greedy matching fails (rows = classes, columns = clusters):
#
#         k0  k1  k2   | n_c
#   c0  [  6,  5,  0 ] | 11
#   c1  [  5,  0,  1 ] |  6
#   c2  [  0,  1,  4 ] |  5
#   |k|   11   6   5     N = 22
#
# Greedy takes (c0,k0)=6 first and ends at 6+0+4 = 10. The optimal matching over the 6
# permutations is c0->k1 (5), c1->k0 (5), c2->k2 (4) = 14, so accuracy = 14/22.
# Many-to-one: column maxima 6 + 5 + 4 = 15, accuracy 15/22 (k0 -> c0, k1 -> c0, k2 -> c2).
TABLE_SQUARE = [[6, 5, 0], [5, 0, 1], [0, 1, 4]]


def test_permuted_labelling_is_perfect():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 7, size=200)
    permutation = rng.permutation(7)
    result = D.pseudo_label_accuracy(true, permutation[true])
    assert result["accuracy"] == 1.0
    assert result["accuracy_many_to_one"] == 1.0
    assert result["nmi"] == pytest.approx(1.0)
    assert result["ari"] == pytest.approx(1.0)
    assert result["mapping"] == {int(permutation[c]): c for c in range(7)}


def test_hand_built_square_table():
    true, pseudo = labels_from_table(TABLE_SQUARE)
    np.testing.assert_array_equal(D.contingency_table(true, pseudo), TABLE_SQUARE)
    result = D.pseudo_label_accuracy(true, pseudo)
    assert result["accuracy"] == pytest.approx(14 / 22)
    assert result["accuracy_many_to_one"] == pytest.approx(15 / 22)
    assert result["mapping"] == {1: 0, 0: 1, 2: 2}
    assert result["mapping_many_to_one"] == {0: 0, 1: 0, 2: 2}
    assert (result["n_classes"], result["n_clusters"]) == (3, 3)


def test_more_clusters_than_classes_strict_rule():
    # K = 3 > C = 2:
    #         k0  k1  k2
    #   c0  [  4,  3,  0 ]
    #   c1  [  1,  0,  2 ]     N = 10
    # Matchings: c0k0+c1k2 = 6 (best), c0k1+c1k2 = 5, c0k0+c1k1 = 4, c0k1+c1k0 = 4, ...
    # k1 stays unmatched, its 3 samples are wrong: accuracy 6/10.
    # Many-to-one: k0 -> c0 (4), k1 -> c0 (3), k2 -> c1 (2): 9/10.
    true, pseudo = labels_from_table([[4, 3, 0], [1, 0, 2]])
    result = D.pseudo_label_accuracy(true, pseudo)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["accuracy_many_to_one"] == pytest.approx(0.9)
    assert result["mapping"] == {0: 0, 2: 1}


def test_fewer_clusters_than_classes():
    # K = 2 < C = 3:
    #         k0  k1
    #   c0  [  5,  1 ]
    #   c1  [  2,  3 ]
    #   c2  [  0,  4 ]     N = 15
    # Matchings: c0k0+c2k1 = 9 (best), c0k0+c1k1 = 8, c1k0+c2k1 = 6, ...
    # c1 stays unmatched, its 5 samples are wrong: accuracy 9/15.
    # Many-to-one: k0 -> c0 (5), k1 -> c2 (4): 9/15.
    true, pseudo = labels_from_table([[5, 1], [2, 3], [0, 4]])
    result = D.pseudo_label_accuracy(true, pseudo)
    assert result["accuracy"] == pytest.approx(0.6)
    assert result["accuracy_many_to_one"] == pytest.approx(0.6)
    assert result["mapping"] == {0: 0, 1: 2}


def test_many_to_one_differs_from_hungarian_when_overclustering():
    # Every sample its own cluster: many-to-one is trivially 1, Hungarian keeps C of N clusters.
    true = np.array([0, 0, 0, 1, 1, 2])
    result = D.pseudo_label_accuracy(true, np.arange(6))
    assert result["accuracy_many_to_one"] == 1.0
    assert result["accuracy"] == pytest.approx(3 / 6)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("n_classes,n_clusters", [(4, 4), (3, 5), (5, 3)])
def test_hungarian_matches_brute_force_and_sklearn(seed, n_classes, n_clusters):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, size=60)
    pseudo = np.where(rng.random(60) < 0.6, true % n_clusters, rng.integers(0, n_clusters, 60))
    table = D.contingency_table(true, pseudo, n_classes)
    k = table.shape[1]
    if n_classes <= k:
        best = max(
            sum(table[c, cols[c]] for c in range(n_classes))
            for cols in itertools.permutations(range(k), n_classes)
        )
    else:
        best = max(
            sum(table[rows[j], j] for j in range(k))
            for rows in itertools.permutations(range(n_classes), k)
        )
    result = D.pseudo_label_accuracy(true, pseudo, n_classes)
    assert result["accuracy"] == pytest.approx(best / 60)
    assert result["accuracy_many_to_one"] == pytest.approx(table.max(axis=0).sum() / 60)
    assert result["nmi"] == pytest.approx(normalized_mutual_info_score(true, pseudo))
    assert result["ari"] == pytest.approx(adjusted_rand_score(true, pseudo))
    assert len(result["mapping"]) == min(n_classes, k)


def test_per_class_cluster_stats_hand_built():
    # TABLE_SQUARE: dominant clusters m(c0) = k0 (6 > 5), m(c1) = k0, m(c2) = k2;
    # Hungarian h(c0) = k1, h(c1) = k0, h(c2) = k2; k0 is owned by c0 (6 > 5), so c1 is merged.
    true, pseudo = labels_from_table(TABLE_SQUARE)
    stats = D.per_class_cluster_stats(true, pseudo, 3, groups_per_class=[0, 2, 2])
    expected = pd.DataFrame(
        {
            "class": [0, 1, 2],
            "size": [11, 6, 5],
            "dominant_cluster": [0, 0, 2],
            "dominant_share": [6 / 11, 5 / 6, 4 / 5],
            "dominant_cluster_size": [11, 11, 5],
            "size_ratio": [1.0, 11 / 6, 1.0],
            "purity": [6 / 11, 5 / 11, 4 / 5],
            "matched_cluster": [1, 0, 2],
            "recall": [5 / 11, 5 / 6, 4 / 5],
            "host_class": [0, 0, 2],
            "merged": [False, True, False],
            "group": ["many", "few", "few"],
        }
    )
    pd.testing.assert_frame_equal(stats, expected, check_dtype=False)


def test_per_class_cluster_stats_ties_empty_and_unmatched_classes():
    #         k0  k1
    #   c0  [  2,  0 ]
    #   c1  [  2,  1 ]     c1's dominant cluster k0 is tied 2-2 with c0: not merged.
    #   c2  [  0,  0 ]     c2 has no samples.
    #   c3  [  0,  3 ]
    # Hungarian (K = 2 < C = 4): c0k0 + c3k1 = 5 is best; c1 is unmatched, recall 0.
    true, pseudo = labels_from_table([[2, 0], [2, 1], [0, 0], [0, 3]])
    stats = D.per_class_cluster_stats(true, pseudo, 4)
    assert stats["merged"].tolist() == [False, False, False, False]
    assert stats["host_class"].tolist() == [0, 1, -1, 3]
    assert stats.loc[1, "matched_cluster"] == -1
    assert stats.loc[1, "recall"] == 0.0
    assert stats.loc[1, "purity"] == pytest.approx(2 / 4)
    assert stats.loc[2, "size"] == 0 and np.isnan(stats.loc[2, "purity"])
    assert stats.loc[3, "recall"] == 1.0


def test_group_pseudo_label_accuracy_hand_built():
    # TABLE_SQUARE with groups c0 many, c1 few, c2 few (medium empty).
    # Global Hungarian c0->k1, c1->k0, c2->k2: many correct 5/11; few (5 + 4)/(6 + 5) = 9/11.
    # Global many-to-one k0->c0, k1->c0, k2->c2: many 11/11; few only c2 in k2: 4/11.
    true, pseudo = labels_from_table(TABLE_SQUARE)
    result = D.group_pseudo_label_accuracy(true, pseudo, [0, 2, 2])
    assert result["many"]["accuracy"] == pytest.approx(5 / 11)
    assert result["few"]["accuracy"] == pytest.approx(9 / 11)
    assert result["many"]["accuracy_many_to_one"] == 1.0
    assert result["few"]["accuracy_many_to_one"] == pytest.approx(4 / 11)
    assert result["few"]["n_samples"] == 11 and result["few"]["n_classes"] == 2
    few = np.isin(true, [1, 2])
    assert result["few"]["nmi"] == pytest.approx(
        normalized_mutual_info_score(true[few], pseudo[few])
    )
    assert result["few"]["ari"] == pytest.approx(adjusted_rand_score(true[few], pseudo[few]))
    assert result["medium"]["n_samples"] == 0
    assert np.isnan(result["medium"]["accuracy"]) and np.isnan(result["medium"]["nmi"])


def test_group_accuracies_weight_back_to_overall():
    rng = np.random.default_rng(3)
    true = rng.integers(0, 6, size=300)
    pseudo = np.where(rng.random(300) < 0.7, true, rng.integers(0, 6, 300))
    groups = np.array([0, 0, 1, 1, 2, 2])
    by_group = D.group_pseudo_label_accuracy(true, pseudo, groups)
    overall = D.pseudo_label_accuracy(true, pseudo)["accuracy"]
    weighted = sum(g["accuracy"] * g["n_samples"] for g in by_group.values()) / 300
    assert weighted == pytest.approx(overall)


def test_per_class_assignment_stats():
    true = np.array([0, 0, 0, 1, 1, 2])
    tau = np.array([0.1, 0.2, 0.3, 0.5, 0.7, 0.9])
    stats = D.per_class_assignment_stats(true, tau, 4)
    assert stats["count"].tolist() == [3, 2, 1, 0]
    np.testing.assert_allclose(stats["mean"][:3], [0.2, 0.6, 0.9])
    np.testing.assert_allclose(stats["std"][:3], [np.sqrt(0.02 / 3), 0.1, 0.0])
    np.testing.assert_allclose(stats["median"][:3], [0.2, 0.6, 0.9])
    assert stats.loc[3, ["mean", "std", "median"]].isna().all()


def test_merge_summary_hand_built():
    true, pseudo = labels_from_table(TABLE_SQUARE)
    groups = [0, 2, 2]
    summary = D.merge_summary(D.per_class_cluster_stats(true, pseudo, 3), groups)
    few = summary["few"]
    assert (few["n_classes"], few["n_merged"]) == (2, 1)
    assert few["fraction_merged"] == 0.5
    assert few["fraction_merged_into_many"] == 0.5  # c1 is absorbed by c0's (many) cluster
    assert few["mean_recall"] == pytest.approx((5 / 6 + 4 / 5) / 2)
    assert few["mean_purity"] == pytest.approx((5 / 11 + 4 / 5) / 2)
    assert few["median_size_ratio"] == pytest.approx((11 / 6 + 1) / 2)
    assert summary["many"]["fraction_merged"] == 0.0
    assert summary["many"]["mean_recall"] == pytest.approx(5 / 11)
    assert summary["medium"]["n_classes"] == 0 and np.isnan(summary["medium"]["fraction_merged"])
    assert summary["all"]["n_merged"] == 1
    assert summary["all"]["fraction_merged"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "true,pseudo",
    [
        ([0, 1, 2], [0, 1]),  # mismatched lengths
        ([0, -1, 2], [0, 1, 2]),  # negative true label
        ([0, 1, 2], [0, 1, -3]),  # negative pseudo-label
        ([0.5, 1, 2], [0, 1, 2]),  # non-integral labels
        ([[0, 1]], [[0, 1]]),  # not 1-D
        ([], []),  # empty
    ],
)
def test_bad_labels_raise(true, pseudo):
    with pytest.raises(ValueError):
        D.pseudo_label_accuracy(true, pseudo)
    with pytest.raises(ValueError):
        D.per_class_cluster_stats(true, pseudo, 3)


def test_out_of_range_inputs_raise():
    with pytest.raises(ValueError, match="out of range"):
        D.pseudo_label_accuracy([0, 1, 3], [0, 1, 2], n_classes=3)
    with pytest.raises(ValueError, match="groups_per_class"):
        D.group_pseudo_label_accuracy([0, 1], [0, 1], [0, 3])
    with pytest.raises(ValueError, match="out of range"):
        D.group_pseudo_label_accuracy([0, 2], [0, 1], [0, 1])
    with pytest.raises(ValueError, match="differ"):
        D.per_class_assignment_stats([0, 1], [0.1], 2)
    with pytest.raises(ValueError, match="rows"):
        D.merge_summary(D.per_class_cluster_stats([0, 1], [0, 1], 2), [0, 1, 2])


def test_integral_floats_are_accepted():
    assert D.pseudo_label_accuracy([0.0, 1.0, 1.0], [1, 0, 0])["accuracy"] == 1.0


# --------------------------------------------------------------------------- run directories


def write_clustering(run_dir, epoch, true, labels, n_clusters, tau_per_cluster=True):
    sizes = np.bincount(labels, minlength=n_clusters)
    tau = np.linspace(0.1, 0.3, n_clusters)
    weight = np.linspace(2.0, 0.5, n_clusters)
    if not tau_per_cluster:
        tau, weight = tau[labels], weight[labels]
    folder = run_dir / "clusterings"
    folder.mkdir(parents=True, exist_ok=True)
    np.savez(
        folder / f"epoch_{epoch:04d}.npz",
        epoch=epoch,
        labels=labels,
        sizes=sizes,
        tau=tau,
        weight=weight,
        true_labels=true,
    )


def test_load_clusterings_sorted_by_epoch(tmp_path):
    true, pseudo = labels_from_table(TABLE_SQUARE)
    write_clustering(tmp_path, 12, true, pseudo, 3)
    write_clustering(tmp_path, 5, true, true, 4)
    records = D.load_clusterings(tmp_path)
    assert [r["epoch"] for r in records] == [5, 12]
    assert set(records[0]) == set(D.CLUSTERING_KEYS)
    np.testing.assert_array_equal(records[0]["sizes"], [11, 6, 5, 0])
    np.testing.assert_array_equal(records[1]["labels"], pseudo)
    tau_of_cluster = np.array([0.1, 0.2, 0.3])
    np.testing.assert_allclose(D.per_sample_values(records[1], "tau"), tau_of_cluster[pseudo])


def test_load_clusterings_errors_and_empty_run(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.load_clusterings(tmp_path / "missing")
    assert D.load_clusterings(tmp_path) == []
    assert D.clustering_history(tmp_path).empty
    (tmp_path / "clusterings").mkdir()
    np.savez(tmp_path / "clusterings" / "epoch_0001.npz", epoch=1, labels=np.zeros(3, int))
    with pytest.raises(ValueError, match="lacks keys"):
        D.load_clusterings(tmp_path)


def test_per_sample_values_per_sample_and_bad_shape(tmp_path):
    true = np.array([0, 0, 1, 1, 1])
    write_clustering(tmp_path, 0, true, true, 2, tau_per_cluster=False)
    record = D.load_clusterings(tmp_path)[0]
    np.testing.assert_allclose(D.per_sample_values(record, "tau"), [0.1, 0.1, 0.3, 0.3, 0.3])
    record["weight"] = np.ones(7)
    with pytest.raises(ValueError, match="neither"):
        D.per_sample_values(record, "weight")


def test_clustering_history(tmp_path):
    true, pseudo = labels_from_table(TABLE_SQUARE)
    write_clustering(tmp_path, 20, true, pseudo, 4)  # cluster 3 is empty
    write_clustering(tmp_path, 10, true, (true + 1) % 3, 3)
    history = D.clustering_history(tmp_path, groups_per_class=[0, 2, 2])
    assert history["epoch"].tolist() == [10, 20]
    assert history["accuracy"].tolist() == pytest.approx([1.0, 14 / 22])
    assert history["accuracy_many_to_one"].tolist() == pytest.approx([1.0, 15 / 22])
    assert history["n_clusters"].tolist() == [3, 4]
    assert history["n_empty"].tolist() == [0, 1]
    assert history["size_min"].tolist() == [5, 0]
    assert history["size_max"].tolist() == [11, 11]
    assert history["tau_min"].tolist() == pytest.approx([0.1, 0.1])
    assert history["weight_max"].tolist() == pytest.approx([2.0, 2.0])
    assert history.loc[1, "accuracy_many"] == pytest.approx(5 / 11)
    assert history.loc[1, "accuracy_few"] == pytest.approx(9 / 11)
    assert np.isnan(history.loc[1, "accuracy_medium"])
    assert history.loc[1, "nmi"] == pytest.approx(normalized_mutual_info_score(true, pseudo))
