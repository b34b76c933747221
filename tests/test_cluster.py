"""K-means against scikit-learn, plus the guarantees TASE relies on (no empty cluster, sizes)."""

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score
from threadpoolctl import threadpool_limits

from tase.cluster import KMeansResult, kmeans


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """These problems are tiny: extra threads only add synchronisation, which costs seconds per
    test on a busy 2-core machine. Results do not depend on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(1):
        yield
    torch.set_num_threads(threads)


def blobs(n, d, centers, std, seed):
    x, y = make_blobs(n, n_features=d, centers=centers, cluster_std=std, random_state=seed)
    return torch.from_numpy(x.astype(np.float32)), y


def check_consistent(x, result, k):
    """Labels are a nearest centroid, sizes count them, no cluster is empty."""
    x64, c64 = x.double(), result.centroids.double()
    sq = torch.cdist(x64, c64) ** 2
    own = sq.gather(1, result.labels[:, None]).squeeze(1)
    assert torch.all(own <= sq.min(1).values + 1e-4 * (1 + sq.min(1).values))
    assert result.labels.dtype == torch.int64 and result.labels.shape == (len(x),)
    assert result.sizes.dtype == torch.int64 and result.sizes.shape == (k,)
    assert torch.equal(result.sizes, torch.bincount(result.labels, minlength=k))
    assert result.sizes.min() >= 1
    assert result.centroids.shape == (k, x.shape[1])
    assert result.inertia == pytest.approx(own.sum().item(), rel=1e-5, abs=1e-6)


@pytest.mark.parametrize(("k", "d", "seed"), [(3, 2, 0), (8, 16, 1), (20, 32, 2)])
def test_recovers_separated_blobs_like_sklearn(k, d, seed):
    x, y = blobs(60 * k, d, k, 0.3, seed)
    result = kmeans(x, k, seed=seed)
    reference = KMeans(k, n_init=3, random_state=seed).fit(x.numpy())
    assert adjusted_rand_score(y, result.labels.numpy()) == 1.0
    assert adjusted_rand_score(reference.labels_, result.labels.numpy()) == 1.0
    assert result.inertia == pytest.approx(reference.inertia_, rel=1e-4)
    check_consistent(x, result, k)


@pytest.mark.parametrize(("d", "std"), [(4, 2.0), (8, 3.0)])
@pytest.mark.parametrize("seed", range(2))
def test_inertia_within_one_percent_of_sklearn_on_overlapping_blobs(d, std, seed):
    # Blobs that touch, yet with one clear optimum: over 30 seeds both reach it every time. With
    # many more clusters, 3 restarts of either implementation land in different local optima.
    x, _ = blobs(2000, d, 6, std, seed)
    result = kmeans(x, 6, n_init=3, seed=seed)
    reference = KMeans(6, n_init=3, max_iter=100, random_state=seed, algorithm="lloyd")
    assert result.inertia <= 1.01 * reference.fit(x.numpy()).inertia_
    check_consistent(x, result, 6)


def test_no_empty_cluster_when_k_is_close_to_n():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(0))
    for k in (48, 50):
        result = kmeans(x, k)
        check_consistent(x, result, k)
    assert kmeans(x, 50).inertia == pytest.approx(0.0, abs=1e-10)


def test_no_empty_cluster_with_duplicated_points():
    g = torch.Generator().manual_seed(0)
    distinct = torch.randn(10, 3, generator=g)
    x = distinct[torch.randint(10, (50,), generator=g)]
    for k in (10, 30, 48, 50):
        result = kmeans(x, k)
        check_consistent(x, result, k)
        assert result.inertia == pytest.approx(0.0, abs=1e-10)
    same = torch.ones(20, 4)
    check_consistent(same, kmeans(same, 5), 5)


def test_deterministic_for_a_seed():
    x, _ = blobs(2000, 8, 12, 3.0, 0)
    a, b = kmeans(x, 12, seed=3), kmeans(x, 12, seed=3)
    assert torch.equal(a.labels, b.labels) and torch.equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    others = [kmeans(x, 12, n_init=1, seed=s) for s in range(4)]
    assert len({round(r.inertia, 3) for r in others}) > 1


def test_result_is_frozen_and_kept_on_the_input_precision():
    x, _ = blobs(200, 4, 3, 1.0, 0)
    result = kmeans(x, 3)
    assert isinstance(result, KMeansResult)
    with pytest.raises(AttributeError):
        result.inertia = 0.0
    assert result.centroids.dtype == torch.float32
    assert kmeans(x.double(), 3).centroids.dtype == torch.float64
    assert kmeans(x.half(), 3).centroids.dtype == torch.float32


@pytest.mark.parametrize(
    ("x", "k", "message"),
    [
        (torch.randn(10, 2), 0, "k=0 for N=10"),
        (torch.randn(10, 2), 11, "k=11 for N=10"),
        (torch.randn(10), 2, "x must be 2-D"),
        (torch.randn(2, 5, 2), 2, "x must be 2-D"),
        (torch.tensor([[0.0, float("nan")], [1.0, 1.0]]), 1, "NaN or infinite"),
        (torch.tensor([[0.0, float("inf")], [1.0, 1.0]]), 1, "NaN or infinite"),
    ],
)
def test_invalid_input_raises(x, k, message):
    with pytest.raises(ValueError, match=message):
        kmeans(x, k)


@pytest.mark.parametrize("kwargs", [{"n_init": 0}, {"max_iter": 0}, {"tol": -1.0}])
def test_invalid_settings_raise(kwargs):
    with pytest.raises(ValueError, match="need n_init >= 1"):
        kmeans(torch.randn(10, 2), 2, **kwargs)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matches_sklearn_on_cuda():
    x, y = blobs(800, 16, 8, 0.3, 1)
    result = kmeans(x.cuda(), 8, seed=1)
    assert result.labels.device.type == "cuda" and result.centroids.device.type == "cuda"
    assert adjusted_rand_score(y, result.labels.cpu().numpy()) == 1.0
    check_consistent(x.cuda(), result, 8)
    overlapping, _ = blobs(2000, 8, 6, 3.0, 0)
    on_gpu = kmeans(overlapping.cuda(), 6)
    reference = KMeans(6, n_init=3, random_state=0).fit(overlapping.numpy())
    assert on_gpu.inertia <= 1.01 * reference.inertia_
