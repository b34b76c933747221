"""Tests of tase.evaluate: oracles first (hand-placed k-NN, NumPy and scikit-learn references,
hand-built accuracies), then behaviour (determinism, mode restoring, caching, named errors)."""

from __future__ import annotations

import csv
import json
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from tase import evaluate as ev

# --------------------------------------------------------------------------------------------
# Fixtures


class TinyEncoder(nn.Module):
    """Encoder of the contract: ``.backbone`` takes float images in [0, 1]; has BatchNorm."""

    def __init__(self, input_size: int | None = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.backbone = nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.projector = nn.Linear(8, 4)
        self.input_size = input_size
        self.feature_dim = 8

    def forward(self, x):
        return self.projector(self.backbone(x))


def fake_dataset(train_counts=(120, 60, 30), pool_per_class=40, test_per_class=10, size=8,
                 one_pct=None):
    """LTDataset look-alike. Class c is a colour (channel c bright); every image carries a unique
    id in its first two pixels so tests can check which images a subset holds."""
    generator = torch.Generator().manual_seed(0)
    n_classes = len(train_counts)
    next_id = [0]

    def images_of(counts):
        labels = torch.cat([torch.full((n,), c, dtype=torch.int64) for c, n in enumerate(counts)])
        images = torch.randint(0, 60, (len(labels), 3, size, size), generator=generator)
        images[torch.arange(len(labels)), labels] += 150
        ids = torch.arange(next_id[0], next_id[0] + len(labels))
        next_id[0] += len(labels)
        images[:, 0, 0, 0], images[:, 0, 0, 1] = ids // 256, ids % 256
        return images.to(torch.uint8), labels

    train_images, train_labels = images_of(train_counts)
    pool_images, pool_labels = images_of([pool_per_class] * n_classes)
    test_images, test_labels = images_of([test_per_class] * n_classes)
    counts = np.asarray(train_counts, dtype=np.int64)
    return types.SimpleNamespace(
        name="fake-lt", split="exp", seed=0, ratio=counts.max() / counts.min(),
        train_images=train_images, train_labels=train_labels,
        test_images=test_images, test_labels=test_labels,
        pool_images=pool_images, pool_labels=pool_labels,
        class_names=tuple(f"class{c}" for c in range(n_classes)),
        class_counts=counts, groups=np.arange(n_classes, dtype=np.int64) * 3 // n_classes,
        subsets={} if one_pct is None else {"one_pct": np.asarray(one_pct, dtype=np.int64)},
        n_classes=n_classes, image_size=size,
    )


def image_ids(images: torch.Tensor) -> set[int]:
    return set((images[:, 0, 0, 0].long() * 256 + images[:, 0, 0, 1].long()).tolist())


def unit(degrees) -> torch.Tensor:
    radians = np.deg2rad(np.asarray(degrees, dtype=np.float64))
    return torch.tensor(np.stack([np.cos(radians), np.sin(radians)], axis=1), dtype=torch.float32)


# Hand-placed support: class 0 at 0°, 10°, 20°; class 1 at 90°, 100°; class 2 at 180°.
SUPPORT = unit([0, 10, 20, 90, 100, 180])
SUPPORT_LABELS = torch.tensor([0, 0, 0, 1, 1, 2])


# --------------------------------------------------------------------------------------------
# k-NN


@pytest.mark.parametrize(
    ("angle", "k", "nearest", "lowest"),
    [
        (5, 1, 0, 0),  # closest point is 0°/10°
        (95, 1, 1, 1),
        (5, 3, 0, 0),  # three class-0 neighbours
        (57, 2, 1, 0),  # 90° (class 1, 33° away) then 20° (class 0, 37° away): a 1-1 tie
        # k = 5 exceeds class 2 (one member) and class 1 (two): neighbours 180°, 100°, 90°,
        # 20°, 10° give votes 0:2, 1:2, 2:1; class 1's nearest member ranks before class 0's.
        (170, 5, 1, 0),
        (52, 2, 0, 0),  # 20° (32° away) then 90° (38°): the nearest is also the lowest label
    ],
)
def test_knn_hand_placed_points(angle, k, nearest, lowest):
    query = unit([angle])
    assert ev.knn_predict(SUPPORT, SUPPORT_LABELS, query, k).tolist() == [nearest]
    got = ev.knn_predict(SUPPORT, SUPPORT_LABELS, query, k, tie_break="lowest_label")
    assert got.tolist() == [lowest]


def test_knn_normalises_inputs_and_accepts_k_equal_support():
    queries = unit([5, 95, 175]) * torch.tensor([[3.0], [0.2], [7.0]])
    support = SUPPORT * torch.arange(1, 7, dtype=torch.float32)[:, None]
    assert ev.knn_predict(support, SUPPORT_LABELS, queries, 1).tolist() == [0, 1, 2]
    # k = N: every point votes; class 0 has three votes everywhere.
    assert ev.knn_predict(SUPPORT, SUPPORT_LABELS, queries, 6).tolist() == [0, 0, 0]


def numpy_knn(support, labels, queries, k, weighted, temperature, n_classes):
    """Reference: full similarity matrix, stable sort, explicit vote loop."""
    s = support / np.linalg.norm(support, axis=1, keepdims=True)
    q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ s.T.astype(np.float64)
    out = []
    for row in sims:
        order = np.argsort(-row, kind="stable")[:k]
        if weighted:
            votes = np.zeros(n_classes)
            np.add.at(votes, labels[order], np.exp(row[order] / temperature))
            out.append(int(np.argmax(votes)))
        else:
            votes = np.bincount(labels[order], minlength=n_classes)
            tied = set(np.flatnonzero(votes == votes.max()).tolist())
            out.append(next(int(lab) for lab in labels[order] if lab in tied))
    return np.asarray(out)


@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize(("k", "temperature"), [(1, 0.1), (10, 0.1), (20, 0.05), (40, 0.5)])
def test_knn_matches_numpy_reference(weighted, k, temperature):
    rng = np.random.default_rng(k)
    support = rng.normal(size=(300, 16)).astype(np.float32)
    labels = rng.integers(0, 5, 300)
    queries = rng.normal(size=(80, 16)).astype(np.float32)
    expected = numpy_knn(support, labels, queries, k, weighted, temperature, 5)
    got = ev.knn_predict(torch.tensor(support), labels, torch.tensor(queries), k,
                         weighted=weighted, temperature=temperature, n_classes=5)
    assert got.dtype == torch.int64
    np.testing.assert_array_equal(got.numpy(), expected)


def test_knn_lowest_label_matches_sklearn():
    # scikit-learn's majority vote breaks ties towards the smallest label, as TS's np.argmax.
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(7)
    support = rng.normal(size=(400, 8)).astype(np.float32)
    labels = rng.integers(0, 12, 400)
    queries = rng.normal(size=(300, 8)).astype(np.float32)
    reference = KNeighborsClassifier(6, metric="cosine", algorithm="brute").fit(support, labels)
    ours = ev.knn_predict(torch.tensor(support), labels, torch.tensor(queries), 6,
                          tie_break="lowest_label")
    np.testing.assert_array_equal(ours.numpy(), reference.predict(queries))
    nearest = ev.knn_predict(torch.tensor(support), labels, torch.tensor(queries), 6)
    assert (nearest != ours).any()  # ties do occur here, and the two rules differ on them


@pytest.mark.parametrize("weighted", [False, True])
def test_knn_chunked_equals_unchunked(weighted):
    rng = np.random.default_rng(1)
    support = torch.tensor(rng.normal(size=(500, 32)), dtype=torch.float32)
    labels = torch.tensor(rng.integers(0, 7, 500))
    queries = torch.tensor(rng.normal(size=(103, 32)), dtype=torch.float32)
    whole = ev.knn_predict(support, labels, queries, 15, weighted=weighted, chunk_size=10_000)
    for chunk in (1, 7, 50):
        chunked = ev.knn_predict(support, labels, queries, 15, weighted=weighted,
                                 chunk_size=chunk)
        assert torch.equal(whole, chunked)


def test_knn_weighted_differs_from_majority_when_it_should():
    # Two class-1 points far away outvote one very close class-0 point without weights.
    support = unit([0, 60, 61])
    labels = torch.tensor([0, 1, 1])
    query = unit([1])
    assert ev.knn_predict(support, labels, query, 3).tolist() == [1]
    assert ev.knn_predict(support, labels, query, 3, weighted=True).tolist() == [0]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 7}, "k must be in"),
        ({"k": 0}, "k must be in"),
        ({"k": 2, "weighted": True, "temperature": 0.0}, "temperature"),
        ({"k": 2, "tie_break": "random"}, "tie_break"),
        ({"k": 2, "n_classes": 2}, "support_labels must lie"),
        ({"k": 2, "chunk_size": 0}, "chunk_size"),
    ],
)
def test_knn_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ev.knn_predict(SUPPORT, SUPPORT_LABELS, unit([5]), **kwargs)


