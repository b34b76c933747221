"""Throughput of the batched SimCLR augmentation against the peers' per-image PIL pipeline.

    python benchmarks/augment.py [--device cuda] [--batch 512] [--repeats 5] [--workers N]
                                 [--threads N]

Ours: ``tase.augment.simclr_views`` on a batch of random CIFAR-sized uint8 images (two views), on
``--device`` with the uint8 batch already there (CUDA is synchronised before every clock read),
with torch's intra-op threads (``--threads`` overrides; on a machine oversubscribed by other
processes, OpenMP fork/join makes 2 threads far slower than 1). Peers: PIL images through
``torchvision.transforms.Compose`` of SPEC §2 (RandomResizedCrop(32, scale=(0.1, 1)),
RandomHorizontalFlip, RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8), RandomGrayscale(0.2),
ToTensor), two views per image, in a ``DataLoader`` with ``--workers`` processes (default
``os.cpu_count()``) and the same batch size. Each repetition times ``--batches`` full batches
after a warm-up; the script prints median and min–max images/s of each and the ratio of medians.
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
import torch
import torchvision
import torchvision.transforms as T
from PIL import Image
from torch.utils.data import DataLoader, Dataset

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tase.augment import cifar_params, simclr_views  # noqa: E402

SIZE = 32
POOL = 2048  # distinct images; the loaders cycle over them


def peers_transform() -> T.Compose:
    return T.Compose(
        [
            T.RandomResizedCrop(SIZE, scale=(0.1, 1.0)),
            T.RandomHorizontalFlip(),
            T.RandomApply([T.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
            T.RandomGrayscale(p=0.2),
            T.ToTensor(),
        ]
    )


class TwoViewPIL(Dataset):
    """``length`` items cycling over a pool of PIL images; each item is two augmented views."""

    def __init__(self, pool: np.ndarray, length: int) -> None:
        self.images = [Image.fromarray(image) for image in pool]
        self.length = length
        self.transform = peers_transform()

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int):
        image = self.images[index % len(self.images)]
        return self.transform(image), self.transform(image)


def time_peers(pool: np.ndarray, args: argparse.Namespace) -> list[float]:
    """images/s of each repetition of the DataLoader pipeline."""
    total_batches = args.warmup + args.repeats * args.batches
    dataset = TwoViewPIL(pool, total_batches * args.batch)
    loader = DataLoader(
        dataset,
        batch_size=args.batch,
        num_workers=args.workers,
        shuffle=False,
        persistent_workers=args.workers > 0,
        prefetch_factor=2 if args.workers > 0 else None,
    )
    batches = iter(loader)
    for _ in range(args.warmup):
        next(batches)
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            next(batches)
        rates.append(args.batches * args.batch / (time.perf_counter() - start))
    return rates


def time_ours(pool: np.ndarray, args: argparse.Namespace) -> list[float]:
    """images/s of each repetition of ``simclr_views`` (two views per image)."""
    device = torch.device(args.device)
    images = torch.from_numpy(pool[: args.batch]).permute(0, 3, 1, 2).contiguous().to(device)
    indices = torch.arange(args.batch, device=device)
    params = cifar_params(SIZE)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    epoch = 0
    for _ in range(args.warmup):
        simclr_views(images, params, seed=0, epoch=epoch, indices=indices)
        epoch += 1
    sync()
    rates = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        for _ in range(args.batches):
            simclr_views(images, params, seed=0, epoch=epoch, indices=indices)
            epoch += 1
        sync()
        rates.append(args.batches * args.batch / (time.perf_counter() - start))
    return rates


def summary(name: str, rates: list[float]) -> str:
    return (
        f"{name:<34} median {statistics.median(rates):>10,.0f} images/s"
        f"   (min {min(rates):,.0f}, max {max(rates):,.0f}; {len(rates)} repetitions)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="device of ours (cpu or cuda)")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batches", type=int, default=4, help="batches timed per repetition")
    parser.add_argument("--warmup", type=int, default=2, help="untimed batches first")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="peers' workers")
    parser.add_argument("--threads", type=int, default=None, help="torch threads of ours")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, size=(max(POOL, args.batch), SIZE, SIZE, 3), dtype=np.uint8)

    device_name = args.device
    if args.device.startswith("cuda"):
        device_name += f" ({torch.cuda.get_device_name(torch.device(args.device))})"
    print(
        f"environment: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"torchvision {torchvision.__version__}, device of ours: {device_name}"
    )
    print(
        f"batch {args.batch} CIFAR images ({SIZE}×{SIZE}), two views each; {args.repeats} "
        f"repetitions of {args.batches} batches after {args.warmup} warm-up batches; "
        f"peers' DataLoader with {args.workers} workers"
    )
    ours = time_ours(pool, args)
    print(summary("ours (tase.augment.simclr_views)", ours))
    peers = time_peers(pool, args)
    print(summary("peers (PIL + transforms, loader)", peers))
    print(
        f"ratio ours / peers (medians): {statistics.median(ours) / statistics.median(peers):.1f}×"
    )


if __name__ == "__main__":
    main()
