"""One process vs N gloo processes on the CPU: images/s and the per-step loss difference.

    python benchmarks/distributed.py [--procs 2] [--epochs 3] [--precision fp32]

Trains the same configuration (the quick profile's TASE run, shortened) once in this process and
once under N spawned processes with the same global batch, then prints the training images/s of
each (median over epochs, from ``history.csv``) and the largest per-step loss difference. In
float32 the difference is float summation order amplified by SGD; in float64 it shows the
algorithm itself (``tests/test_distributed.py`` asserts < 1e-9 there).
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.multiprocessing as mp

from tase import config as C
from tase import train as T


def make_config(epochs: int, precision: str) -> C.TrainConfig:
    cfg = C.train_config(C.notebook_params("02_cluster_balance", "quick"))
    return cfg.replace(
        optim={"epochs": epochs, "lr_warmup_epochs": 1},
        method={"warmup_epochs": max(1, epochs // 2), "ramp_epochs": 1},
        run={"eval_every": 0, "precision": precision},
    )


def worker(rank, world, port, results, epochs, precision, threads):
    os.environ.update(
        RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port), TASE_RESULTS=results, TASE_PROGRESS="off",
    )
    torch.set_num_threads(threads)
    T.train(make_config(epochs, precision))
    torch.distributed.destroy_process_group()


def images_per_s(run_dir: Path) -> float:
    return float(pd.read_csv(run_dir / "history.csv")["images_per_s"].median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--procs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--precision", default="fp32", choices=["fp32", "fp64"])
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    threads = max(1, cores // args.procs)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.update(TASE_RESULTS=f"{tmp}/single", TASE_PROGRESS="off")
        single = T.train(make_config(args.epochs, args.precision))
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(
            worker, nprocs=args.procs, join=True,
            args=(args.procs, port, f"{tmp}/multi", args.epochs, args.precision, threads),
        )
        multi = Path(tmp) / "multi" / single.id
        warm = C.run_id(C.warmup_config(single.config))
        print(f"cores {cores}, torch {torch.__version__}, {args.precision}, run {single.id}")
        for label, run_id in (("warm-up (SimCLR)", warm), ("TASE stage", single.id)):
            a = pd.read_csv(Path(tmp) / "single" / run_id / "steps.csv")["loss"].to_numpy()
            b = pd.read_csv(Path(tmp) / "multi" / run_id / "steps.csv")["loss"].to_numpy()
            diff = np.abs(a - b)
            print(f"{label}: per-step loss |1 - {args.procs} procs| first step {diff[0]:.2e}, "
                  f"max over {len(diff)} steps {diff.max():.2e}")
        print(f"1 process ({torch.get_num_threads()} threads): "
              f"{images_per_s(single.dir):8.0f} images/s (TASE stage, median over epochs)")
        print(f"{args.procs} gloo processes ({threads} thread each): "
              f"{images_per_s(multi):8.0f} images/s")


if __name__ == "__main__":
    main()