def test_knn_shape_errors():
    with pytest.raises(ValueError, match="dimensions differ"):
        ev.knn_predict(SUPPORT, SUPPORT_LABELS, torch.ones(2, 3), 1)
    with pytest.raises(ValueError, match="support_labels must have shape"):
        ev.knn_predict(SUPPORT, SUPPORT_LABELS[:5], unit([5]), 1)


# --------------------------------------------------------------------------------------------
# Accuracy


def test_per_class_and_mean_accuracy_hand_built():
    true = [0, 0, 1, 1, 1, 2]
    pred = [0, 1, 1, 1, 0, 2]
    per_class = ev.per_class_accuracy(true, pred, 4)
    np.testing.assert_allclose(per_class[:3], [50.0, 200 / 3, 100.0])
    assert math.isnan(per_class[3])  # no test sample of class 3
    assert ev.mean_per_class_accuracy(true, pred, 4) == pytest.approx((50 + 200 / 3 + 100) / 3)
    # Mean per-class differs from overall accuracy (4/6) on an unbalanced test set.
    assert ev.mean_per_class_accuracy(true, pred, 3) != pytest.approx(100 * 4 / 6)


def test_accuracy_errors():
    with pytest.raises(ValueError, match="differ in length"):
        ev.per_class_accuracy([0, 1], [0], 2)
    with pytest.raises(ValueError, match="must lie in"):
        ev.per_class_accuracy([0, 2], [0, 1], 2)


