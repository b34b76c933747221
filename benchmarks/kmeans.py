"""Time ``tase.cluster.kmeans`` against scikit-learn's ``KMeans`` on the same data.

    python benchmarks/kmeans.py [--device cuda] [--repeats 3]

Data: N points in d = 512 from a Gaussian mixture with K long-tailed components (weights
~ r^(-c/(K-1)), r = 100), rows L2-normalised like TASE's features; float32 for both libraries.
Both run k-means++ with 3 restarts, at most 100 Lloyd iterations, tol 1e-4, seed 0; scikit-learn
with ``algorithm="lloyd"``. The two are timed alternately, so background load hits both alike.
Prints the median and min-max seconds, the ratio sklearn / ours (> 1: ours is faster), and the
inertia ratio ours / sklearn (quality: ~1).
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import sklearn
import torch
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_info

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tase.cluster import KMeansResult, kmeans  # noqa: E402

CASES = [(11165, 10), (11165, 100), (50000, 10), (50000, 100)]
DIM = 512


def mixture(n: int, k: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    weights = 100.0 ** (-np.arange(k) / max(k - 1, 1))
    components = rng.choice(k, size=n, p=weights / weights.sum())
    means = rng.normal(scale=0.35, size=(k, DIM))
    x = means[components] + rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def run_sklearn(x: np.ndarray, k: int) -> tuple[float, KMeans]:
    model = KMeans(k, n_init=3, max_iter=100, init="k-means++", random_state=0, algorithm="lloyd")
    start = time.perf_counter()
    model.fit(x)
    return time.perf_counter() - start, model


def run_ours(x: torch.Tensor, k: int) -> tuple[float, KMeansResult]:
    start = time.perf_counter()
    result = kmeans(x, k, n_init=3, max_iter=100, seed=0)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start, result


def spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.2f} [{min(seconds):.2f}-{max(seconds):.2f}]"


def print_environment(device: torch.device, repeats: int) -> None:
    pools = ", ".join(f"{p['internal_api']} x{p['num_threads']}" for p in threadpool_info())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.machine()
    print(f"python {platform.python_version()}, torch {torch.__version__}, ", end="")
    print(f"scikit-learn {sklearn.__version__}")
    print(f"cpu cores {os.cpu_count()}, torch threads {torch.get_num_threads()}, ", end="")
    print(f"scikit-learn thread pools: {pools}")
    print(f"device {device} ({name}), load average {os.getloadavg()[0]:.2f} at start")
    print(f"d={DIM}, n_init=3, max_iter=100, tol=1e-4, {repeats} repeats; seconds median [min-max]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device = torch.device(args.device)
    print_environment(device, args.repeats)
    run_ours(torch.from_numpy(mixture(2000, 10)).to(device), 10)  # warm-up: kernels, thread pools
    header = ("N", "K", "ours s", "sklearn s", "sklearn/ours", "inertia ours/sk", "iter ours/sk")
    print("{:>6} {:>4}  {:>20}  {:>20}  {:>12}  {:>15}  {:>12}".format(*header))
    for n, k in CASES:
        x = mixture(n, k)
        x_device = torch.from_numpy(x).to(device)
        ours_s, sklearn_s = [], []
        for _ in range(args.repeats):
            seconds, reference = run_sklearn(x, k)
            sklearn_s.append(seconds)
            seconds, result = run_ours(x_device, k)
            ours_s.append(seconds)
        ratio = statistics.median(sklearn_s) / statistics.median(ours_s)
        quality = result.inertia / reference.inertia_
        iters = f"{result.n_iter}/{reference.n_iter_}"
        row = (n, k, spread(ours_s), spread(sklearn_s), f"{ratio:.2f}", f"{quality:.4f}", iters)
        print("{:>6} {:>4}  {:>20}  {:>20}  {:>12}  {:>15}  {:>12}".format(*row), flush=True)
    print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
