"""Seconds per epoch of SimCLR against TASE in the trainer, clustering included; then K-means.

    python benchmarks/epoch.py [--device cuda] [--config params/quick/02_cluster_balance.yaml]
                               [--set key=value ...] [--repeats 3] [--recluster-every 5]
                               [--warmup-from RUN_DIR] [--kmeans-repeats 1]
                               [--kmeans-cases 11165x10,...] [--no-kmeans]

Epochs. Three arms of the same config (default: the quick profile of notebook 02, loaded with
``tase.config.load``), each a ``tase.train.Trainer`` writing into a temporary folder: SimCLR,
TASE clustering clean features (``method.cluster_features=clean``: a forward pass over the
training set, then K-means) and TASE clustering the feature bank (``bank``: the features the
last epoch's steps produced, so K-means alone). All start from the same weights (the same seed's
initialisation, or the finished warm-up run ``--warmup-from`` so that K-means sees trained
features) and run ``Trainer.train_epoch`` at the first epochs of the cluster-balance stage B:
B − 1 and B untimed (fills the bank; first clustering), then ``--repeats`` times, arm after arm,
epoch B (TASE clusters before its steps) and B + 1 (it does not). Each time is the trainer's own
``history.csv`` ``epoch_s`` (everything ``train_epoch`` does: clustering with its
diagnostics and ``clusterings/`` file, steps, ``steps.csv``) and ``cluster_s``; kNN monitoring
is off (``run.eval_every=0``). A TASE run that re-clusters every R epochs costs on average
(epoch with clustering + (R − 1) · epoch without) / R; that amortised epoch over SimCLR's is the
ratio reported, for R = ``--recluster-every`` (the paper's 5) and the config's own R.
Targets: ≤ 1.05× with bank features, ≤ 1.15× with clean features, at R = 5.

K-means. ``tase.cluster.kmeans`` against scikit-learn for N = 11,165 / 50,000 points at
d = 512 and K = 10 / 100, with ``benchmarks/kmeans.py``'s data, settings and timing functions.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parent.parent)]

import kmeans as kmeans_benchmark  # noqa: E402  (benchmarks/kmeans.py, beside this file)

from tase import config as C  # noqa: E402
from tase import paths, train  # noqa: E402

DEFAULT_CONFIG = paths.params_file("quick", "02_cluster_balance").relative_to(paths.REPO_ROOT)
ARMS = {
    "SimCLR": {"name": "simclr"},
    "TASE clean": {"name": "tase", "cluster_features": "clean"},
    "TASE bank": {"name": "tase", "cluster_features": "bank"},
}
TARGETS = {"TASE bank": 1.05, "TASE clean": 1.15}  # amortised epoch / SimCLR at R = 5


def build_trainers(cfg: C.TrainConfig, root: Path, warmup_from: str | None) -> dict:
    data = train.load_data(cfg.data)
    ctx = train.context(cfg.run.device)
    trainers = {}
    for label, method in ARMS.items():
        run_dir = root / label.replace(" ", "_")
        run_dir.mkdir()
        trainer = train.Trainer(cfg.replace(method=method), data, ctx, run_dir)
        if warmup_from is not None:
            trainer.load(train.load_checkpoint(Path(warmup_from)), policy=False)
        trainers[label] = trainer
    return trainers


def measure(trainers: dict, start: int, repeats: int) -> dict[str, dict[str, list[float]]]:
    """``arm -> {"plain": [s], "clustering": [s], "cluster": [s]}`` from ``train_epoch`` rows."""
    for trainer in trainers.values():
        for epoch in (start - 1, start):
            trainer.train_epoch(epoch)
    times = {label: {"plain": [], "clustering": [], "cluster": []} for label in trainers}
    for _ in range(repeats):
        for label, trainer in trainers.items():
            for epoch in (start, start + 1):
                row = trainer.train_epoch(epoch)
                kind = "clustering" if row["cluster_s"] else "plain"
                times[label][kind].append(row["epoch_s"])
                if row["cluster_s"]:
                    times[label]["cluster"].append(row["cluster_s"])
    return times


def spread(seconds: list[float]) -> str:
    if not seconds:
        return "-"
    return f"{statistics.median(seconds):.3f} [{min(seconds):.3f}-{max(seconds):.3f}]"


def report_epochs(times: dict, periods: list[int]) -> None:
    simclr = statistics.median(times["SimCLR"]["plain"])
    header = f"{'arm':<11} {'epoch s, no clustering':>24} {'epoch s, clustering':>24}"
    header += f" {'clustering s':>24} {'/SimCLR':>8}"
    print(header)
    for label, t in times.items():
        plain = statistics.median(t["plain"])
        print(
            f"{label:<11} {spread(t['plain']):>24} {spread(t['clustering']):>24} "
            f"{spread(t['cluster']):>24} {plain / simclr:>7.3f}×"
        )
    print("(/SimCLR: epoch without clustering over SimCLR's, the cost of TASE's loss terms)")
    for period in periods:
        print(
            f"\nre-clustering every R = {period} epochs (amortised epoch = (clustering epoch"
            f" + {period - 1} × plain epoch) / {period}):"
        )
        for label, t in times.items():
            if not t["clustering"]:
                continue
            plain, with_clustering = (
                statistics.median(t["plain"]),
                statistics.median(t["clustering"]),
            )
            amortised = (with_clustering + (period - 1) * plain) / period
            share = statistics.median(t["cluster"]) / period / amortised
            line = (
                f"  {label:<11} {amortised:.3f} s per epoch = {amortised / simclr:.3f}× SimCLR; "
                f"clustering {100 * share:.1f}% of the time"
            )
            if period == 5 and label in TARGETS:
                met = "met" if amortised / simclr <= TARGETS[label] else "NOT met"
                line += f"  (target ≤ {TARGETS[label]:.2f}×: {met})"
            print(line)


def report_kmeans(device: torch.device, repeats: int, cases: list[tuple[int, int]]) -> None:
    kb = kmeans_benchmark
    kb.print_environment(device, repeats)
    kb.run_ours(torch.from_numpy(kb.mixture(2000, 10)).to(device), 10)  # warm-up
    header = ("N", "K", "ours s", "sklearn s", "sklearn/ours", "inertia ours/sk")
    print("{:>6} {:>4}  {:>20}  {:>20}  {:>12}  {:>15}".format(*header))
    for n, k in cases:
        x = kb.mixture(n, k)
        x_device = torch.from_numpy(x).to(device)
        ours, theirs = [], []
        for _ in range(repeats):
            seconds, reference = kb.run_sklearn(x, k)
            theirs.append(seconds)
            seconds, result = kb.run_ours(x_device, k)
            ours.append(seconds)
        ratio = statistics.median(theirs) / statistics.median(ours)
        quality = result.inertia / reference.inertia_
        row = (n, k, kb.spread(ours), kb.spread(theirs), f"{ratio:.2f}", f"{quality:.4f}")
        print("{:>6} {:>4}  {:>20}  {:>20}  {:>12}  {:>15}".format(*row), flush=True)


def parse_cases(text: str) -> list[tuple[int, int]]:
    cases = []
    for item in text.split(","):
        n, _, k = item.partition("x")
        cases.append((int(n), int(k)))
    return cases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="relative to the repo root")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="overrides")
    parser.add_argument("--repeats", type=int, default=3, help="epoch pairs per arm")
    parser.add_argument("--recluster-every", type=int, default=5, help="R of the amortisation")
    parser.add_argument("--warmup-from", default=None, help="finished warm-up run to start from")
    parser.add_argument("--threads", type=int, default=None, help="torch's and sklearn's threads")
    parser.add_argument("--kmeans-repeats", type=int, default=1)
    parser.add_argument(
        "--kmeans-cases",
        default=",".join(f"{n}x{k}" for n, k in kmeans_benchmark.CASES),
        help="NxK,... (d = 512)",
    )
    parser.add_argument("--no-kmeans", action="store_true", help="epochs only")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    overrides = train.parse_overrides(args.set)
    overrides.update({"run.device": args.device, "run.eval_every": 0, "run.stop_epoch": None})
    cfg = C.load(paths.REPO_ROOT / args.config, overrides)
    own_period = cfg.method.recluster_every
    # Epoch B clusters and B + 1 does not whatever the config's R; R only enters the arithmetic.
    cfg = cfg.replace(method={"recluster_every": max(2, args.recluster_every)})
    start = cfg.warmup_epochs
    if not 1 <= start < cfg.optim.epochs - 1:
        raise SystemExit(f"needs 1 <= method.warmup_epochs < optim.epochs - 1, got B = {start}")

    with tempfile.TemporaryDirectory(prefix="tase-epoch-") as root:
        trainers = build_trainers(cfg, Path(root), args.warmup_from)
        first = next(iter(trainers.values()))
        print(
            f"python {platform.python_version()}, torch {torch.__version__}; {os.cpu_count()} "
            f"cores, torch threads {torch.get_num_threads()}; device {first.ctx.device}"
            + (f" ({torch.cuda.get_device_name(first.ctx.device)})" if first.cuda else "")
            + f"; load average {os.getloadavg()[0]:.2f} at start"
        )
        print(
            f"{' '.join([args.config, *args.set])}: {cfg.data.name}, N = {first.n} images, "
            f"{cfg.model.arch} at {cfg.augment.size}×{cfg.augment.size}, batch "
            f"{cfg.optim.batch_size} ({len(first.bounds)} steps/epoch), bf16 {first.bf16}, "
            f"K = {cfg.method.n_clusters or int(first.data.n_classes)}, "
            f"{cfg.method.kmeans_restarts} K-means restarts; B = {start}; "
            f"{'warm-up ' + args.warmup_from if args.warmup_from else 'random initialisation'}"
        )
        print(f"{args.repeats} repetitions of epochs B and B + 1 per arm; seconds median [min-max]")
        times = measure(trainers, start, args.repeats)
    report_epochs(times, sorted({args.recluster_every, own_period}))
    print(f"load average {os.getloadavg()[0]:.2f} after the epochs")
    if not args.no_kmeans:
        print("\nK-means, ours against scikit-learn (benchmarks/kmeans.py's data and settings)")
        cases = parse_cases(args.kmeans_cases)
        # --threads binds scikit-learn's OpenMP/BLAS pools too, so both sides get the same cores.
        with threadpool_limits(limits=args.threads):
            report_kmeans(torch.device(args.device), args.kmeans_repeats, cases)
        print(f"load average {os.getloadavg()[0]:.2f} at end")


if __name__ == "__main__":
    main()