def test_group_accuracies_hand_built():
    result = ev.group_accuracies(np.array([100, 80, 60, 40, 20, 0.0]), np.array([0, 0, 1, 1, 2, 2]))
    assert result["many"] == pytest.approx(90)
    assert result["medium"] == pytest.approx(50)
    assert result["few"] == pytest.approx(10)
    # population std of (90, 50, 10): sqrt(((40)^2 + 0 + 40^2) / 3)
    assert result["group_std"] == pytest.approx(math.sqrt(3200 / 3))


def test_group_accuracies_skips_unscored_classes_and_empty_groups():
    result = ev.group_accuracies(np.array([100, np.nan, 50, 30.0]), np.array([0, 0, 1, 1]))
    assert result["many"] == 100 and result["medium"] == 40 and math.isnan(result["few"])
    assert result["group_std"] == pytest.approx(30)
    with pytest.raises(ValueError, match="groups must be"):
        ev.group_accuracies(np.array([1.0]), np.array([3]))


# --------------------------------------------------------------------------------------------
# Linear probes


def gaussian_features(n_per_class, n_classes, dim, noise, seed):
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(n_classes, dim))
    labels = np.repeat(np.arange(n_classes), n_per_class)
    x = means[labels] + noise * rng.normal(size=(labels.size, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return torch.tensor(x, dtype=torch.float32), torch.tensor(labels)


@pytest.mark.parametrize("method", ["svc", "logreg"])
def test_probe_separable_problem_is_solved(method):
    x, y = gaussian_features(40, 4, 8, 0.05, seed=0)
    test_x, test_y = gaussian_features(25, 4, 8, 0.05, seed=0)  # same means, same seed: noise
    test_x = test_x + 0.01 * torch.randn(test_x.shape, generator=torch.Generator().manual_seed(1))
    pred = ev.linear_probe(x, y, test_x, 4, method=method)
    assert pred.dtype == torch.int64
    assert ev.mean_per_class_accuracy(test_y, pred, 4) == 100.0


def test_torch_logreg_agrees_with_sklearn():
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    means = rng.normal(size=(6, 24))
    train_y, test_y = rng.integers(0, 6, 900), rng.integers(0, 6, 1500)

    def draw(labels):
        x = means[labels] + 1.6 * rng.normal(size=(labels.size, 24))
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    train_x, test_x = draw(train_y), draw(test_y)
    for C in (1.0, 100.0):
        reference = LogisticRegression(C=C, max_iter=5000, tol=1e-8).fit(train_x, train_y)
        ours = ev.linear_probe(torch.tensor(train_x, dtype=torch.float32), train_y,
                               torch.tensor(test_x, dtype=torch.float32), 6, method="logreg", C=C)
        acc_ref = ev.mean_per_class_accuracy(test_y, reference.predict(test_x), 6)
        acc_ours = ev.mean_per_class_accuracy(test_y, ours.numpy(), 6)
        assert 30 < acc_ref < 95  # a noisy problem, not a trivial one
        assert abs(acc_ours - acc_ref) < 1.0
        assert (ours.numpy() == reference.predict(test_x)).mean() > 0.97


def test_probes_are_deterministic():
    x, y = gaussian_features(30, 3, 8, 1.0, seed=4)
    for method in ("svc", "logreg"):
        first = ev.linear_probe(x, y, x, 3, method=method)
        assert torch.equal(first, ev.linear_probe(x, y, x, 3, method=method))


def test_probe_errors():
    x, y = gaussian_features(5, 3, 4, 0.1, seed=0)
    with pytest.raises(ValueError, match="unknown probe method"):
        ev.linear_probe(x, y, x, 3, method="mlp")
    with pytest.raises(ValueError, match="15 rows but train_y has 14"):
        ev.linear_probe(x, y[:-1], x, 3)
    with pytest.raises(ValueError, match="dimensions differ"):
        ev.linear_probe(x, y, x[:, :3], 3)
    with pytest.raises(ev.MissingClassError, match="2 of 5 classes: 3, 4") as info:
        ev.linear_probe(x, y, x, 5)
    assert info.value.missing == [3, 4]
    keep = y != 1
    with pytest.raises(ev.MissingClassError, match="classes: 1$"):
        ev.linear_probe(x[keep], y[keep], x, 3, method="logreg")


# --------------------------------------------------------------------------------------------
# Probe training sets


def test_many_shot_subset_counts_source_and_disjointness():
    data = fake_dataset()
    test_ids = image_ids(data.test_images)
    source, index = ev.probe_training_set(data, "ms_lp", many_shot=7, seed=42)
    assert source == "pool"
    np.testing.assert_array_equal(np.bincount(data.pool_labels[index].numpy()), [7, 7, 7])
    assert len(set(index.tolist())) == index.size
    assert image_ids(data.pool_images[index]).isdisjoint(test_ids)
    again = ev.probe_training_set(data, "ms_lp", many_shot=7, seed=42)[1]
    np.testing.assert_array_equal(index, again)
    other = ev.probe_training_set(data, "ms_lp", many_shot=7, seed=43)[1]
    assert not np.array_equal(np.sort(index), np.sort(other))

    source, index = ev.probe_training_set(data, "ms_lp", many_shot="min", seed=42)
    assert source == "train"  # TS's "FS": smallest LT count (30) per class, from the LT set
    np.testing.assert_array_equal(np.bincount(data.train_labels[index].numpy()), [30, 30, 30])
    assert image_ids(data.train_images[index]).isdisjoint(test_ids)


def test_one_percent_subset_official_and_generated():
    official = np.array([0, 41, 82, 5], dtype=np.int64)
    data = fake_dataset(one_pct=official)
    source, index = ev.probe_training_set(data, "one_pct_lp")
    assert source == "pool"
    np.testing.assert_array_equal(index, official)

    data = fake_dataset(pool_per_class=250)
    source, index = ev.probe_training_set(data, "one_pct_lp", seed=42)
    assert source == "pool"
    np.testing.assert_array_equal(np.bincount(data.pool_labels[index].numpy()), [2, 2, 2])
    assert image_ids(data.pool_images[index]).isdisjoint(image_ids(data.test_images))
    data = fake_dataset(pool_per_class=40)  # 1% of 40 rounds down to 0: at least one per class
    index = ev.probe_training_set(data, "one_pct_lp", seed=42)[1]
    np.testing.assert_array_equal(np.bincount(data.pool_labels[index].numpy()), [1, 1, 1])


def test_whole_set_probes_and_errors():
    data = fake_dataset()
    assert ev.probe_training_set(data, "lt_lp") == ("train", None)
    assert ev.probe_training_set(data, "full_lp") == ("pool", None)
    with pytest.raises(ValueError, match="fewer than"):
        ev.probe_training_set(data, "ms_lp", many_shot=41)
    with pytest.raises(ValueError, match="not a linear-probe protocol"):
        ev.probe_training_set(data, "knn10")


# --------------------------------------------------------------------------------------------
# Features


def test_extract_features_deterministic_normalised_and_batch_independent():
    model = TinyEncoder()
    images = fake_dataset().test_images
    first = ev.extract_features(model, images)
    assert first.dtype == torch.float32 and first.device.type == "cpu"
    assert first.shape == (images.shape[0], 8)
    torch.testing.assert_close(first.norm(dim=1), torch.ones(images.shape[0]))
    assert torch.equal(first, ev.extract_features(model, images))
    torch.testing.assert_close(first, ev.extract_features(model, images, batch_size=4))
    # Oracle: the backbone in eval mode on images / 255, L2-normalised.
    model.eval()
    with torch.no_grad():
        expected = F.normalize(model.backbone(images.float() / 255), dim=1)
    torch.testing.assert_close(first, expected)


def test_extract_features_resizes_to_input_size():
    model = TinyEncoder(input_size=8).eval()
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    small = F.interpolate(images.float() / 255, size=(8, 8), mode="bilinear", antialias=True,
                          align_corners=False)
    with torch.no_grad():
        expected = F.normalize(model.backbone(small), dim=1)
    torch.testing.assert_close(ev.extract_features(model, images), expected)


@pytest.mark.parametrize("start_training", [True, False])
def test_extract_features_restores_modes_and_leaves_batchnorm_stats(start_training):
    model = TinyEncoder()
    model.train(start_training)
    model.backbone[1].train(not start_training)  # a mixed state must survive too
    before = {name: m.training for name, m in model.named_modules()}
    stats = model.backbone[1].running_mean.clone()
    ev.extract_features(model, fake_dataset().test_images)
    assert {name: m.training for name, m in model.named_modules()} == before
    assert torch.equal(model.backbone[1].running_mean, stats)


def test_extract_features_errors():
    model = TinyEncoder()
    with pytest.raises(ValueError, match="uint8"):
        ev.extract_features(model, torch.rand(2, 3, 8, 8))
    with pytest.raises(ValueError, match="N×3×H×W"):
        ev.extract_features(model, torch.zeros(2, 1, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="backbone"):
        ev.extract_features(nn.Linear(2, 2), torch.zeros(2, 3, 8, 8, dtype=torch.uint8))


# --------------------------------------------------------------------------------------------
# evaluate()


def expected_keys(protocols):
    return {p + s for p in protocols for s in ("", "_many", "_medium", "_few", "_group_std")}


def test_evaluate_writes_specified_files(tmp_path):
    data = fake_dataset()
    model = TinyEncoder()
    result = ev.evaluate(model, data, out_dir=tmp_path, many_shot=5)

    assert set(result) == expected_keys(ev.PROTOCOLS) | {"header", "timings"}
    assert json.loads((tmp_path / "metrics.json").read_text()) == result
    header = result["header"]
    assert header == {
        "dataset": "fake-lt", "split": "exp", "data_seed": 0, "n_classes": 3, "seed": 42,
        "probe": "svc", "probe_C": 1.0, "many_shot": 5, "protocols": list(ev.PROTOCOLS),
        "sizes": {"knn1": 210, "knn10": 210, "wknn200": 210, "ms_lp": 15, "one_pct_lp": 3,
                  "lt_lp": 210, "full_lp": 120},
    }
    assert set(result["timings"]) == {*ev.PROTOCOLS, "features_test", "features_train",
                                      "features_pool"}
    assert all(v >= 0 for v in result["timings"].values())

    # Oracle for the wiring: the same numbers from the public pieces.
    train_f = ev.extract_features(model, data.train_images)
    test_f = ev.extract_features(model, data.test_images)
    knn10 = ev.knn_predict(train_f, data.train_labels, test_f, 10)
    per_class = ev.per_class_accuracy(data.test_labels, knn10, 3)
    assert result["knn10"] == pytest.approx(per_class.mean())
    groups = ev.group_accuracies(per_class, data.groups)
    assert result["knn10_few"] == pytest.approx(groups["few"])
    assert result["knn10_group_std"] == pytest.approx(groups["group_std"])

    with open(tmp_path / "per_class.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["class", "name", "count", "group", *ev.PROTOCOLS]
    assert [(r["class"], r["name"], r["count"], r["group"]) for r in rows] == [
        ("0", "class0", "120", "many"),
        ("1", "class1", "60", "medium"),
        ("2", "class2", "30", "few"),
    ]
    for protocol in ev.PROTOCOLS:
        column = [float(r[protocol]) for r in rows]
        assert np.mean(column) == pytest.approx(result[protocol], abs=1e-3)
    assert not list(tmp_path.glob("*.tmp"))


def counting(monkeypatch, name):
    calls = []
    original = getattr(ev, name)

    def wrapper(*args, **kwargs):
        calls.append(name)
        return original(*args, **kwargs)

    monkeypatch.setattr(ev, name, wrapper)
    return calls


def test_evaluate_caches_and_force_recomputes(tmp_path, monkeypatch):
    data, model = fake_dataset(), TinyEncoder()
    extract = counting(monkeypatch, "extract_features")
    knn = counting(monkeypatch, "knn_predict")
    protocols = ["knn1", "knn10", "lt_lp"]
    first = ev.evaluate(model, data, protocols, out_dir=tmp_path)
    assert (len(extract), len(knn)) == (2, 2)  # test + LT features; pool is not needed

    assert ev.evaluate(model, data, protocols, out_dir=tmp_path) == first
    assert ev.evaluate(model, data, ["knn10"], out_dir=tmp_path) == first
    assert (len(extract), len(knn)) == (2, 2)

    # A protocol not yet cached: only it is computed, the cached ones are kept.
    merged = ev.evaluate(model, data, ["knn1", "full_lp"], out_dir=tmp_path)
    assert len(knn) == 2 and len(extract) == 4  # test + pool
    assert merged["header"]["protocols"] == ["knn1", "knn10", "lt_lp", "full_lp"]
    assert all(merged[k] == first[k] for k in expected_keys(protocols))
    with open(tmp_path / "per_class.csv", newline="") as handle:
        assert next(csv.reader(handle))[4:] == ["knn1", "knn10", "lt_lp", "full_lp"]

    forced = ev.evaluate(model, data, protocols, out_dir=tmp_path, force=True)
    assert len(knn) == 4
    assert all(forced[k] == first[k] for k in expected_keys(protocols))  # deterministic

    # Another probe is another header: recomputed, and the file replaced.
    ev.evaluate(model, data, ["lt_lp"], out_dir=tmp_path, probe="logreg")
    assert json.loads((tmp_path / "metrics.json").read_text())["header"]["probe"] == "logreg"
    assert json.loads((tmp_path / "metrics.json").read_text())["header"]["protocols"] == ["lt_lp"]


def test_evaluate_loads_a_run_directory(tmp_path, monkeypatch):
    loaded = []

    def load_encoder(run_dir):
        loaded.append(run_dir)
        return TinyEncoder()

    monkeypatch.setitem(sys.modules, "tase.train", types.SimpleNamespace(load_encoder=load_encoder))
    result = ev.evaluate(str(tmp_path), fake_dataset(), ["knn1"])
    assert loaded == [tmp_path]
    assert (tmp_path / "metrics.json").exists() and set(result) == expected_keys(["knn1"]) | {
        "header", "timings"}


def test_evaluate_without_out_dir_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = ev.evaluate(TinyEncoder(), fake_dataset(), ["knn1"])
    assert 0 <= result["knn1"] <= 100
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"protocols": ["knn5"]}, ValueError, "unknown protocols"),
        ({"probe": "mlp"}, ValueError, "unknown probe method"),
        ({"protocols": ["ms_lp"], "many_shot": 1000}, ValueError, "fewer than"),
        ({"protocols": ["ms_lp"], "many_shot": "max"}, ValueError, "'min'"),
    ],
)
def test_evaluate_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        ev.evaluate(TinyEncoder(), fake_dataset(), **kwargs)


