"""Two gloo processes on the CPU train exactly what one process trains with the same global batch.

Each sample's augmentation comes from (seed, epoch, view, sample index) and the loss sees the
all-gathered global batch, so per-step losses and final weights agree up to float summation order.
"""

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch
import torch.multiprocessing as mp

from tase import config as C
from tase import train as T

pytestmark = pytest.mark.slow


def tiny(precision="fp64") -> C.TrainConfig:
    # float64: in float32 the order of summation alone (2 ranks, or 1 vs 2 threads in one
    # process) moves conv gradients by ~1e-4 relative, and a few SGD steps amplify that; in
    # float64 any difference beyond ~1e-9 would be a real error in the distributed algorithm.
    cfg = C.train_config(C.notebook_params("02_cluster_balance", "smoke"))
    return cfg.replace(
        model={"width": 8},
        optim={"epochs": 3, "batch_size": 256},
        method={"warmup_epochs": 1, "ramp_epochs": 1},
        run={"checkpoint_every": 1, "eval_every": 0, "precision": precision},
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def worker(rank, world, port, results, until, labels_dir):
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        TASE_RESULTS=results,
        TASE_PROGRESS="off",
        TASE_DIST_TIMEOUT_MIN="2",
    )
    torch.set_num_threads(1)
    from tase import methods

    real = methods.TASE.set_clustering

    def record(self, epoch, labels, sizes):
        np.save(f"{labels_dir}/rank{rank}_epoch{epoch}.npy", labels.cpu().numpy())
        return real(self, epoch, labels, sizes)

    methods.TASE.set_clustering = record
    T.train(tiny(), until=until)
    torch.distributed.destroy_process_group()


def run_ranks(world, results, until, labels_dir):
    mp.spawn(
        worker,
        args=(world, free_port(), str(results), until, str(labels_dir)),
        nprocs=world,
        join=True,
    )


def test_two_processes_match_one(tmp_path, monkeypatch):
    labels = tmp_path / "labels"
    labels.mkdir()
    # Two processes, interrupted after epoch 2 and resumed under a fresh process group.
    run_ranks(2, tmp_path / "ddp", until=2, labels_dir=labels)
    run_ranks(2, tmp_path / "ddp", until=None, labels_dir=labels)
    monkeypatch.setenv("TASE_RESULTS", str(tmp_path / "single"))
    monkeypatch.setenv("TASE_PROGRESS", "off")
    single = T.train(tiny())
    ddp_dir = tmp_path / "ddp" / single.id

    a = pd.read_csv(ddp_dir / "steps.csv")
    b = pd.read_csv(single.dir / "steps.csv")
    assert list(a["step"]) == list(b["step"])
    assert np.max(np.abs(a["loss"].to_numpy() - b["loss"].to_numpy())) < 1e-9

    wa = T.load_checkpoint(ddp_dir)["module"]
    wb = T.load_checkpoint(single.dir)["module"]
    for key in wb:
        if wb[key].is_floating_point():
            assert torch.allclose(wa[key], wb[key], atol=1e-9, rtol=0), key

    # Every clustering gave both ranks the same pseudo-labels (and so the same sizes).
    for epoch in (1, 2):
        r0 = np.load(labels / f"rank0_epoch{epoch}.npy")
        r1 = np.load(labels / f"rank1_epoch{epoch}.npy")
        assert np.array_equal(r0, r1)


def test_killed_torchrun_job_resumes_from_its_last_checkpoint(tmp_path):
    """A real torchrun job, killed with SIGKILL after a checkpoint, then launched again."""
    import json
    import signal
    import subprocess
    import sys
    import time

    cfg = tiny(precision="fp32").replace(
        method={"name": "simclr", "warmup_epochs": 0}, optim={"epochs": 8, "batch_size": 128}
    )
    config_file = tmp_path / "job.yaml"
    C.save(cfg, config_file)
    env = dict(os.environ, TASE_RESULTS=str(tmp_path / "results"), TASE_PROGRESS="log",
               OMP_NUM_THREADS="1")
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
               "--nproc_per_node=2", "-m", "tase.train", "--config", str(config_file)]
    run_dir = tmp_path / "results" / C.run_id(cfg)

    job = subprocess.Popen(command, env=env, start_new_session=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and T.read_status(run_dir)["epoch"] < 2:
        assert job.poll() is None, "the job ended before it could be killed"
        time.sleep(0.2)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    killed_at = T.read_status(run_dir)["epoch"]
    assert 2 <= killed_at < 8
    before = pd.read_csv(run_dir / "history.csv")

    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads((run_dir / "status.json").read_text()) == {"epoch": 8, "finished": True}
    history = pd.read_csv(run_dir / "history.csv")
    assert list(history["epoch"]) == list(range(8))  # every epoch exactly once
    # Epochs before the checkpoint were not trained again: their rows, wall times included,
    # are the ones the killed job wrote.
    kept = before[before["epoch"] < killed_at]
    assert history.iloc[: len(kept)].equals(kept)
