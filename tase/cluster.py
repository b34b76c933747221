"""K-means on the device of the features: the pseudo-labels of TASE's cluster-balance stage.

``kmeans(x, k)`` follows scikit-learn's ``KMeans(init="k-means++", algorithm="lloyd")``: greedy
k-means++ seeding (Arthur & Vassilvitskii 2007; ``2 + ln k`` candidates per centre), ``n_init``
restarts keeping the lowest inertia, Lloyd iterations that stop when no label changes or when the
centroids move (squared shift) less than ``tol`` times the mean per-feature variance of ``x``.
Unlike scikit-learn it never returns an empty cluster (SPEC §3: cluster sizes drive the
temperatures): empty clusters are re-seeded with the points farthest from their centroid during
the iterations, as scikit-learn does, and once more after the final assignment.

Speed: the restarts run side by side, so each pass over ``x`` (one matmul per k-means++ step or
Lloyd iteration) serves all of them; squared distances are ``||x||^2 - 2 x.c + ||c||^2`` with
``||x||^2`` computed once. Float64 input is clustered in float64, anything else in float32.
Randomness comes from a CPU ``torch.Generator`` seeded with ``seed``, so a seed draws the same
numbers on any device. On CPU a seed gives bit-identical results; on CUDA the centroid sums use
atomic adds, so centroids may differ in the last bits between runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

# Rows of x per distance block, so that a (rows, n_init * k) block has at most 2^24 entries.
_BLOCK_ENTRIES = 1 << 24


@dataclass(frozen=True)
class KMeansResult:
    """A clustering of N points into K non-empty clusters (tensors on the device of ``x``).

    labels: int64 (N,), the cluster of each point, one of its nearest centroids.
    sizes: int64 (K,), points per cluster, all >= 1; equals ``bincount(labels)``.
    centroids: (K, d).
    inertia: sum over points of the squared distance to their centroid.
    n_iter: Lloyd iterations of the kept restart.
    """

    labels: Tensor
    sizes: Tensor
    centroids: Tensor
    inertia: float
    n_iter: int


def kmeans(
    x: Tensor, k: int, n_init: int = 3, max_iter: int = 100, seed: int = 0, tol: float = 1e-4
) -> KMeansResult:
    """Cluster the rows of ``x`` (N, d) into ``k`` non-empty clusters (see the module docstring).

    Raises ``ValueError`` if ``x`` is not 2-D or not finite, ``k < 1`` or ``k > N``, ``n_init < 1``,
    ``max_iter < 1`` or ``tol < 0``.
    """
    if x.dim() != 2:
        raise ValueError(f"x must be 2-D (N, d), got shape {tuple(x.shape)}")
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, N]; got k={k} for N={n} points")
    if n_init < 1 or max_iter < 1 or tol < 0:
        raise ValueError(
            f"need n_init >= 1, max_iter >= 1, tol >= 0; got n_init={n_init}, "
            f"max_iter={max_iter}, tol={tol}"
        )
    x = x.detach().to(torch.float64 if x.dtype == torch.float64 else torch.float32).contiguous()
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x contains NaN or infinite values")

    x_sq = (x * x).sum(1)
    tol_shift = tol * float(x.var(0, unbiased=False).mean())
    generator = torch.Generator().manual_seed(seed)
    centroids = _kmeans_plus_plus(x, x_sq, k, n_init, generator)
    labels, centroids, n_iters = _lloyd(x, x_sq, centroids, max_iter, tol_shift)
    best = None
    for run in range(n_init):
        run_labels, run_centroids = _fill_empty(x, labels[run], centroids[run])
        inertia = _inertia(x, run_labels, run_centroids)
        if best is None or inertia < best.inertia:
            sizes = torch.bincount(run_labels, minlength=k)
            best = KMeansResult(run_labels, sizes, run_centroids, inertia, n_iters[run])
    return best


def _kmeans_plus_plus(
    x: Tensor, x_sq: Tensor, k: int, n_runs: int, generator: torch.Generator
) -> Tensor:
    """Greedy k-means++ for ``n_runs`` independent runs at once -> (n_runs, k, d).

    Each new centre is the best of ``2 + ln k`` candidates drawn with probability ~ D^2 (the one
    that lowers the potential sum D^2 most), as in scikit-learn's ``_kmeans_plusplus``.
    """
    n = x.shape[0]
    n_trials = 2 + int(math.log(k))
    runs = torch.arange(n_runs, device=x.device)
    chosen = torch.empty(n_runs, k, dtype=torch.long, device=x.device)
    chosen[:, 0] = torch.randint(n, (n_runs,), generator=generator).to(x.device)
    uniforms = torch.rand(k, n_runs, n_trials, generator=generator, dtype=torch.float64)
    uniforms = uniforms.to(x.device)
    # D^2 - ||x||^2 to the closest centre so far, (n, n_runs): ||x||^2 does not change the argmin.
    closest = _partial_sq_distances(x, x[chosen[:, 0]])
    for c in range(1, k):
        d_sq = (closest + x_sq[:, None]).clamp_(min=0)
        cumulative = torch.cumsum(d_sq.T, 1, dtype=torch.float64)
        targets = uniforms[c] * cumulative[:, -1:]
        candidates = torch.searchsorted(cumulative, targets).clamp_(max=n - 1)
        to_candidates = _partial_sq_distances(x, x[candidates.flatten()]).view(n, n_runs, n_trials)
        torch.minimum(to_candidates, closest[:, :, None], out=to_candidates)
        best = to_candidates.sum(0, dtype=torch.float64).argmin(1)
        closest = to_candidates[:, runs, best]
        chosen[:, c] = candidates[runs, best]
    return x[chosen]


def _partial_sq_distances(x: Tensor, c: Tensor) -> Tensor:
    """||c||^2 - 2 x.c, (len x, len c): the squared distance without the ||x||^2 term."""
    return torch.addmm((c * c).sum(1), x, c.T, alpha=-2)


def _assign(x: Tensor, x_sq: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Nearest centroid of every point for each run of ``centroids`` (runs, k, d).

    Returns labels (runs, N) and the squared distances to them (runs, N), in blocks of rows.
    """
    n_runs, k, d = centroids.shape
    flat = centroids.reshape(n_runs * k, d)
    c_sq = (flat * flat).sum(1)
    labels = torch.empty(x.shape[0], n_runs, dtype=torch.long, device=x.device)
    distances = torch.empty(x.shape[0], n_runs, dtype=x.dtype, device=x.device)
    rows = max(1, _BLOCK_ENTRIES // (n_runs * k))
    for start in range(0, x.shape[0], rows):
        block = slice(start, start + rows)
        partial = torch.addmm(c_sq, x[block], flat.T, alpha=-2).view(-1, n_runs, k)
        distances[block], labels[block] = partial.min(2)
    distances.add_(x_sq[:, None]).clamp_(min=0)
    return labels.T.contiguous(), distances.T.contiguous()


def _lloyd(
    x: Tensor, x_sq: Tensor, centroids: Tensor, max_iter: int, tol_shift: float
) -> tuple[Tensor, Tensor, list[int]]:
    """Lloyd iterations for each run of ``centroids`` (runs, k, d), side by side.

    A run stops when its labels repeat (strict convergence) or its centroid shift is at most
    ``tol_shift``; runs that stopped on the shift get a final assignment to their centroids.
    Returns labels (runs, N), centroids (runs, k, d) and the iteration count of each run.
    """
    n_runs, k, d = centroids.shape
    centroids = centroids.clone()
    labels = torch.full((n_runs, x.shape[0]), -1, dtype=torch.long, device=x.device)
    n_iters = [max_iter] * n_runs
    strict = [False] * n_runs
    active = list(range(n_runs))
    for iteration in range(1, max_iter + 1):
        rows = torch.tensor(active, device=x.device)
        old = centroids[rows]
        new_labels, distances = _assign(x, x_sq, old)
        sums = torch.zeros(len(active), k, d, dtype=x.dtype, device=x.device)
        for a in range(len(active)):
            sums[a].index_add_(0, new_labels[a], x)
        offsets = torch.arange(len(active), device=x.device)[:, None] * k
        sizes = torch.bincount((new_labels + offsets).flatten(), minlength=len(active) * k)
        sizes = sizes.view(len(active), k)
        if bool((sizes == 0).any()):
            for a in torch.nonzero((sizes == 0).any(1)).flatten().tolist():
                _reseed_empty(x, new_labels[a], distances[a], sums[a], sizes[a])
        new = torch.where(sizes[..., None] > 0, sums / sizes.clamp(min=1)[..., None], old)
        shifts = ((new - old) ** 2).sum((1, 2)).tolist()
        repeated = (new_labels == labels[rows]).all(1).tolist()
        centroids[rows] = new
        labels[rows] = new_labels
        for a, run in enumerate(active):
            if repeated[a] or shifts[a] <= tol_shift:
                strict[run] = repeated[a]
                n_iters[run] = iteration
        active = [
            run for a, run in enumerate(active) if not (repeated[a] or shifts[a] <= tol_shift)
        ]
        if not active:
            break
    loose = torch.tensor([run for run in range(n_runs) if not strict[run]], device=x.device)
    if len(loose):
        labels[loose] = _assign(x, x_sq, centroids[loose])[0]
    return labels, centroids, n_iters


def _reseed_empty(x: Tensor, labels: Tensor, distances: Tensor, sums: Tensor, sizes: Tensor):
    """Move the points farthest from their centroid into the empty clusters (all in place)."""
    empty = torch.nonzero(sizes == 0).flatten()
    movable = sizes[labels] > 1
    n_moves = min(len(empty), int(movable.sum()))
    far = torch.where(movable, distances, -1.0).topk(n_moves).indices
    empty = empty[:n_moves]
    donors = labels[far]
    sums.index_add_(0, donors, -x[far])
    sizes.index_add_(0, donors, -torch.ones_like(donors))
    sums[empty] = x[far]
    sizes[empty] = 1
    labels[far] = empty


def _fill_empty(x: Tensor, labels: Tensor, centroids: Tensor) -> tuple[Tensor, Tensor]:
    """Give every empty cluster a point while keeping each label a nearest centroid.

    The point farthest from its centroid (within a cluster of >= 2) becomes the empty cluster's
    centroid, and every point strictly closer to it joins it. Each step lowers the sum of squared
    distances, or fills a cluster without emptying another (ties), so the loop ends.
    """
    k = centroids.shape[0]
    sizes = torch.bincount(labels, minlength=k)
    while bool((sizes == 0).any()):
        empty = int(torch.nonzero(sizes == 0)[0])
        own = ((x - centroids[labels]) ** 2).sum(1)
        far = int(torch.where(sizes[labels] > 1, own, -1.0).argmax())
        centroids = centroids.clone()
        centroids[empty] = x[far]
        to_new = ((x - x[far]) ** 2).sum(1)
        labels = torch.where(to_new < own, empty, labels)
        labels[far] = empty
        sizes = torch.bincount(labels, minlength=k)
    return labels, centroids


def _inertia(x: Tensor, labels: Tensor, centroids: Tensor) -> float:
    """Sum of squared distances to the assigned centroids, from differences (no cancellation)."""
    total = 0.0
    for block in torch.arange(x.shape[0], device=x.device).split(1 << 14):
        total += float(((x[block] - centroids[labels[block]]) ** 2).sum(dtype=torch.float64))
    return total