def test_evaluate_knn_larger_than_lt_set():
    with pytest.raises(ValueError, match="wknn200 needs k = 200"):
        ev.evaluate(TinyEncoder(), fake_dataset(train_counts=(50, 30, 20)), ["wknn200"])


def test_evaluate_probe_missing_class_fails_before_any_forward_pass(monkeypatch):
    extract = counting(monkeypatch, "extract_features")
    data = fake_dataset(one_pct=np.array([0, 1, 40], dtype=np.int64))  # no class-2 image
    with pytest.raises(ev.MissingClassError, match="classes: 2"):
        ev.evaluate(TinyEncoder(), data, ["knn1", "one_pct_lp"])
    assert extract == []


# --------------------------------------------------------------------------------------------
# CUDA


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu(tmp_path):
    data, model = fake_dataset(), TinyEncoder()
    cpu = ev.extract_features(model, data.train_images)
    gpu = ev.extract_features(model, data.train_images, device="cuda")
    assert gpu.device.type == "cpu" and next(model.parameters()).device.type == "cpu"
    torch.testing.assert_close(cpu, gpu, atol=1e-4, rtol=1e-4)
    test_f = ev.extract_features(model, data.test_images)
    for weighted in (False, True):
        on_gpu = ev.knn_predict(cpu.cuda(), data.train_labels, test_f, 10, weighted=weighted)
        assert torch.equal(on_gpu, ev.knn_predict(cpu, data.train_labels, test_f, 10,
                                                  weighted=weighted))
    x, y = gaussian_features(40, 4, 8, 0.05, seed=0)
    pred = ev.linear_probe(x, y, x, 4, method="logreg", device="cuda")
    assert pred.device.type == "cpu" and ev.mean_per_class_accuracy(y, pred, 4) == 100.0
    result = ev.evaluate(model.cuda(), data, ["knn10", "lt_lp"], out_dir=tmp_path,
                         probe="logreg")
    assert 0 <= result["knn10"] <= 100
